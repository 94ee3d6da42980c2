"""The CUDA wrapper (``trt/cuda.py``) on the simulated cuda-python of every release.

``trt_sim.SimCudart`` has each runtime function with the arity and return tuple of the real
wheels (11.8.7, 12.6.2, 13.4.4), so the real ``CudaPython`` runs on it as on a GPU machine.
The first tests check the simulator itself (a stand-in is only as good as its fidelity); the
rest check the wrapper: CUDA graphs on every release, the driver/cuda-python version
mismatch, non-blocking streams.
"""

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from support.cuda_sim import CUDA_PYTHON_VERSIONS, SimCudart, load_cuda_api

from cifrenet_edge.errors import BackendUnavailableError
from cifrenet_edge.trt import cuda as cuda_mod
from cifrenet_edge.trt.cuda import CudaPython


def _cuda(version: str = "13.4.4", **kw):
    sim = SimCudart(version, **kw)
    return sim, CudaPython(0, cudart=sim)


# --------------------------------------------------------------------------- the simulator
def test_signatures_differ_only_where_the_wheels_differ():
    """The data behind the simulator: cudaGraphInstantiate is the one call that changed."""
    api = load_cuda_api()["versions"]
    assert set(api) == set(CUDA_PYTHON_VERSIONS)
    differ = {
        name
        for name in api["13.4.4"]["functions"]
        if len({str(api[v]["functions"].get(name)["params"]) for v in api}) > 1
    }
    assert differ == {"cudaGraphInstantiate"}
    assert api["11.8.7"]["functions"]["cudaGraphInstantiate"]["params"] == [
        "graph",
        "pLogBuffer",
        "bufferSize",
    ]
    sim = SimCudart("11.8.7")
    with pytest.raises(TypeError, match="takes 3 positional arguments"):
        sim.cudaGraphInstantiate(1, 0)  # the call 12.x/13.x accept


def test_sim_copies_in_stream_order_and_times_with_events():
    sim, cuda = _cuda()
    s = cuda.stream_create()
    src = cuda.pinned_empty((256,), np.float32)
    dst = cuda.pinned_empty((256,), np.float32)
    src[:] = np.arange(256)
    d = cuda.malloc(src.nbytes)
    e0, e1 = cuda.event_create(), cuda.event_create()
    cuda.event_record(e0, s)
    cuda.htod_async(d, src, s)
    cuda.dtoh_async(dst, d, s)
    cuda.event_record(e1, s)
    assert not dst.any()  # queued, not run: a missing sync would read zeros
    with pytest.raises(BackendUnavailableError, match="cudaErrorNotReady"):
        cuda._call(sim.cudaEventElapsedTime(e0, e1), "cudaEventElapsedTime")
    cuda.stream_sync(s)
    assert np.array_equal(dst, src)
    assert cuda.event_elapsed_ms(e0, e1) > 0.0
    for ev in (e0, e1):
        cuda.event_destroy(ev)
    cuda.free(d)
    cuda.free_pinned(src)
    cuda.free_pinned(dst)
    cuda.stream_destroy(s)
    assert set(sim.live().values()) == {0} and sim.faults == []


def test_sim_faults_like_a_gpu():
    """Out of bounds, after free, device pointer as host: errors, never silent success."""
    sim, cuda = _cuda()
    s = cuda.stream_create()
    small = cuda.malloc(64)
    host = cuda.pinned_empty((32,), np.float32)  # 128 bytes
    with pytest.raises(BackendUnavailableError, match="cudaErrorInvalidValue"):
        cuda.htod_async(small, host, s)  # 128 bytes into 64
    with pytest.raises(BackendUnavailableError, match="cudaErrorInvalidValue"):
        cuda._call(sim.cudaMemcpyAsync(small, small, 16, 1, s), "copy")  # device as host side
    kernel_read = {}

    def kernel():
        kernel_read["bytes"] = sim.read(small, 65)  # one byte past the end

    sim.enqueue_kernel(int(s), "overrun", kernel, [(small, 65)], 0.1)
    with pytest.raises(BackendUnavailableError, match="cudaErrorIllegalAddress"):
        cuda.stream_sync(s)
    assert "past the end" in sim.faults[-1] and "bytes" not in kernel_read
    with pytest.raises(BackendUnavailableError, match="cudaErrorIllegalAddress"):
        cuda.malloc(16)  # sticky, as on a real context


