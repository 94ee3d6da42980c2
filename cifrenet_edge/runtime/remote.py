"""A ``Segmenter`` whose model runs on a Triton server: ``Segmenter.open("grpc://HOST:PORT/NAME")``.

Many robots, one GPU server. The robot sends uint8 BGR frames (1 byte per pixel and channel:
0.7 MB for 640x360, where the network's float32 input is 2.8 MB) and gets back uint8 class
maps at the frame's own size; the server (``cifrenet-edge serve``) resizes, normalises, runs
the network and post-processes, once, exactly as a local Segmenter would (it *is* a local
Segmenter, behind Triton).

What the robot's code sees is the local Segmenter's API: ``predict``, ``predict_batch``,
``colorize``, ``overlay``, ``classes``, ``palette_bgr``, ``reason``. Class names, palette and
normalisation come from the server's model config (its ``parameters`` carry the model's
manifest), never from the caller, so a robot cannot pair a model with the wrong class list.

Failures, in one line each, within ``timeout`` seconds (default 10 s), never a hang:

* server down, gone mid-request, or too slow: ``BackendUnavailableError``. The Segmenter
  stays usable: the next call reconnects (a fresh gRPC channel with short reconnect backoff,
  so a restarted server is used within about a second of coming back);
* a frame the server refuses (too large, empty...): ``FrameError`` with the server's reason;
* a model name the server does not serve: ``ModelFileError`` listing what it serves.

Opening waits, within ``timeout``, for a server that is starting or a model that is loading:
``cifrenet-edge serve`` opens its listeners only once its model is loaded (connection refused
until then), and a Triton that loads models over its repository API (NVIDIA's container in
explicit mode) answers "has no available versions" for a model it is loading, where a name
it has never heard of "is not found". Past the timeout: ``ModelLoadingError`` (a
``BackendUnavailableError``) saying "loading", or the unreachable error; a model whose load
failed, where the repository index says so, is a ``ModelFileError`` with Triton's reason.

``probabilities=True`` is refused: the server sends class maps only (HxWxC float32 scores
would be 19x4 bytes per pixel of network traffic); run the model locally for scores.

A model from ``export --format triton`` served by NVIDIA's ``tritonserver`` container takes
the network's own tensors (NCHW float32, logits back). The same ``Segmenter.open(url)``
works there too: ``TritonTensorBackend`` sends the tensors, and this Segmenter does the
pre/post-processing, as for a local file (probabilities included). The model config tells
which protocol a model speaks (a ``frames`` input, or the manifest's input name).

The wire protocol (tensor and parameter names) is defined here and used by the server
(``cifrenet_edge/serve/server.py``), so the two cannot drift apart.

numpy + OpenCV + tritonclient (imported when a URL is opened); Python 3.8 syntax.
"""

import contextlib
import json
import re
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import (
    BackendUnavailableError,
    CifreNetError,
    ConfigError,
    FrameError,
    ModelFileError,
    first_line,
)
from ..manifest import Manifest
from .backends.base import Backend

# -- the wire protocol (shared with cifrenet_edge/serve/server.py) ----------------------------
#: N x H x W x 3 uint8 BGR frames; all frames of one request have one size
FRAMES_INPUT = "frames"
#: N x H x W uint8 class ids, at each frame's size
MASK_OUTPUT = "mask"
#: N x H x W x 3 uint8 BGR overlays (computed only when a client asks for this output)
OVERLAY_OUTPUT = "overlay"
#: model-config parameter: the model's manifest (JSON), what a local Segmenter reads from disk
MANIFEST_PARAMETER = "cifrenet_edge_manifest"
#: model-config parameter: what serves it (JSON: backend, device, precision, resolution, limits)
RUNTIME_PARAMETER = "cifrenet_edge_runtime"
#: the server's exceptions reach the client inside Triton's error text as "<type>: <message>"
_SERVER_ERROR = re.compile(r"cifrenet_edge\.errors\.(\w+): ([^\n]*)")

