"""``cifrenet-edge serve MODEL``: a real Triton Inference Server whose model is a ``Segmenter``.

PyTriton bundles a real ``tritonserver`` with its Python backend, so one command serves on a
laptop, a CPU box or a GPU server through the toolkit's own runtime; Triton brings the dynamic
batcher, gRPC/HTTP, health, metrics and graceful drain.

Protocol (names in ``runtime/remote.py``): input ``frames`` N x H x W x 3 uint8 BGR (the server
preprocesses with ``preprocess.py``); outputs ``mask`` and, when asked, ``overlay`` (opacity is
the server's ``--overlay-alpha``, so a request can fail only for its frames' shape); the model
config's ``parameters`` carry the manifest and what runs it, for remote Segmenters to read.

Design constraints a change must keep:

* Frames of different sizes are never batched together (Triton batches equal shapes only and
  PyTriton 0.7 cannot declare ragged batching), so a refused frame only shares its batch with
  frames the same check refuses. Frames are 1..``max_side`` pixels a side.
* Ready means servable: the model is written to Triton's model store and loaded with
  ``--load-model`` before the listeners open (PyTriton's default answered ready before the
  model existed).
* SIGINT/SIGTERM stop Triton with SIGINT: in-flight requests finish (``exit_timeout_s``).
* ``python_backend_libdir`` puts this interpreter's LIBDIR first on Triton's
  ``LD_LIBRARY_PATH``: the stub otherwise loads the system's libpython of another patch release
  and fails (``'_thread.RLock' object has no attribute '_recursion_count'``).
"""

import dataclasses
import json
import logging
import os
import re
import signal
import socket
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, FrameError, first_line
from ..runtime.remote import (
    FRAMES_INPUT,
    MANIFEST_PARAMETER,
    MASK_OUTPUT,
    OVERLAY_OUTPUT,
    RUNTIME_PARAMETER,
    valid_model_name,
)

LOG = logging.getLogger(__name__)
PYTRITON_INSTALL = "pip install 'cifrenet-edge[serve]' (nvidia-pytriton and tritonclient)"
# Endpoints PyTriton protects with a generated token. Its default list also holds
# "statistics"; here statistics stay open because `bench` and fleet dashboards read the batch
# sizes Triton formed from them (the same counters are open on the metrics port anyway).
PROTECTED_ENDPOINTS = ["shared-memory", "model-repository", "trace", "logging"]


@dataclasses.dataclass
class ServeOptions:
    """What ``cifrenet-edge serve`` takes; every field is a CLI option of the same name."""

    name: str = "cifrenet"
    host: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    #: the largest batch Triton's dynamic batcher forms (frames, across requests)
    max_batch: int = 8
    #: how long the batcher may hold a request to fill a batch; 0 = never wait
    queue_delay_us: int = 2000
    #: model instances: Triton runs this many batches at once (one Segmenter shared by all)
    instances: int = 1
    device: str = "auto"
    backend: Optional[str] = None
    #: the largest frame side accepted, in pixels
    max_side: int = 4096
    #: opacity of the ``overlay`` output, 0..1
    overlay_alpha: float = 0.5
    #: seconds Triton waits for in-flight requests when stopped
    exit_timeout_s: int = 30
    #: PyTriton's workspace (sockets, generated model store); default: a fresh temp folder
    workspace: Optional[str] = None
    #: Triton's own log file (default: Triton's log lines go to standard output)
    log_file: Optional[str] = None

    def check(self) -> None:
        if not valid_model_name(self.name):
            raise ConfigError(
                f"--name {self.name!r} is not a Triton model name: use letters, digits, '_', "
                "'-' and '.'"
            )
        ports = {"--http-port": self.http_port, "--grpc-port": self.grpc_port}
        ports["--metrics-port"] = self.metrics_port
        for option, port in ports.items():
            if not 0 < int(port) < 65536:
                raise ConfigError(f"{option} {port} is not a TCP port: use 1..65535")
        if len(set(ports.values())) != len(ports):
            raise ConfigError(
                "--http-port, --grpc-port and --metrics-port must differ (got {})".format(
                    ", ".join(str(p) for p in ports.values())
                )
            )
        for option, value, low in (
            ("--max-batch", self.max_batch, 1),
            ("--queue-delay-us", self.queue_delay_us, 0),
            ("--instances", self.instances, 1),
            ("--max-side", self.max_side, 1),
            ("--exit-timeout", self.exit_timeout_s, 0),
        ):
            if int(value) < low:
                raise ConfigError(f"{option} {value} must be >= {low}")
        if not 0.0 <= float(self.overlay_alpha) <= 1.0:
            raise ConfigError(f"--overlay-alpha {self.overlay_alpha} is outside 0..1")