def test_sim_free_with_queued_work_is_a_fault():
    sim, cuda = _cuda()
    s = cuda.stream_create()
    d = cuda.malloc(64)
    host = cuda.pinned_empty((16,), np.float32)
    cuda.dtoh_async(host, d, s)
    cuda.free_pinned(host)
    assert any("cudaFreeHost" in f and "DtoH" in f for f in sim.faults)


def test_sim_capture_rules():
    """The rules real CUDA enforces during stream capture, each invalidating the capture."""
    sim, cuda = _cuda()
    s = cuda.stream_create()
    cuda.graph_capture_begin(s)
    with pytest.raises(BackendUnavailableError, match="cudaErrorStreamCaptureUnsupported"):
        cuda.stream_sync(s)
    with pytest.raises(BackendUnavailableError, match="cudaErrorStreamCaptureInvalidated"):
        cuda.graph_capture_end(s)
    cuda.graph_capture_begin(s)
    with pytest.raises(BackendUnavailableError, match="cudaErrorStreamCaptureUnsupported"):
        cuda.malloc(16)  # from the capturing thread
    with pytest.raises(BackendUnavailableError, match="Invalidated"):
        cuda.graph_capture_end(s)
    err = sim.cudaStreamBeginCapture(0, 1)[0]
    assert err.name == "cudaErrorStreamCaptureUnsupported"  # the legacy stream
    assert sim.live()["graphs"] == 0


# --------------------------------------------------------------------------- finding 11
@pytest.mark.parametrize("version", CUDA_PYTHON_VERSIONS)
def test_cuda_graph_capture_and_replay_on_every_cuda_python(version):
    """cudaGraphInstantiate is (graph, logBuffer, size) in 11.x, (graph, flags) after."""
    sim, cuda = _cuda(version)
    s = cuda.stream_create()
    src = cuda.pinned_empty((64,), np.float32)
    dst = cuda.pinned_empty((64,), np.float32)
    d = cuda.malloc(src.nbytes)
    src[:] = 1.0
    cuda.htod_async(d, src, s)  # plain run first, as the backend does
    cuda.dtoh_async(dst, d, s)
    cuda.stream_sync(s)
    cuda.graph_capture_begin(s)
    cuda.htod_async(d, src, s)
    cuda.dtoh_async(dst, d, s)
    graph = cuda.graph_capture_end(s)
    assert sim.live()["graphs"] == 0 and sim.live()["graph_execs"] == 1
    for value in (2.0, 3.0):
        src[:] = value  # a replay reads the host buffer as it is at launch
        cuda.graph_launch(graph, s)
        cuda.stream_sync(s)
        assert np.all(dst == value)
    cuda.graph_destroy(graph)
    assert sim.live()["graph_execs"] == 0 and sim.faults == []


def test_failed_instantiation_does_not_leak_the_graph():
    sim, cuda = _cuda()
    s = cuda.stream_create()
    sim.fail["cudaGraphInstantiate"] = sim.fail["cudaGraphInstantiateWithFlags"] = 2
    cuda.graph_capture_begin(s)
    with pytest.raises(BackendUnavailableError, match="cudaGraphInstantiate"):
        cuda.graph_capture_end(s)
    assert sim.live()["graphs"] == 0 and sim.live()["graph_execs"] == 0