SCHEMES = {"grpc": 8001, "http": 8000}  # and their Triton default ports
DEFAULT_MODEL_NAME = "cifrenet"
DEFAULT_TIMEOUT_S = 10.0

# Triton's words for a model it knows but cannot serve yet (core/src/model_lifecycle.cc:
# GetModel): no READY version ("has no available versions"), or the version asked for is
# not READY ("is not at ready state"). A name it does not know "is not found".
_NOT_READY = ("has no available versions", "is not at ready state")
#: how often opening asks again while the server starts or the model loads
_OPEN_POLL_S = 0.25

# gRPC status codes that mean "the server is not there (now)": retry later, same Segmenter.
_UNREACHABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "ABORTED", "UNKNOWN")
# ... and what a connection that died mid-call reports under other codes (e.g. INTERNAL)
_GONE = (
    "failed to connect",
    "socket closed",
    "connection reset",
    "rst_stream",
    "stream removed",
    "broken pipe",
    "goaway",
)


class ServerUnreachableError(BackendUnavailableError):
    """The server did not answer (down, starting, gone mid-call, too slow)."""


class ModelLoadingError(BackendUnavailableError):
    """The server knows the model but has no version of it ready: it is loading it."""


class TritonAddress(NamedTuple):
    """Where a remote model lives: ``scheme://host:port/model``."""

    scheme: str
    host: str
    port: int
    model: str

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.hostport}/{self.model}"


def valid_model_name(name: str) -> bool:
    """Triton model names: letters, digits, '_', '-', '.' (what PyTriton accepts)."""
    return bool(re.match(r"^[A-Za-z0-9_.\-]+$", str(name)))


def parse_url(url: str) -> TritonAddress:
    """``grpc://HOST[:PORT][/NAME]`` or ``http://...`` (ports default to Triton's 8001/8000)."""
    m = re.match(r"^(\w+)://(\[[^\]]+\]|[^/:]+)(?::(\d+))?(?:/([^/?#]*))?/?$", str(url).strip())
    if not m or m.group(1).lower() not in SCHEMES:
        raise ConfigError(
            f"cannot read Triton address {url!r}: use grpc://HOST:PORT/MODEL or "
            "http://HOST:PORT/MODEL, e.g. grpc://gpu-server:8001/cifrenet"
        )
    scheme = m.group(1).lower()
    host = m.group(2).strip("[]")
    port = int(m.group(3)) if m.group(3) else SCHEMES[scheme]
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} in {url!r} is not a TCP port (1..65535)")
    name = m.group(4) or DEFAULT_MODEL_NAME
    if not valid_model_name(name):
        raise ConfigError(f"{name!r} in {url!r} is not a Triton model name (letters, digits, _-.)")
    return TritonAddress(scheme, host, port, name)


def server_error(text: str) -> Optional[CifreNetError]:
    """The toolkit error the server raised, recovered from Triton's error text (or None)."""
    from .. import errors

    found = _SERVER_ERROR.findall(text or "")
    if not found:
        return None
    name, message = found[-1]
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, CifreNetError)):
        cls = FrameError
    return cls(message.strip())