@dataclasses.dataclass
class ServerInfo:
    """What is being served where, for the startup line and for tests."""

    name: str
    model: str
    backend: Dict[str, Any]
    reason: str
    grpc_url: str
    http_url: str
    metrics_url: str
    max_batch: int
    instances: int


@dataclasses.dataclass
class ServeSummary:
    requests: int = 0
    frames: int = 0
    stopped_by: str = ""


def check_ports(host: str, ports: Dict[str, int]) -> None:
    """Each port must be free on ``host``: one line naming the port and its option if not.

    Triton started on a taken port exits after printing its error among hundreds of lines,
    and PyTriton then waits two minutes for it: checking first is the only clear way.
    SO_REUSEADDR as servers set it, so a port in TIME_WAIT from a previous run passes.
    """
    for option, port in ports.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, int(port)))
            except OSError as exc:
                raise ConfigError(
                    f"port {port} ({option}) on {host} is not available ({exc.strerror}): stop "
                    f"what uses it or choose another {option}"
                ) from None


def python_backend_libdir() -> Tuple[Optional[str], str]:
    """(LIBDIR holding this interpreter's shared libpython, or None; a warning when None)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlib = sysconfig.get_config_var("LDLIBRARY") or ""
    if libdir and ldlib.endswith(".so") and (Path(libdir) / ldlib).is_file():
        return str(libdir), ""
    return None, (
        "this Python has no shared libpython ({}); Triton's Python-backend stub will load the "
        "system's libpython, which must be the same release, or models fail to load with "
        "'_thread.RLock' errors: use a Python built with --enable-shared".format(
            ldlib or "static build"
        )
    )


class _FramesModel:
    """One Triton model instance: PyTriton calls it with the requests of one batch.

    Every frame of the batch goes through ``Segmenter.predict_batch`` in one call, so the
    network sees Triton's batch (chunked by the model's own batch limit). An instance is a
    separate object because PyTriton keys instances by callable.
    """

    def __init__(
        self, seg: Any, max_side: int, alpha: float, summary: ServeSummary, lock: Any
    ) -> None:
        self.seg = seg
        self.max_side = int(max_side)
        self.alpha = float(alpha)
        self.summary = summary
        self.lock = lock

    def _frames(self, request: Any) -> np.ndarray:
        x = request.data.get(FRAMES_INPUT)
        if x is None or x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
            got = None if x is None else f"{x.dtype} {list(x.shape)}"
            raise FrameError(f"'{FRAMES_INPUT}' must be N x H x W x 3 uint8 BGR, got {got}")
        h, w = int(x.shape[1]), int(x.shape[2])
        if h < 1 or w < 1:
            raise FrameError(f"frames are {w}x{h} (empty): send HxWx3 BGR images")
        if max(h, w) > self.max_side:
            raise FrameError(
                f"frames are {w}x{h}, larger than this server's limit of {self.max_side} px a "
                "side: resize them on the robot, or restart the server with a larger --max-side"
            )
        return x

    def __call__(self, requests: List[Any]) -> List[Dict[str, np.ndarray]]:
        batches = [self._frames(r) for r in requests]
        frames = [f[i] for f in batches for i in range(len(f))]
        masks = self.seg.predict_batch(frames)
        responses = []
        k = 0
        for request, batch in zip(requests, batches):
            n = len(batch)
            response = {MASK_OUTPUT: np.stack(masks[k : k + n])}
            wanted = request.requested_output_names
            if wanted is None or OVERLAY_OUTPUT in wanted:
                response[OVERLAY_OUTPUT] = np.stack(
                    [self.seg.overlay(batch[i], masks[k + i], self.alpha) for i in range(n)]
                )
            responses.append(response)
            k += n
        with self.lock:
            self.summary.requests += len(requests)
            self.summary.frames += len(frames)
        return responses


def _import_pytriton() -> Any:
    try:
        import pytriton.model_config as model_config
        import pytriton.triton as triton
    except ImportError as exc:
        raise BackendUnavailableError(
            f"serving needs PyTriton ({getattr(exc, 'name', None) or exc} is missing): "
            f"{PYTRITON_INSTALL}"
        ) from None
    return triton, model_config


def _runtime_parameters(seg: Any, options: ServeOptions) -> Dict[str, str]:
    """The model-config parameters a remote Segmenter reads (``runtime/remote.py``)."""
    b = seg.backend
    runtime = {
        "backend": b.name,
        "device": b.device,
        "precision": b.precision,
        "resolution": list(seg.resolution),
        "max_side": int(options.max_side),
        "reason": seg.reason,
        # the file on the server: `bench` compares with it locally when it runs there too
        "model": os.path.abspath(seg.path),
    }
    return {
        MANIFEST_PARAMETER: json.dumps(seg.manifest.to_dict(), sort_keys=True),
        RUNTIME_PARAMETER: json.dumps(runtime, sort_keys=True),
    }


def _attach_parameters(triton: Any, name: str, params: Dict[str, str]) -> None:
    """Put ``params`` into the bound model's Triton config before it loads.

    PyTriton 0.7 has no public way to add config ``parameters``; its model keeps the config
    it will load (``Model._get_triton_model_config``) and writes ``backend_parameters`` as
    ``parameters { key, value { string_value } }``. With a local model store, ``bind`` has
    already written ``config.pbtxt`` there, so it is written again with the parameters. The
    tests read the parameters back from the running server, so a PyTriton that changes this
    fails there, not silently.
    """
    try:
        manager = triton._model_manager
        model = next(m for m in manager.models if m.model_name == name)
        model._get_triton_model_config().backend_parameters.update(params)
        store = manager._model_store_path
        if store is not None:
            (Path(store) / name / "config.pbtxt").unlink()  # else PyTriton warns it overwrites
            model.generate_model(Path(store))
    except (AttributeError, StopIteration, FileNotFoundError):
        raise BackendUnavailableError(
            "this nvidia-pytriton cannot carry the model's manifest in its config: install "
            "nvidia-pytriton 0.7.x (" + PYTRITON_INSTALL + ")"
        ) from None


def bind_frames_model(
    triton: Any, config_mod: Any, seg: Any, options: ServeOptions, summary: ServeSummary, lock: Any
) -> None:
    """Bind ``seg`` to ``triton`` as the frames model, its manifest in the config parameters.

    Separate from ``serve`` so a test can put the same model on a Triton that loads it over
    the repository API (PyTriton's default), as NVIDIA's container in explicit mode does.
    """
    tensor = config_mod.Tensor
    triton.bind(
        model_name=options.name,
        infer_func=[
            _FramesModel(seg, options.max_side, options.overlay_alpha, summary, lock)
            for _ in range(options.instances)
        ],
        inputs=[tensor(name=FRAMES_INPUT, dtype=np.uint8, shape=(-1, -1, 3))],
        outputs=[
            tensor(name=MASK_OUTPUT, dtype=np.uint8, shape=(-1, -1)),
            tensor(name=OVERLAY_OUTPUT, dtype=np.uint8, shape=(-1, -1, 3)),
        ],
        config=config_mod.ModelConfig(
            batching=True,
            max_batch_size=int(options.max_batch),
            batcher=config_mod.DynamicBatcher(
                max_queue_delay_microseconds=int(options.queue_delay_us)
            ),
        ),
        strict=False,
    )
    _attach_parameters(triton, options.name, _runtime_parameters(seg, options))


def _model_loaded_before_listeners(triton_mod: Any) -> Any:
    """PyTriton's lifecycle that writes the model store before tritonserver starts.

    tritonserver then loads the model at startup (PyTriton passes ``--load-model=*``) and
    starts its listeners afterwards, so readiness implies the model answers. PyTriton's
    default instead loads the model over the repository API once the server is up.
    """
    policy = getattr(triton_mod, "TritonLifecyclePolicy", None)
    if policy is None:
        raise BackendUnavailableError(
            "this nvidia-pytriton cannot load the model before Triton's listeners start: "
            "install nvidia-pytriton 0.7.x (" + PYTRITON_INSTALL + ")"
        )
    return policy(launch_triton_on_startup=True, local_model_store=True)


class _TritonThread(threading.Thread):
    """Starts Triton, keeps it, stops it: all in one thread that lives as long as the server.

    PyTriton starts tritonserver with PR_SET_PDEATHSIG, which the kernel ties to the *thread*
    that forked it: tritonserver gets SIGTERM the moment that thread ends. So the thread that
    calls ``run()`` must live until ``stop()``. It also lets the caller notice a tritonserver
    that dies while starting, which ``run()`` alone would wait 120 s for.
    """

    def __init__(self, triton: Any) -> None:
        super().__init__(name="triton", daemon=True)
        self.triton = triton
        self.started = threading.Event()
        self.release = threading.Event()
        self.failure = None  # type: Optional[BaseException]

    def run(self) -> None:
        try:
            self.triton.run()
            self.started.set()
            self.release.wait()
        except BaseException as exc:  # reported by the waiting thread
            self.failure = exc
        finally:
            self.triton.stop()  # SIGINT to tritonserver: it drains in-flight requests, exits

    def server_died(self) -> bool:
        server = getattr(self.triton, "_triton_server", None)
        return server is not None and not server.is_alive() and not self.started.is_set()

    def startup_error(self) -> BackendUnavailableError:
        server = getattr(self.triton, "_triton_server", None)
        log = server.logs() if server is not None else ""
        errors = [ln for ln in log.splitlines() if re.match(r"^E\d{4}", ln)]
        detail = errors[-1] if errors else (first_line(self.failure) if self.failure else "")
        return BackendUnavailableError(
            f"Triton did not start: {detail or 'it exited'} (--log-file keeps its whole log)"
        )

    def wait_started(self, stop: threading.Event) -> bool:
        """True once serving; False if ``stop`` was set first; raises if Triton failed."""
        while not self.started.wait(0.2):
            if self.failure is not None or self.server_died():
                raise self.startup_error()
            if stop.is_set():
                return False
        return True


def serve(
    model: str,
    options: Optional[ServeOptions] = None,
    on_ready: Optional[Callable[[ServerInfo], None]] = None,
    stop: Optional[threading.Event] = None,
) -> ServeSummary:
    """Serve ``model`` until SIGINT/SIGTERM (or ``stop`` is set); returns what was served."""
    from ..runtime.backends import is_remote
    from ..runtime.segmenter import Segmenter

    options = options or ServeOptions()
    options.check()
    if is_remote(model):
        raise ConfigError(f"serve takes a model file, not a server URL ({model})")
    triton_mod, config_mod = _import_pytriton()
    check_ports(
        options.host,
        {
            "--http-port": options.http_port,
            "--grpc-port": options.grpc_port,
            "--metrics-port": options.metrics_port,
        },
    )
    stop = stop or threading.Event()
    seg = Segmenter.open(model, device=options.device, backend=options.backend)
    try:
        return _serve_segmenter(seg, str(model), options, triton_mod, config_mod, on_ready, stop)
    finally:
        seg.close()


def _serve_segmenter(
    seg: Any,
    model: str,
    options: ServeOptions,
    triton_mod: Any,
    config_mod: Any,
    on_ready: Optional[Callable[[ServerInfo], None]],
    stop: threading.Event,
) -> ServeSummary:
    summary = ServeSummary()
    lock = threading.Lock()
    libdir, warning = python_backend_libdir()
    if warning:
        LOG.warning(warning)
    saved_env = os.environ.get("LD_LIBRARY_PATH")
    if libdir:  # PyTriton copies os.environ for tritonserver when it starts it
        os.environ["LD_LIBRARY_PATH"] = libdir + (":" + saved_env if saved_env else "")
    config = triton_mod.TritonConfig(
        http_address=options.host,
        grpc_address=options.host,
        metrics_address=options.host,
        http_port=int(options.http_port),
        grpc_port=int(options.grpc_port),
        metrics_port=int(options.metrics_port),
        exit_timeout_secs=int(options.exit_timeout_s),
        strict_readiness=True,
        log_verbose=0,
        log_file=Path(options.log_file) if options.log_file else None,
    )
    security = triton_mod.TritonSecurityConfig(restricted_endpoints=list(PROTECTED_ENDPOINTS))
    workspace = None  # PyTriton's own temporary folder; a given folder gets a new subfolder
    if options.workspace:  # (PyTriton creates the workspace itself and deletes it at stop)
        workspace = str(Path(options.workspace).expanduser() / f"serve-{os.getpid()}")
    triton = triton_mod.Triton(
        config=config,
        workspace=workspace,
        security_config=security,
        triton_lifecycle_policy=_model_loaded_before_listeners(triton_mod),
    )
    handlers = signal_handlers(stop, summary)
    keeper = _TritonThread(triton)
    try:
        bind_frames_model(triton, config_mod, seg, options, summary, lock)
        keeper.start()
        if keeper.wait_started(stop) and on_ready is not None:
            on_ready(_info(seg, model, options))
        while not stop.wait(0.5):
            if not triton.is_alive():
                summary.stopped_by = "Triton exited"
                raise BackendUnavailableError(
                    "Triton exited unexpectedly while serving: see its log (--log-file)"
                )
    except KeyboardInterrupt:
        summary.stopped_by = summary.stopped_by or "SIGINT"
    finally:
        restore_signal_handlers(handlers)
        if keeper.is_alive():
            keeper.release.set()
            keeper.join(options.exit_timeout_s + 30.0)  # Triton's drain, then its unload
        else:
            triton.stop()
        if libdir:
            if saved_env is None:
                os.environ.pop("LD_LIBRARY_PATH", None)
            else:
                os.environ["LD_LIBRARY_PATH"] = saved_env
    return summary


def _info(seg: Any, model: str, options: ServeOptions) -> ServerInfo:
    host = options.host if options.host not in ("0.0.0.0", "::") else socket.gethostname()
    hostport = (f"[{host}]" if ":" in host else host) + ":{}"
    return ServerInfo(
        name=options.name,
        model=model,
        backend=seg.backend.describe(),
        reason=seg.reason,
        grpc_url=f"grpc://{hostport.format(options.grpc_port)}/{options.name}",
        http_url=f"http://{hostport.format(options.http_port)}/{options.name}",
        metrics_url=f"http://{hostport.format(options.metrics_port)}/metrics",
        max_batch=options.max_batch,
        instances=options.instances,
    )


def signal_handlers(stop: threading.Event, summary: ServeSummary) -> Dict[int, Any]:
    """SIGINT and SIGTERM set ``stop`` (main thread only: Python delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        summary.stopped_by = signal.Signals(signum).name
        stop.set()

    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        saved[sig] = signal.signal(sig, handler)
    return saved


def restore_signal_handlers(saved: Dict[int, Any]) -> None:
    for sig, previous in saved.items():
        signal.signal(sig, previous)


def wait_ready(host: str, http_port: int, model: str = "cifrenet", timeout: float = 120.0) -> bool:
    """Poll ``/v2/models/MODEL/ready`` until it answers 200 (tests, scripts, probes).

    The model's own readiness, which holds for any Triton: one that loads models over the
    repository API after it is up (NVIDIA's container in explicit mode, PyTriton's default)
    answers 200 on ``/v2/health/ready`` before its models can serve. ``serve`` itself loads
    the model before its listeners open, so there both URLs mean the model answers.
    """
    import urllib.error
    import urllib.request

    url = f"http://{host}:{int(http_port)}/v2/models/{model}/ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False
