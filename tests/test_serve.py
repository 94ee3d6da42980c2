"""`cifrenet-edge serve` through a real Triton (PyTriton's tritonserver) on 127.0.0.1.

One server (a subprocess running the CLI, ports picked free by the test) serves every test
of this module and is stopped with SIGTERM at the end (it must exit 0). A second server is
killed and restarted by ``test_server_killed_then_restarted``. The model is the content-
dependent 128x64 network of tests/conftest.py, so equal class maps mean something.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytriton", reason="serving needs nvidia-pytriton (pip install '.[serve]')")
pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc,http]")

from cifrenet_edge.errors import (
    BackendUnavailableError,
    ConfigError,
    FrameError,
    ModelFileError,
)
from cifrenet_edge.runtime import Segmenter
from cifrenet_edge.runtime.remote import ModelLoadingError

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MAX_SIDE = 2048  # the test server's limit: an oversized frame stays a small request


def free_ports(n):
    """``n`` distinct ports the kernel says are free now (bound to port 0, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _loopback_pytriton(monkeypatch, env=None):
    """PyTriton's own Triton on 127.0.0.1 with free ports and an open repository index.

    Returns it with its HTTP and gRPC ports and the workspace folder the caller removes."""
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    from cifrenet_edge.serve.server import python_backend_libdir

    libdir, _ = python_backend_libdir()
    if libdir:
        monkeypatch.setenv("LD_LIBRARY_PATH", libdir)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    http, grpc, metrics = free_ports(3)
    workspace = tempfile.mkdtemp(prefix="cet-")
    triton = Triton(
        config=TritonConfig(
            http_address=HOST,
            grpc_address=HOST,
            metrics_address=HOST,
            http_port=http,
            grpc_port=grpc,
            metrics_port=metrics,
        ),
        workspace=str(Path(workspace) / "w"),  # PyTriton creates it (it must not exist)
        security_config=TritonSecurityConfig(restricted_endpoints=[]),
    )
    return triton, http, grpc, workspace


class Server:
    """``python -m cifrenet_edge serve`` in its own process group, logs in a temp folder."""

    def __init__(self, model, ports=None, extra=(), env=None):
        self.http, self.grpc, self.metrics = ports or free_ports(3)
        # PyTriton's IPC sockets live in the workspace: keep its path short (108-byte limit)
        self.dir = Path(tempfile.mkdtemp(prefix="cet-"))
        self.args = [
            sys.executable,
            "-m",
            "cifrenet_edge",
            "serve",
            str(model),
            "--host",
            HOST,
            "--http-port",
            str(self.http),
            "--grpc-port",
            str(self.grpc),
            "--metrics-port",
            str(self.metrics),
            "--max-side",
            str(MAX_SIDE),
            "--log-file",
            str(self.dir / "triton.log"),
            *extra,
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        self.out = open(self.dir / "serve.out", "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            self.args, stdout=self.out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    @property
    def grpc_url(self):
        return f"grpc://{HOST}:{self.grpc}/cifrenet"

    @property
    def http_url(self):
        return f"http://{HOST}:{self.http}/cifrenet"

    def log(self):
        return (self.dir / "serve.out").read_text(errors="replace")

    def wait_ready(self, timeout=180):
        from cifrenet_edge.serve.server import wait_ready

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            if wait_ready(HOST, self.http, "cifrenet", timeout=1):
                return self
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()[-3000:]}")

    def stop(self, sig=signal.SIGTERM, timeout=90):
        """Signal the serve process (not its group: Triton must be stopped by serve)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.out.close()
        return self.proc.returncode

    def kill(self):
        """SIGKILL the whole group (serve and its tritonserver), as a crash would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        for shm in Path("/dev/shm").glob(f"pytrtion{self.proc.pid}-*"):  # PyTriton's segments
            shm.unlink(missing_ok=True)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def photos(real_images_dir):
    return [cv2.imread(str(p)) for p in sorted(Path(real_images_dir).glob("*.jpg"))]


@pytest.fixture(scope="module")
def server(runtime_content_onnx):
    srv = Server(runtime_content_onnx, extra=["--max-batch", "8", "--queue-delay-us", "20000"])
    try:
        yield srv.wait_ready()
        code = srv.stop(signal.SIGTERM)
        log = srv.log()
        assert code == 0, log[-3000:]
        assert "stopped (SIGTERM)" in log
    finally:
        srv.kill()
        srv.cleanup()


@pytest.fixture(scope="module")
def local(runtime_content_onnx):
    with Segmenter.open(runtime_content_onnx) as seg:
        yield seg


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_outputs_equal_the_local_segmenter(server, local, real_images_dir, scheme):
    frames = photos(real_images_dir)
    url = server.grpc_url if scheme == "grpc" else server.http_url
    with Segmenter.open(url) as remote:
        assert remote.classes == local.classes  # from the server's config, not the caller
        assert np.array_equal(remote.palette_bgr, local.palette_bgr)
        assert remote.resolution == local.resolution
        assert remote.backend.name == "triton" and "onnxruntime" in remote.reason
        for frame in frames:
            want = local.predict(frame)
            assert len(np.unique(want)) > 3  # a content-dependent map: equality means something
            got = remote.predict(frame)
            assert got.dtype == np.uint8 and got.shape == frame.shape[:2]
            assert np.array_equal(got, want)
        # mixed sizes in one call: each run of equal sizes travels as one request
        mixed = [frames[0], frames[0][:97, :131], frames[1], frames[1]]
        for got, frame in zip(remote.predict_batch(mixed), mixed):
            assert np.array_equal(got, local.predict(frame))
        overlay = remote.overlay(frames[0], remote.predict(frames[0]), 0.4)
        assert np.array_equal(overlay, local.overlay(frames[0], local.predict(frames[0]), 0.4))


def test_server_overlay_output_and_health(server, local, real_images_dir):
    """A raw Triton client: the overlay is computed when asked for; /v2/health/ready is 200."""
    import urllib.request

    import tritonclient.grpc as g

    frame = photos(real_images_dir)[2]
    client = g.InferenceServerClient(f"{HOST}:{server.grpc}")
    x = g.InferInput("frames", [1, *frame.shape], "UINT8")
    x.set_data_from_numpy(frame[None])
    result = client.infer(
        "cifrenet",
        [x],
        outputs=[g.InferRequestedOutput("mask"), g.InferRequestedOutput("overlay")],
    )
    mask = local.predict(frame)
    assert np.array_equal(result.as_numpy("mask")[0], mask)
    assert np.array_equal(result.as_numpy("overlay")[0], local.overlay(frame, mask, 0.5))
    only_mask = client.infer("cifrenet", [x], outputs=[g.InferRequestedOutput("mask")])
    assert only_mask.as_numpy("overlay") is None
    with urllib.request.urlopen(f"http://{HOST}:{server.http}/v2/health/ready", timeout=5) as r:
        assert r.status == 200
    config = client.get_model_config("cifrenet", as_json=True)["config"]
    assert int(config["max_batch_size"]) == 8
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "20000"


def test_eight_concurrent_clients_get_correct_maps_in_batches(server, local, real_images_dir):
    import tritonclient.grpc as g

    frames = photos(real_images_dir)
    want = [local.predict(f) for f in frames]
    stats_client = g.InferenceServerClient(f"{HOST}:{server.grpc}")

    def batch_counts():
        stats = stats_client.get_inference_statistics("cifrenet", as_json=True)
        rows = stats["model_stats"][0].get("batch_stats", [])
        return {int(r["batch_size"]): int(r["compute_infer"]["count"]) for r in rows}

    before = batch_counts()
    results, errors = {}, []
    start = threading.Barrier(8)

    def client(k):
        try:
            with Segmenter.open(server.grpc_url) as seg:
                start.wait(60)
                results[k] = [seg.predict(frames[(k + i) % len(frames)]) for i in range(6)]
        except Exception as exc:  # reported below with the client's number
            errors.append(f"client {k}: {exc!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    for k in range(8):
        for i, got in enumerate(results[k]):
            assert np.array_equal(got, want[(k + i) % len(frames)]), (k, i)
    after = batch_counts()
    formed = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    assert sum(b * n for b, n in formed.items()) >= 48  # every request was executed
    assert any(b > 1 and n > 0 for b, n in formed.items()), formed  # Triton batched them


def test_malformed_requests_get_clear_errors_and_server_keeps_serving(server, local):
    import tritonclient.grpc as g
    from tritonclient.utils import InferenceServerException

    client = g.InferenceServerClient(f"{HOST}:{server.grpc}")
    good = np.full((1, 40, 60, 3), 90, np.uint8)

    def infer(array, dtype="UINT8", model="cifrenet"):
        x = g.InferInput("frames", list(array.shape), dtype)
        x.set_data_from_numpy(array)
        return client.infer(model, [x], outputs=[g.InferRequestedOutput("mask")])

    cases = [
        (good.astype(np.float32), "FP32", "cifrenet", "data-type is 'FP32'"),
        (good[..., 0], "UINT8", "cifrenet", "unexpected shape"),
        (np.zeros((1, 0, 0, 3), np.uint8), "UINT8", "cifrenet", "zeros in shape"),
        (np.zeros((1, MAX_SIDE + 1, 4, 3), np.uint8), "UINT8", "cifrenet", "limit of 2048 px"),
        (good, "UINT8", "no_such_model", "unknown model"),
    ]
    for array, dtype, model, words in cases:
        with pytest.raises(InferenceServerException) as info:
            infer(array, dtype, model)
        assert words in str(info.value), str(info.value)[:500]
        mask = infer(good).as_numpy("mask")  # still serving, still right
        assert np.array_equal(mask[0], local.predict(good[0]))

    with Segmenter.open(server.grpc_url) as remote:
        with pytest.raises(FrameError, match="limit of 2048 px"):  # checked before sending
            remote.predict(np.zeros((MAX_SIDE + 1, 4, 3), np.uint8))
        with pytest.raises(FrameError, match="empty"):
            remote.predict(np.zeros((0, 0, 3), np.uint8))
        with pytest.raises(ConfigError, match="probabilities"):
            remote.predict(good[0], probabilities=True)
        # the server's own refusal comes back as the toolkit's error type, in one line
        remote.backend.max_side = 0  # skip the client-side check: the server must refuse
        with pytest.raises(FrameError, match="limit of 2048 px") as info:
            remote.predict(np.zeros((MAX_SIDE + 1, 4, 3), np.uint8))
        assert "\n" not in str(info.value)
    with pytest.raises(ModelFileError, match="does not serve model 'nope'"):
        Segmenter.open(f"grpc://{HOST}:{server.grpc}/nope")
    with pytest.raises(ConfigError, match="server runs the model"):
        Segmenter.open(server.grpc_url, device="cpu")


def test_predict_cli_reads_from_the_server(server, local, real_images_dir, tmp_path):
    from typer.testing import CliRunner

    from cifrenet_edge.cli import app

    out = tmp_path / "out"
    args = ["predict", server.grpc_url, "--source", str(real_images_dir), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--save-mask"])
    assert result.exit_code == 0, result.output
    assert "5 frames segmented" in result.output
    for path, frame in zip(sorted(out.glob("*_mask.png")), photos(real_images_dir)):
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), local.predict(frame))


def test_bench_sweep_through_the_server(server, runtime_content_onnx, tmp_path):
    """`bench --model grpc://...`: each level measured remotely and locally, the batches
    Triton formed read from its statistics, a JSON report (no figures are asserted)."""
    import json

    from typer.testing import CliRunner

    from cifrenet_edge.cli import app

    out = tmp_path / "sweep.json"
    args = ["bench", "--model", server.grpc_url, "--clients", "1,2", "--seconds", "0.5"]
    args += ["--metrics-port", str(server.metrics), "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["kind"] == "cifrenet-edge/bench-serving/1" and report["clients"] == [1, 2]
    assert report["local_model"] == str(Path(runtime_content_onnx).resolve())
    for row in report["remote"]:
        assert row["requests"] > 0 and not row["errors"]
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        b = row["batches"]
        assert b["source"] == "statistics" and b["executions"] > 0
        assert sum(int(k) * v for k, v in b["formed"].items()) >= row["requests"]
    assert [r["clients"] for r in report["local"]] == [1, 2]
    assert all(r["requests"] > 0 for r in report["local"])


def test_port_in_use_is_one_line_error(server, runtime_content_onnx):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cifrenet_edge",
            "serve",
            str(runtime_content_onnx),
            "--host",
            HOST,
            "--grpc-port",
            str(server.grpc),
            "--http-port",
            str(free_ports(1)[0]),
            "--metrics-port",
            str(free_ports(1)[0]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: port "), proc.stderr
    assert "--grpc-port" in lines[0]


def test_server_killed_then_restarted(runtime_content_onnx, local, real_images_dir):
    """A crash mid-run: the client's error is one line within its timeout and the same
    Segmenter works once the server is back. Then SIGINT drains: every request the server
    executed reached its client, and serve exits 0."""
    frames = photos(real_images_dir)
    want = [local.predict(f) for f in frames]
    first = Server(runtime_content_onnx).wait_ready()
    ports = (first.http, first.grpc, first.metrics)
    second = None
    try:
        seg = Segmenter.open(first.grpc_url, timeout=5)
        assert np.array_equal(seg.predict(frames[0]), want[0])
        failures, wrong = [], []

        def hammer():
            for i in range(10_000):
                t0 = time.monotonic()
                try:
                    got = seg.predict(frames[i % len(frames)])
                except BackendUnavailableError as exc:
                    failures.append((time.monotonic() - t0, str(exc)))
                    return
                if not np.array_equal(got, want[i % len(frames)]):
                    wrong.append(i)

        t = threading.Thread(target=hammer)
        t.start()
        time.sleep(1.0)
        first.kill()
        t.join(60)
        assert not t.is_alive(), "the client hung on a dead server"
        assert failures, "the client never noticed the server was gone"
        assert not wrong, wrong
        took, message = failures[0]
        assert took < 5 + 10, took  # the 5 s timeout, plus slack for a loaded machine
        assert "unreachable" in message and "\n" not in message
        with pytest.raises(BackendUnavailableError, match="unreachable"):
            seg.predict(frames[0])  # down: fails fast, no hang

        second = Server(runtime_content_onnx, ports=ports).wait_ready()
        deadline = time.monotonic() + 30
        while True:  # the same Segmenter reconnects
            try:
                assert np.array_equal(seg.predict(frames[1]), want[1])
                break
            except BackendUnavailableError:
                assert time.monotonic() < deadline, "the client did not reconnect"
                time.sleep(0.2)
        answered = [1]  # the reconnecting call above
        lock = threading.Lock()
        stop_errors = []

        def count():
            with lock:
                answered[0] += 1

        def client(k):
            with Segmenter.open(second.grpc_url, timeout=30) as own:
                count()  # its warm-up request
                for i in range(10_000):
                    try:
                        got = own.predict(frames[(k + i) % len(frames)])
                    except BackendUnavailableError:
                        return
                    except Exception as exc:
                        stop_errors.append(repr(exc))
                        return
                    if not np.array_equal(got, want[(k + i) % len(frames)]):
                        stop_errors.append("wrong map")
                    count()

        clients = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for c in clients:
            c.start()
        time.sleep(2.0)
        code = second.stop(signal.SIGINT)
        for c in clients:
            c.join(60)
        seg.close()
        log = second.log()
        assert code == 0, log[-3000:]
        assert not stop_errors, stop_errors
        served = int(log.split("stopped (SIGINT): ")[1].split(" requests")[0])
        assert served == answered[0], (served, answered[0])  # drained: none lost in flight
    finally:
        first.kill()
        first.cleanup()
        if second is not None:
            second.kill()
            second.cleanup()


def test_repository_signature_served_by_triton(
    runtime_content_onnx, local, real_images_dir, tmp_path, monkeypatch
):
    """A model served with exactly the config ``export --format triton`` writes (NCHW
    float32 in, logits out, manifest in its parameters), as NVIDIA's container would serve
    it: the same Segmenter API, pre/post-processing on the client, the same class maps.
    Here a real Triton runs the repository's model.onnx through ONNX Runtime in PyTriton's
    Python backend (this machine has no container): the protocol is Triton's either way."""
    import onnxruntime as ort
    from google.protobuf import json_format, text_format
    from pytriton.model_config import ModelConfig, Tensor
    from tritonclient.grpc import model_config_pb2

    from cifrenet_edge.serve.server import _attach_parameters
    from cifrenet_edge.serve.triton_repo import write_model_repository

    repo = write_model_repository(runtime_content_onnx, tmp_path / "repo")
    config = text_format.Parse(repo.config_text, model_config_pb2.ModelConfig())
    session = ort.InferenceSession(str(repo.model_path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = config.input, config.output

    def infer(requests):
        return [{out.name: session.run([out.name], {inp.name: r[inp.name]})[0]} for r in requests]

    triton, _, grpc, workspace = _loopback_pytriton(monkeypatch)
    try:
        triton.bind(
            model_name=config.name,
            infer_func=infer,
            inputs=[Tensor(name=inp.name, dtype=np.float32, shape=tuple(inp.dims))],
            outputs=[Tensor(name=out.name, dtype=np.float32, shape=tuple(out.dims))],
            config=ModelConfig(batching=config.max_batch_size > 0),
        )
        params = json_format.MessageToDict(config)["parameters"]
        _attach_parameters(triton, config.name, {k: v["stringValue"] for k, v in params.items()})
        triton.run()
        with Segmenter.open(f"grpc://{HOST}:{grpc}/{config.name}") as remote:
            assert remote.backend.name == "triton" and "pre/post-processing here" in remote.reason
            assert remote.classes == local.classes and remote.resolution == local.resolution
            for frame in photos(real_images_dir)[:3]:
                assert np.array_equal(remote.predict(frame), local.predict(frame))
            mask, probs = remote.predict(frame, probabilities=True)  # logits come back here
            want_mask, want_probs = local.predict(frame, probabilities=True)
            assert np.array_equal(mask, want_mask) and np.allclose(probs, want_probs, atol=1e-5)
    finally:
        triton.stop()
        shutil.rmtree(workspace, ignore_errors=True)


# -- readiness while the model loads -------------------------------------------------------
# Triton's Python backend starts each model's stub with `bash -c "exec triton_python_backend_stub
# ..."` (python_backend src/stub_launcher.cc), and a non-interactive bash first sources
# $BASH_ENV. This script makes that start, and so the model's load inside the real
# tritonserver, take LOAD_DELAY_S longer, and marks when it began and when the wait ended.
SLOW_STUB = """case "$BASH_EXECUTION_STRING" in
  *triton_python_backend_stub*)
    touch "$CET_LOAD_MARKS/loading"; sleep "$CET_LOAD_DELAY_S"; touch "$CET_LOAD_MARKS/slept";;
esac
"""
LOAD_DELAY_S = 5


class SlowLoad:
    def __init__(self, folder):
        self.marks = Path(folder) / "marks"
        self.marks.mkdir()
        hook = Path(folder) / "slow_stub.sh"
        hook.write_text(SLOW_STUB)
        self.env = {
            "BASH_ENV": str(hook),
            "CET_LOAD_MARKS": str(self.marks),
            "CET_LOAD_DELAY_S": str(LOAD_DELAY_S),
        }

    def loading(self):
        return (self.marks / "loading").exists()

    def slept(self):
        return (self.marks / "slept").exists()

    def wait_loading(self, proc_alive, timeout=120):
        deadline = time.monotonic() + timeout
        while not self.loading():
            assert proc_alive(), "the server ended before it loaded its model"
            assert time.monotonic() < deadline, "the model's load never started"
            time.sleep(0.02)


@pytest.fixture
def slow_load():
    folder = tempfile.mkdtemp(prefix="cet-")  # short: PyTriton's sockets live under it
    try:
        yield SlowLoad(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def http_status(port, path):
    """The HTTP status of GET ``path``, or the connection error's name (no listener yet)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=2) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(getattr(exc, "reason", exc)).__name__


def test_ready_only_once_the_model_answers(runtime_content_onnx, local, slow_load):
    """`serve`'s readiness probe, asked every few ms from the start: while the model loads
    (slowed on purpose) it is not ready; the first 200 comes when a request succeeds."""
    import tritonclient.grpc as g

    srv = Server(runtime_content_onnx, env=slow_load.env)
    frame = np.full((40, 60, 3), 90, np.uint8)
    try:
        probes = []  # (during the slowed load, /v2/health/ready, /v2/models/cifrenet/ready)
        deadline = time.monotonic() + 180
        while True:
            assert srv.proc.poll() is None, srv.log()[-3000:]
            assert time.monotonic() < deadline, (probes[-5:], srv.log()[-3000:])
            loading = slow_load.loading()
            health = http_status(srv.http, "/v2/health/ready")
            model = http_status(srv.http, "/v2/models/cifrenet/ready")
            probes.append((loading and not slow_load.slept(), health, model))
            if health == 200:
                break
            time.sleep(0.02)
        # ready: the model answers at once, and did not before
        client = g.InferenceServerClient(f"{HOST}:{srv.grpc}")
        x = g.InferInput("frames", [1, *frame.shape], "UINT8")
        x.set_data_from_numpy(frame[None])
        result = client.infer(
            "cifrenet", [x], outputs=[g.InferRequestedOutput("mask")], client_timeout=30
        )
        assert np.array_equal(result.as_numpy("mask")[0], local.predict(frame))
        assert probes[-1][2] == 200, probes[-5:]  # the server's ready means the model's
        during = [p for p in probes if p[0]]
        assert len(during) >= 10, probes  # asked all through the slowed load ...
        assert all(p[1] != 200 and p[2] != 200 for p in probes[:-1]), probes  # ... never ready
        with Segmenter.open(srv.grpc_url) as remote:
            assert np.array_equal(remote.predict(frame), local.predict(frame))
        assert srv.stop(signal.SIGTERM) == 0, srv.log()[-3000:]
    finally:
        srv.kill()
        srv.cleanup()


def test_open_waits_for_a_loading_model_then_says_loading(
    runtime_content_onnx, local, real_images_dir, slow_load, monkeypatch
):
    """A Triton that loads the model over its repository API once it is up (PyTriton's
    default, NVIDIA's container in explicit mode): while it loads, a short `Segmenter.open`
    waits out its timeout and says "loading"; a longer one waits and gets the model."""
    from pytriton import model_config as config_mod

    from cifrenet_edge.serve.server import (
        ServeOptions,
        ServeSummary,
        _TritonThread,
        bind_frames_model,
    )

    # PyTriton copies os.environ for tritonserver: the slowed load reaches it this way
    triton, http, grpc, workspace = _loopback_pytriton(monkeypatch, slow_load.env)
    keeper = _TritonThread(triton)
    try:
        with Segmenter.open(runtime_content_onnx) as seg:
            bind_frames_model(
                triton, config_mod, seg, ServeOptions(), ServeSummary(), threading.Lock()
            )
            keeper.start()
            slow_load.wait_loading(lambda: keeper.failure is None and keeper.is_alive())
            t0 = time.monotonic()
            with pytest.raises(ModelLoadingError) as info:
                Segmenter.open(f"http://{HOST}:{http}/cifrenet", timeout=2)
            took = time.monotonic() - t0
            assert not slow_load.slept(), "the load ended before the check: it proves nothing"
            message = str(info.value)
            assert "still loading model 'cifrenet' after 2 s" in message, message
            assert "does not serve" not in message and "\n" not in message
            assert 2 <= took < 2 + 10, took  # waited its timeout, then gave up
            with pytest.raises(ModelFileError, match="does not serve model 'nope'"):
                Segmenter.open(f"grpc://{HOST}:{grpc}/nope", timeout=2)  # a typo: at once
            with Segmenter.open(f"grpc://{HOST}:{grpc}/cifrenet", timeout=120) as remote:
                assert slow_load.slept()
                frame = photos(real_images_dir)[0]
                assert np.array_equal(remote.predict(frame), local.predict(frame))
    finally:
        keeper.release.set()
        keeper.join(60)
        shutil.rmtree(workspace, ignore_errors=True)


# -- no server needed ---------------------------------------------------------------------


def test_url_parsing_and_options_are_checked():
    from cifrenet_edge.runtime.remote import parse_url
    from cifrenet_edge.serve.server import ServeOptions

    a = parse_url("grpc://gpu-box:9001/seg_v2")
    assert (a.scheme, a.host, a.port, a.model, a.url) == (
        "grpc",
        "gpu-box",
        9001,
        "seg_v2",
        "grpc://gpu-box:9001/seg_v2",
    )
    assert parse_url("http://10.0.0.5").port == 8000  # Triton's default ports and name
    assert parse_url("grpc://[::1]/m").hostport == "[::1]:8001"
    for bad in ("grpc:/host/x", "ftp://host/x", "grpc://host:99999/x", "grpc://host/a b"):
        with pytest.raises(ConfigError):
            parse_url(bad)
    for kwargs, words in (
        ({"name": "a/b"}, "--name"),
        ({"grpc_port": 8000}, "must differ"),
        ({"http_port": 0}, "--http-port 0"),
        ({"max_batch": 0}, "--max-batch"),
        ({"instances": 0}, "--instances"),
        ({"overlay_alpha": 1.5}, "--overlay-alpha"),
    ):
        with pytest.raises(ConfigError, match=words):
            ServeOptions(**kwargs).check()
    with pytest.raises(ConfigError, match="timeout= applies to Triton URLs"):
        Segmenter.open("model.onnx", timeout=3)


def test_port_check_names_the_taken_port():
    from cifrenet_edge.serve.server import check_ports

    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} \\(--metrics-port\\)"):
            check_ports(HOST, {"--http-port": free_ports(1)[0], "--metrics-port": port})


def test_python_backend_gets_this_interpreters_libpython():
    import sysconfig

    from cifrenet_edge.serve.server import python_backend_libdir

    libdir, warning = python_backend_libdir()
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        assert libdir == sysconfig.get_config_var("LIBDIR") and not warning
        assert (Path(libdir) / sysconfig.get_config_var("LDLIBRARY")).is_file()
    else:
        assert libdir is None and "--enable-shared" in warning


def test_server_errors_come_back_as_toolkit_errors():
    from cifrenet_edge.runtime.remote import server_error

    text = (
        "[StatusCode.INTERNAL] Failed to process the request(s) for model 'cifrenet_0_0', "
        "message: TritonModelException: Model execute error: Traceback (most recent call "
        'last):\n  File "x.py", line 3, in f\ncifrenet_edge.errors.FrameError: frames are '
        "5000x10, larger than this server's limit\n\nAt:\n  model.py(501): execute\n"
    )
    err = server_error(text)
    assert isinstance(err, FrameError) and str(err).startswith("frames are 5000x10")
    assert server_error("[StatusCode.UNAVAILABLE] failed to connect") is None


def test_remote_client_imports_without_torch():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'onnx', 'pytriton'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cifrenet_edge.runtime import Segmenter\n"
        "from cifrenet_edge.errors import BackendUnavailableError\n"
        "try:\n"
        "    Segmenter.open('grpc://127.0.0.1:1/cifrenet', timeout=2)\n"
        "except BackendUnavailableError as exc:\n"
        "    print('unreachable' in str(exc))\n"
        "print(sorted(m for m in ('torch', 'onnx', 'pytriton') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(ROOT)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "[]"], proc.stdout