# -- the connection -----------------------------------------------------------------------
class _Connection:
    """tritonclient calls with timeouts, one-line errors and reconnection after a failure.

    gRPC: one client (its methods are thread-safe, tritonclient/grpc/_client.py) rebuilt after
    a failure; HTTP: one client per thread (tritonclient's HTTP client is not thread-safe,
    tritonclient/http/_client.py). A rebuilt gRPC channel uses its own subchannel pool and a
    200 ms..1 s reconnect backoff: gRPC's defaults (1 s growing to 120 s, shared pool) would
    keep failing fast for minutes after the server is back.
    """

    def __init__(self, address: TritonAddress, timeout: float) -> None:
        if timeout <= 0:
            raise ConfigError(f"timeout {timeout} s must be > 0 (seconds a call may take)")
        self.address = address
        self.timeout = float(timeout)
        try:
            if address.scheme == "grpc":
                import tritonclient.grpc as module
            else:
                import tritonclient.http as module
            from tritonclient.utils import InferenceServerException
        except ImportError as exc:
            raise BackendUnavailableError(
                f"talking to Triton needs tritonclient ({getattr(exc, 'name', None) or exc} is "
                "missing): pip install 'tritonclient[grpc,http]' (or 'cifrenet-edge[serve]')"
            ) from None
        self.module = module
        self.ServerError = InferenceServerException
        self._lock = threading.Lock()
        self._local = threading.local()
        self._shared = None  # type: Any
        self._all = []  # type: List[Any]
        self._closed = False
        #: set once the model answered: a later "unknown model" means the server is stopping
        #: (Triton unloads models while it shuts down) or the model was unloaded, not a typo
        self.opened = False

    # clients ----------------------------------------------------------------------------
    def _new_client(self) -> Any:
        a = self.address
        if a.scheme == "grpc":
            from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

            args = [
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
                ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ]
            client = self.module.InferenceServerClient(a.hostport, channel_args=args)
        else:
            client = self.module.InferenceServerClient(
                a.hostport, connection_timeout=self.timeout, network_timeout=self.timeout
            )
        self._all.append(client)
        return client

    def client(self) -> Any:
        if self._closed:
            raise BackendUnavailableError(f"connection to {self.address.url} is closed")
        with self._lock:
            if self.address.scheme == "grpc":
                if self._shared is None:
                    self._shared = self._new_client()
                return self._shared
            client = getattr(self._local, "client", None)
            if client is None:
                client = self._local.client = self._new_client()
            return client

    def _drop(self, client: Any) -> None:
        """Forget a client after a transport failure: the next call builds a new one."""
        with self._lock:
            if self._shared is client:
                self._shared = None
            if getattr(self._local, "client", None) is client:
                self._local.client = None
            if client in self._all:
                self._all.remove(client)
        with contextlib.suppress(Exception):  # closing a broken connection may fail too
            client.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._all, self._shared = list(self._all), [], None
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()

    # calls ------------------------------------------------------------------------------
    def call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.method(*args)`` with the timeout; every failure is one toolkit error."""
        client = self.client()
        if self.address.scheme == "grpc":
            kwargs["client_timeout"] = self.timeout
        try:
            return getattr(client, method)(*args, **kwargs)
        except self.ServerError as exc:
            raise self._translate(exc, what, client) from None
        except CifreNetError:
            raise
        except Exception as exc:  # HTTP transport: refused, reset, timed out (gevent/socket)
            self._drop(client)
            raise ServerUnreachableError(self._unreachable(what, first_line(exc))) from None

    def _unreachable(self, what: str, detail: str) -> str:
        return (
            f"Triton at {self.address.url} is unreachable ({what}: {detail}); is "
            f"`cifrenet-edge serve` running there (it listens once its model is loaded)? The "
            f"next call retries (timeout {self.timeout:g} s)"
        )

    def _translate(self, exc: Any, what: str, client: Any) -> CifreNetError:
        text = str(exc.message() or exc)
        status = str(exc.status() or "")
        own = server_error(text)
        if own is not None:
            return own
        code = status.rsplit(".", 1)[-1].upper()
        lower = text.lower()
        if code in _UNREACHABLE or any(words in lower for words in _GONE):
            self._drop(client)
            return ServerUnreachableError(self._unreachable(what, _clean(text)))
        if (
            code == "NOT_FOUND"
            or "unknown model" in lower
            or (status == "400" and ("not found" in lower))
        ):
            if not self.opened and any(words in lower for words in _NOT_READY):
                return ModelLoadingError(
                    f"Triton at {self.address.hostport} has model {self.address.model!r} but "
                    f"no version of it ready ({_clean(text)}): it is loading"
                )
            if self.opened:
                return BackendUnavailableError(
                    f"Triton at {self.address.hostport} no longer serves model "
                    f"{self.address.model!r} (stopping, or the model was unloaded); the next "
                    "call retries"
                )
            return ModelFileError(
                f"Triton at {self.address.hostport} does not serve model "
                f"{self.address.model!r}{self._served()}: check the name in the URL"
            )
        if code == "INVALID_ARGUMENT" or status == "400":
            return FrameError(f"Triton refused the frames: {_clean(text)}")
        return BackendUnavailableError(
            f"Triton model {self.address.model!r} at {self.address.hostport} failed ({what}): "
            f"{_clean(text)}"
        )

    def model_state(self) -> Any:
        """(state, reason) of the model in the repository index, or None where the index is
        not readable (PyTriton servers restrict it) or does not list the model."""
        try:
            client = self.client()
            if self.address.scheme == "grpc":
                index = client.get_model_repository_index(as_json=True, client_timeout=self.timeout)
                rows = index.get("models", [])
            else:
                rows = client.get_model_repository_index()
        except Exception:  # restricted, or the server went away: the caller words it
            return None
        for row in rows:
            if row.get("name") == self.address.model and row.get("state"):
                return str(row["state"]).upper(), str(row.get("reason") or "")
        return None

    def _served(self) -> str:
        """`` (it serves: a, b)`` from the repository index, or '' when that is not readable."""
        try:
            client = self.client()
            if self.address.scheme == "grpc":
                index = client.get_model_repository_index(as_json=True, client_timeout=self.timeout)
                names = [m.get("name") for m in index.get("models", [])]
            else:
                names = [m.get("name") for m in client.get_model_repository_index()]
        except Exception:  # the index is a restricted endpoint on PyTriton servers
            return ""
        return " (it serves: {})".format(", ".join(sorted(n for n in names if n))) if names else ""


def _clean(text: str) -> str:
    """One line of Triton's error text: the last line that says something (tracebacks end
    in the cause), without gRPC's status prefix."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("At:", "/", "File ", "^"))]
    line = lines[-1] if lines else str(text).strip()
    return re.sub(r"^\[StatusCode\.\w+\]\s*", "", line)[:300]


