"""``trt.cuda.PyCuda`` (Xavier / JetPack 5, Python 3.8) on a stand-in of pycuda's real API.

``pycuda_sim`` follows inducer/pycuda's ``wrap_cudadrv.cpp`` and ``cuda.hpp``: a per-thread
context stack, objects that need a current context when made, ``Stream(flags=0)`` blocking by
default, pycuda's own exception classes; over the simulated CUDA of ``cuda_sim`` (memory,
streams, events, faults). The TensorRT backend runs on it from robot callback threads.
"""

import gc
import threading

import numpy as np
import pytest
from support.cuda_sim import SimCudart
from support.pycuda_sim import import_pycuda_driver
from support.trt_sim import OrtCompute, SimGpu, make_onnx

from cifrenet_edge.errors import BackendUnavailableError
from cifrenet_edge.trt import cuda as cuda_mod
from cifrenet_edge.trt.cuda import CU_STREAM_NON_BLOCKING, PyCuda

ZERO = dict.fromkeys(
    ("device", "context_memory", "pinned", "streams", "events", "graphs", "graph_execs"), 0
)


def _pycuda(sim=None):
    sim = sim or SimCudart("11.8.7", compute_capability=(7, 2), name="Xavier (sim)")
    drv = import_pycuda_driver(sim)
    return sim, drv, PyCuda(0, driver=drv)


def test_stand_in_refuses_what_pycuda_refuses():
    """Without a pushed context: pycuda's own LogicError; popping an empty stack too."""
    _, drv, _ = _pycuda()
    with pytest.raises(drv.LogicError, match="no currently active context"):
        drv.mem_alloc(64)
    with pytest.raises(drv.LogicError, match="cannot pop non-current context"):
        drv.Context.pop()
    fresh = import_pycuda_driver(SimCudart("11.8.7"))
    with pytest.raises(fresh.LogicError, match="initialization error"):
        fresh.Device.count()  # init() not called
    with pytest.raises(ImportError, match=r"libcuda\.so\.1"):
        import_pycuda_driver(SimCudart("11.8.7", driver_version=0))


def test_round_trip_from_a_thread_without_a_context():
    """A ROS callback thread: activate() pushes the primary context and pops it again."""
    sim, drv, cuda = _pycuda()
    out = {}

    def callback():
        with cuda.activate():
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
            cuda.stream_sync(s)
            out["same"] = bool(np.array_equal(dst, src))
            out["ms"] = cuda.event_elapsed_ms(e0, e1)
            out["flags"] = sim.stream(cuda.stream_handle(s)).flags
            cuda.free(d)
            cuda.free_pinned(src)
            cuda.free_pinned(dst)
            for ev in (e0, e1):
                cuda.event_destroy(ev)
            cuda.stream_destroy(s)
            del s, e0, e1
        out["depth"] = drv.stack_depth()

    t = threading.Thread(target=callback)
    t.start()
    t.join()
    gc.collect()
    assert out["same"] and out["ms"] > 0 and out["depth"] == 0
    assert out["flags"] == CU_STREAM_NON_BLOCKING  # drv.Stream() would be 0: blocking
    assert sim.live() == ZERO and sim.faults == []


def test_the_non_blocking_flag_is_the_driver_apis():
    """pycuda has no stream-flag constant; the value is cuda.h's CU_STREAM_NON_BLOCKING."""
    try:
        from cuda.bindings import driver
    except ImportError:
        pytest.skip("cuda-python (cuda.bindings.driver) is not installed")
    assert int(driver.CUstream_flags.CU_STREAM_NON_BLOCKING) == CU_STREAM_NON_BLOCKING


def test_no_gpu_is_one_line_and_open_cuda_says_so(monkeypatch):
    sim = SimCudart("11.8.7", device_count=0)
    with pytest.raises(cuda_mod.NoCudaDeviceError, match="no CUDA-capable device") as err:
        PyCuda(0, driver=import_pycuda_driver(sim))
    assert "\n" not in str(err.value)
    monkeypatch.setattr(
        cuda_mod, "PyCuda", lambda dev: PyCuda(dev, driver=import_pycuda_driver(sim))
    )
    with pytest.raises(BackendUnavailableError, match="no NVIDIA driver or GPU here"):
        cuda_mod.open_cuda(0, prefer="pycuda")


@pytest.mark.parametrize("version", ["8.2.1", "8.5.2"])
def test_tensorrt_backend_on_pycuda_from_callback_threads(version, tmp_path):
    """JetPack 4.6/5 with pycuda: three callback threads, outputs equal ONNX Runtime's."""
    g = SimGpu(version, "11.8.7")
    onnx = make_onnx(tmp_path / "m.onnx", (1, 3, 64, 128))
    eng = g.write_engine(tmp_path, onnx, (1, 3, 64, 128))
    drv = import_pycuda_driver(g.sim)
    g.cuda = PyCuda(0, driver=drv)
    ref = OrtCompute(str(onnx))
    rng = np.random.default_rng(5)
    xs = {
        k: [rng.normal(size=(1, 3, 64, 128)).astype(np.float32) for _ in range(2)] for k in range(3)
    }
    bad, depths = [], []
    with g.installed():
        b = g.open(eng, max_contexts=2)
        assert b.describe()["cuda_library"] == "pycuda"

        def work(k):
            try:
                for x in xs[k]:
                    np.testing.assert_allclose(b.infer(x), ref(x), rtol=0, atol=1e-5)
            except Exception as exc:
                bad.append(f"{type(exc).__name__}: {exc}")
            depths.append(drv.stack_depth())

        threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pytest.raises(BackendUnavailableError, match="cuda-python"):
            b.benchmark_gpu(iters=1, warmup=0, cuda_graph=True)  # pycuda: no graph capture
        flags = {g.sim.stream(h).flags for _, h in g.world.enqueues}  # the engine's streams
        b.close()
    assert bad == [] and depths == [0, 0, 0]
    assert flags == {CU_STREAM_NON_BLOCKING}
    gc.collect()
    assert g.sim.live() == ZERO and g.sim.faults == []