# --------------------------------------------------------------------------- finding 10
def test_cuda_python_newer_than_the_driver_names_the_fix():
    """cuda-python 13 on a CUDA 12.6 driver (JetPack 6): error 35 is not "no driver"."""
    with pytest.raises(cuda_mod.CudaVersionMismatchError) as err:
        _cuda("13.4.4", driver_version=12060)
    msg = str(err.value)
    assert "CUDA 13.4" in msg and "CUDA 12.6" in msg and "R580" in msg
    assert "pip install 'cuda-python>=12.6,<13'" in msg and "\n" not in msg
    assert "no NVIDIA driver" not in msg
    with pytest.raises(cuda_mod.CudaVersionMismatchError, match=re.escape("cuda-python>=11.8,<12")):
        _cuda("12.6.2.post1", driver_version=11040)  # JetPack 5's driver


def test_no_driver_still_says_no_driver():
    with pytest.raises(BackendUnavailableError, match="no NVIDIA driver or GPU here") as err:
        _cuda("13.4.4", driver_version=0)
    assert not isinstance(err.value, cuda_mod.CudaVersionMismatchError)


def test_open_cuda_falls_back_to_pycuda_on_a_version_mismatch(monkeypatch):
    sim = SimCudart("13.4.4", driver_version=12060)
    monkeypatch.setattr(cuda_mod, "CudaPython", lambda dev: CudaPython(dev, cudart=sim))
    monkeypatch.setattr(cuda_mod, "PyCuda", lambda dev: "pycuda wrapper")
    assert cuda_mod.open_cuda(0) == "pycuda wrapper"

    def no_pycuda(dev):
        raise ImportError("No module named 'pycuda'")

    monkeypatch.setattr(cuda_mod, "PyCuda", no_pycuda)
    with pytest.raises(cuda_mod.CudaVersionMismatchError, match=re.escape("cuda-python>=12.6,<13")):
        cuda_mod.open_cuda(0)  # the fix, not "no CUDA Python library"


def test_extras_pin_cuda_python_by_cuda_major():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    extras = {  # tomllib is 3.11+; these lines are one-line TOML arrays of strings
        m.group(1): json.loads(m.group(2))
        for m in re.finditer(r"^(cuda\d*) = (\[.*\])$", text, re.MULTILINE)
    }
    assert extras["cuda"] == ["cuda-python>=12.6,<13"]  # runs on every CUDA 12 and 13 driver
    assert extras["cuda12"] == ["cuda-python>=12.6,<13"]
    assert extras["cuda13"] == ["cuda-python>=13,<14"]
    assert extras["cuda11"] == ["cuda-python>=11.8,<12"]


# --------------------------------------------------------------------------- finding 18: streams
def test_streams_are_non_blocking_so_other_libraries_do_not_break_a_capture():
    """Another library's synchronous copy (legacy stream) while we capture a graph."""
    sim, cuda = _cuda()
    s = cuda.stream_create()
    d = cuda.malloc(64)
    other = np.ones(16, np.float32)
    cuda.graph_capture_begin(s)
    result = {}

    def other_library():  # e.g. PyTorch or CuPy on stream 0, from a ROS callback thread
        kind = sim.cudaMemcpyKind.cudaMemcpyHostToDevice
        result["err"] = sim.cudaMemcpy(d, other.ctypes.data, other.nbytes, kind)[0]

    t = threading.Thread(target=other_library)
    t.start()
    t.join()
    assert result["err"].name == "cudaSuccess"
    graph = cuda.graph_capture_end(s)  # a blocking stream's capture would be invalidated
    cuda.graph_destroy(graph)


# --------------------------------------------------------------------------- no driver at all
# What the real wheels do on a machine without libcuda (run here, no GPU): 11.8.7 and
# 12.6.2.post1 raise RuntimeError from the first call that reaches the driver, 13.4.4 returns
# cudaErrorInsufficientDriver. cudaRuntimeGetVersion answers in all three.
_NO_DRIVER_SEQUENCE = ("cudaRuntimeGetVersion", "cudaGetDeviceCount", "cudaGetDeviceCount")
_WHEELS_WITHOUT_DRIVER = {
    "11.8.7": [
        "ok 11080",
        "RuntimeError: Failed to dlopen libcuda.so.1",
        'RuntimeError: Function "cuInit" not found',
    ],
    "12.6.2.post1": [
        "ok 12060",
        "RuntimeError: Failed to dlopen libcuda.so.1",
        'RuntimeError: Function "cuInit" not found',
    ],
    "13.4.4": ["ok 13040", "cudaErrorInsufficientDriver", "cudaErrorInsufficientDriver"],
}