# -- the backend and the Segmenter ----------------------------------------------------------
class TritonFramesBackend(Backend):
    """Frames in, class maps out, on a ``cifrenet-edge serve`` model (server-side pre/post).

    It has no ``infer``: the server never sends logits. ``predict_frame`` makes the
    Segmenter's ordinary ``predict`` use the server (the Segmenter's device fast path).
    """

    name = "triton"

    def __init__(
        self,
        connection: _Connection,
        manifest: Manifest,
        runtime: Dict[str, Any],
        max_batch: int,
    ) -> None:
        wh = runtime.get("resolution") or [0, 0]
        super().__init__(
            connection.address.url,
            manifest,
            (max(int(max_batch), 1), 3, int(wh[1]), int(wh[0])),
            precision=str(runtime.get("precision") or manifest.precision),
        )
        self.connection = connection
        self.runtime = runtime
        self.device = "server:{}".format(runtime.get("device", "?"))  # where the model runs
        self.max_batch = max(int(max_batch), 1)
        self.dynamic_batch = True
        self.max_side = int(runtime.get("max_side") or 0)

    returns_logits = False

    def why_no_logits(self) -> str:
        return (
            f"the Triton model {self.connection.address.url} takes frames and returns class "
            "maps, not logits: use predict() without probabilities, or open the model file "
            "locally for probabilities"
        )

    def infer(self, x: np.ndarray) -> np.ndarray:
        raise ConfigError(self.why_no_logits())

    def predict_frame(self, frame: np.ndarray) -> np.ndarray:
        return self.predict_frames([frame])[0]

    def predict_frames(self, frames: Sequence[np.ndarray]) -> List[np.ndarray]:
        """One request per run of same-size frames (a request is one N x H x W x 3 tensor),
        at most ``max_batch`` frames each; results in the frames' order."""
        self._check_open()
        results = []  # type: List[np.ndarray]
        start = 0
        while start < len(frames):
            shape = frames[start].shape
            end = start + 1
            while end < len(frames) and end - start < self.max_batch and frames[end].shape == shape:
                end += 1
            masks = self._request(np.stack(frames[start:end]))
            results.extend(masks[i] for i in range(end - start))
            start = end
        return results

    def _request(self, batch: np.ndarray) -> np.ndarray:
        n, h, w = batch.shape[:3]
        if self.max_side and max(h, w) > self.max_side:
            raise FrameError(
                f"frame {w}x{h} is larger than the server's limit of {self.max_side} px a "
                "side: resize it on the robot (or raise the server's --max-side)"
            )
        module = self.connection.module
        frames = module.InferInput(FRAMES_INPUT, list(batch.shape), "UINT8")
        frames.set_data_from_numpy(np.ascontiguousarray(batch))
        outputs = [module.InferRequestedOutput(MASK_OUTPUT)]
        result = self.connection.call(
            "inference",
            "infer",
            self.connection.address.model,
            [frames],
            outputs=outputs,
        )
        mask = result.as_numpy(MASK_OUTPUT)
        if mask is None or mask.shape != (n, h, w) or mask.dtype != np.uint8:
            got = None if mask is None else (mask.dtype, mask.shape)
            raise BackendUnavailableError(
                f"Triton model {self.connection.address.url} answered {got} for {n} frames of "
                f"{w}x{h}: it is not a cifrenet-edge serve model (serve it with "
                "`cifrenet-edge serve`)"
            )
        return mask

    def describe(self) -> Dict[str, Any]:
        info = super().describe()
        info["server"] = dict(self.runtime)
        return info

    def _close(self) -> None:
        self.connection.close()


def _parameters(config: Dict[str, Any]) -> Dict[str, str]:
    """``parameters`` of a model config (JSON form) as plain strings."""
    params = config.get("parameters") or {}
    return {k: str((v or {}).get("string_value", "")) for k, v in params.items()}


def _model_config(connection: _Connection) -> Dict[str, Any]:
    name = connection.address.model
    if connection.address.scheme == "grpc":
        reply = connection.call("reading the model config", "get_model_config", name, as_json=True)
        return dict(reply.get("config") or {})
    return dict(connection.call("reading the model config", "get_model_config", name))


class TritonTensorBackend(Backend):
    """The network itself on Triton (a repository from ``export --format triton`` served by
    NVIDIA's container): NCHW float32 in, logits out, the Segmenter's pre/post-processing
    on the client. Sends 4 bytes per pixel and channel instead of 1, so it suits servers
    on a fast network; ``cifrenet-edge serve`` is the bandwidth-friendly way."""

    name = "triton"

    def __init__(self, connection: _Connection, manifest: Manifest, config: Dict[str, Any]):
        self.connection = connection
        self.input_name = manifest.input_name
        self.output_name = manifest.output_name
        spec = next(i for i in config.get("input", []) if i.get("name") == self.input_name)
        dims = [int(d) for d in spec.get("dims", [])]
        top = int(config.get("max_batch_size") or 0)
        if top > 0 and len(dims) == 3:
            lead, (h, w) = max(top, 1), dims[1:]
        elif top == 0 and len(dims) == 4:
            lead, (h, w) = dims[0], dims[2:]
        else:
            raise ModelFileError(
                f"Triton model {connection.address.url} declares input {self.input_name!r} as "
                f"{dims} with max_batch_size {top}: expected [3, H, W] (or [N, 3, H, W] with "
                "max_batch_size 0); write the repository with `export --format triton`"
            )
        wh = manifest.input_wh() if min(h, w) < 1 else (w, h)
        super().__init__(connection.address.url, manifest, (lead, 3, wh[1], wh[0]))
        self.device = "server"
        self.dynamic_batch = top > 0
        self.max_batch = lead

    def infer(self, x: np.ndarray) -> np.ndarray:
        self._check_open()
        module = self.connection.module
        tensor = module.InferInput(self.input_name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        result = self.connection.call(
            "inference",
            "infer",
            self.connection.address.model,
            [tensor],
            outputs=[module.InferRequestedOutput(self.output_name)],
        )
        logits = result.as_numpy(self.output_name)
        if logits is None or logits.ndim != 4 or logits.shape[0] != x.shape[0]:
            raise BackendUnavailableError(
                f"Triton model {self.connection.address.url} answered "
                f"{None if logits is None else logits.shape} for input {list(x.shape)}"
            )
        return logits

    def _close(self) -> None:
        self.connection.close()


def _read_parameters(address: TritonAddress, config: Dict[str, Any]) -> Any:
    """(manifest, runtime) from the model config's parameters; one-line errors."""
    params = _parameters(config)
    if MANIFEST_PARAMETER not in params:
        raise ModelFileError(
            f"Triton model {address.url} carries no cifrenet-edge manifest in its config "
            "(classes, palette, normalisation): serve it with `cifrenet-edge serve`, or "
            "write its repository with `cifrenet-edge export --format triton`"
        )
    try:
        manifest = json.loads(params[MANIFEST_PARAMETER])
        runtime = json.loads(params.get(RUNTIME_PARAMETER) or "{}")
    except ValueError as exc:
        raise ModelFileError(
            f"Triton model {address.url} has an unreadable manifest parameter ({exc}): "
            "serve it again with this version of cifrenet-edge"
        ) from None
    return Manifest.from_dict(manifest, address.url), runtime


def _wait_for_config(connection: _Connection) -> Dict[str, Any]:
    """The model config, asked again within the timeout while the server is not listening
    yet or the model is loading; a failed load (when the index tells) ends the wait."""
    address = connection.address
    deadline = time.monotonic() + connection.timeout
    while True:
        try:
            return _model_config(connection)
        except (ServerUnreachableError, ModelLoadingError) as exc:
            state = connection.model_state() if isinstance(exc, ModelLoadingError) else None
            if state is not None and state[0] == "UNAVAILABLE" and state[1]:
                raise ModelFileError(
                    f"Triton at {address.hostport} could not load model {address.model!r}: "
                    f"{_clean(state[1])}"
                ) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise _open_timed_out(connection, exc, state) from None
            time.sleep(min(_OPEN_POLL_S, left))


def _open_timed_out(connection: _Connection, exc: BackendUnavailableError, state: Any) -> Any:
    if not isinstance(exc, ModelLoadingError):
        return exc
    address = connection.address
    sure = state is not None and state[0] == "LOADING"  # the index says so
    unsure = "" if sure else " (if it stays so, its load failed: see the server's log)"
    return ModelLoadingError(
        f"Triton at {address.hostport} is still loading model {address.model!r} after "
        f"{connection.timeout:g} s{unsure}: open it again once it is ready, or give "
        "Segmenter.open a longer timeout="
    )


def connect(url: str, timeout: float = DEFAULT_TIMEOUT_S) -> Tuple[Backend, Manifest, str]:
    """Connect to a Triton model and read its manifest: (backend, manifest, reason). A
    ``cifrenet-edge serve`` model (uint8 frames) gets ``TritonFramesBackend``, a repository
    written by ``export --format triton`` (the network's own tensors) ``TritonTensorBackend``;
    ``Segmenter.open(url)`` wraps either."""
    address = parse_url(url)
    connection = _Connection(address, timeout)
    try:
        config = _wait_for_config(connection)
        manifest, runtime = _read_parameters(address, config)
        inputs = [i.get("name") for i in config.get("input", [])]
        if FRAMES_INPUT in inputs:
            backend = TritonFramesBackend(
                connection, manifest, runtime, int(config.get("max_batch_size") or 1)
            )  # type: Backend
        elif manifest.input_name in inputs:
            backend = TritonTensorBackend(connection, manifest, config)
        else:
            raise ModelFileError(
                f"Triton model {address.url} takes {inputs}: neither uint8 frames nor its "
                f"manifest's input {manifest.input_name!r}"
            )
    except BaseException:
        connection.close()
        raise
    connection.opened = True
    if isinstance(backend, TritonFramesBackend):
        there = "{} on {}".format(runtime.get("backend", "?"), runtime.get("device", "?"))
        reason = f"remote: Triton model {address.model!r} at {address.hostport} ({there} there)"
    else:
        reason = (
            f"remote: Triton model {address.model!r} at {address.hostport} (the network's "
            "tensors; pre/post-processing here)"
        )
    return backend, manifest, reason