_PROBE = """
import sys
try:
    from cuda.bindings import runtime as rt
except ImportError:
    from cuda import cudart as rt
for name in sys.argv[1:]:
    try:
        out = getattr(rt, name)()
        print(out[0].name if int(out[0]) else "ok %s" % out[1])
    except RuntimeError as exc:
        print("RuntimeError: %s" % exc)
"""


def _outcomes(rt, names):
    out = []
    for name in names:
        try:
            res = getattr(rt, name)()
            out.append(res[0].name if int(res[0]) else f"ok {res[1]}")
        except RuntimeError as exc:
            out.append(f"RuntimeError: {exc}")
    return out


@pytest.mark.parametrize("version", CUDA_PYTHON_VERSIONS)
def test_sim_without_libcuda_answers_as_the_wheel_does(version):
    sim = SimCudart(version, driver_version=0)
    assert _outcomes(sim, _NO_DRIVER_SEQUENCE) == _WHEELS_WITHOUT_DRIVER[version]


def test_sim_without_libcuda_matches_the_installed_cuda_python():
    """The same calls on the real cuda-python installed here, in a fresh process."""
    import subprocess
    import sys
    from importlib import metadata

    try:
        installed = metadata.version("cuda-python")
    except metadata.PackageNotFoundError:
        pytest.skip("cuda-python is not installed")
    p = subprocess.run(
        [sys.executable, "-c", _PROBE, *_NO_DRIVER_SEQUENCE], capture_output=True, text=True
    )
    real = p.stdout.strip().splitlines()
    if p.returncode != 0 or not real or real[1] == "ok":
        pytest.skip(f"no answer without a driver here (GPU present?): {p.stderr[-200:]}")
    if real[1].startswith("ok "):
        pytest.skip("a CUDA device is present")
    major = installed.split(".")[0]
    (version,) = [v for v in CUDA_PYTHON_VERSIONS if v.split(".")[0] == major]
    sim = SimCudart(version, driver_version=0)
    assert _outcomes(sim, _NO_DRIVER_SEQUENCE)[1:] == real[1:]


@pytest.mark.parametrize("version", CUDA_PYTHON_VERSIONS)
def test_no_driver_is_one_line_on_every_cuda_python(version):
    with pytest.raises(cuda_mod.NoCudaDeviceError) as err:
        _cuda(version, driver_version=0)
    msg = str(err.value)
    assert "no NVIDIA driver or GPU here" in msg and "cudaGetDeviceCount" in msg
    assert "\n" not in msg
    if not version.startswith("13"):
        assert "Failed to dlopen libcuda.so.1" in msg  # the library's own words, kept


@pytest.mark.parametrize("version", CUDA_PYTHON_VERSIONS)
def test_open_cuda_tries_pycuda_when_cuda_python_finds_no_driver(version, monkeypatch):
    monkeypatch.setattr(cuda_mod, "import_cudart", lambda: SimCudart(version, driver_version=0))
    monkeypatch.setattr(cuda_mod, "PyCuda", lambda dev: "pycuda wrapper")
    assert cuda_mod.open_cuda(0) == "pycuda wrapper"

    def no_pycuda(dev):
        raise ImportError("No module named 'pycuda'")

    monkeypatch.setattr(cuda_mod, "PyCuda", no_pycuda)
    with pytest.raises(cuda_mod.NoCudaDeviceError, match="no NVIDIA driver or GPU here"):
        cuda_mod.open_cuda(0)  # the cause, not "no CUDA Python library"
    info, why = cuda_mod.probe_cuda()
    assert info is None and "no NVIDIA driver" in why and "\n" not in why
