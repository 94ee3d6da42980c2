"""The TensorRT backend's runtime details on the simulated GPU of ``trt_sim``.

Dynamic-batch engines batch as far as their optimisation profile allows; plugins are
registered before an engine is deserialised; TensorRT's ``False`` from ``set_tensor_address``
is an error; a failed CUDA-graph capture ends the capture, frees what it made and clears the
CUDA error it left (trtexec's ``endCaptureOnError``), on every path.
"""

import gc
from typing import Any

import numpy as np
import pytest
from support.trt_sim import SimGpu, engine_bytes, make_onnx, parse_engine

from cifrenet_edge.errors import BackendUnavailableError
from cifrenet_edge.manifest import read_manifest
from cifrenet_edge.runtime.segmenter import Segmenter

CUDA_PYTHON = {"8.2.1": "11.8.7", "8.6.1": "12.6.2.post1", "10.16": "13.4.4", "11.1": "13.4.4"}
ZERO = dict.fromkeys(
    ("device", "context_memory", "pinned", "streams", "events", "graphs", "graph_execs"), 0
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("trt_runtime")
    return {
        "fixed": make_onnx(d / "fixed.onnx", (1, 3, 64, 128)),
        "dynamic": make_onnx(d / "dynamic.onnx", dynamic=True),
    }


def _closed_cleanly(g: SimGpu) -> None:
    gc.collect()
    assert g.sim.live() == ZERO
    assert g.sim.faults == []


def _frames(n: int) -> list:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 255, (48 + 8 * i, 96, 3), dtype=np.uint8) for i in range(n)]


# --------------------------------------------------------------------------- dynamic batch
@pytest.mark.parametrize("version", ["8.2.1", "8.6.1", "10.16"])
def test_dynamic_batch_engine_batches_up_to_its_profile(version, tiny, tmp_path):
    """Profile batch 1..4: six frames are two enqueues (4 + 2), as ONNX Runtime batches."""
    g = SimGpu(version, CUDA_PYTHON[version])
    dyn = {"min": [64, 32], "opt": [128, 64], "max": [128, 64], "batch": [1, 2, 4]}
    eng = g.write_engine(tmp_path, tiny["dynamic"], (1, 3, 64, 128), dynamic=dyn)
    frames = _frames(6)
    with g.installed():
        b = g.open(eng)
        assert (b.max_batch, b.dynamic_batch) == (4, True)
        assert b.describe()["max_batch"] == 4
        seg = Segmenter(b, read_manifest(eng), (128, 64), str(eng), "test")
        before = len(g.world.enqueues)
        masks = seg.predict_batch(frames)
        assert len(g.world.enqueues) - before == 2
        singles = [seg.predict(f) for f in frames]  # batch 1: the same class maps
        assert all(np.array_equal(a, s) for a, s in zip(masks, singles))
        seg.close()
    assert g.rec.missing == []
    _closed_cleanly(g)


def test_dynamic_engine_with_a_fixed_batch_profile_stays_one_frame(tiny, tmp_path):
    g = SimGpu("10.16", "13.4.4")
    dyn = {"min": [64, 32], "opt": [128, 64], "max": [128, 64], "batch": [1, 1, 1]}
    eng = g.write_engine(tmp_path, tiny["dynamic"], (1, 3, 64, 128), dynamic=dyn)
    with g.installed():
        b = g.open(eng)
        assert b.max_batch == 1
        b.close()
    _closed_cleanly(g)


# --------------------------------------------------------------------------- plugins
@pytest.mark.parametrize("version", ["8.2.1", "8.6.1", "10.16", "11.1"])
def test_plugins_are_registered_before_the_engine_is_deserialised(version, tiny, tmp_path):
    g = SimGpu(version, CUDA_PYTHON[version])
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    header = parse_engine(eng.read_bytes())
    header["plugins"] = ["ScatterND"]  # a layer from libnvinfer_plugin
    eng.write_bytes(engine_bytes(header))
    with g.installed():
        b = g.open(eng)
        b.infer(np.zeros((1, 3, 64, 128), np.float32))
        b.close()
    names = g.rec.names()
    assert "tensorrt.init_libnvinfer_plugins" in names
    assert names.index("tensorrt.init_libnvinfer_plugins") < names.index(
        "Runtime.deserialize_cuda_engine"
    )
    _closed_cleanly(g)


# --------------------------------------------------------------------------- set_tensor_address
def test_a_refused_tensor_address_is_one_clear_error(tiny, tmp_path):
    g = SimGpu("10.16", "13.4.4")
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    g.world.hooks["IExecutionContext.set_tensor_address"] = lambda ctx, name, ptr: False
    with g.installed():
        b = g.open(eng)
        with pytest.raises(BackendUnavailableError, match="set_tensor_address") as err:
            b.infer(np.zeros((1, 3, 64, 128), np.float32))
        assert "\n" not in str(err.value)
        del err  # its traceback holds the half-made slot's frames (and its context)
        b.close()
    _closed_cleanly(g)


# --------------------------------------------------------------------------- failed capture
def _failing_capture(g: SimGpu, how: str) -> None:
    """execute_async_v3 under capture: TensorRT allocating (invalidates it) or raising."""
    sim = g.sim

    def hook(ctx: Any, handle: int) -> Any:
        if sim.stream(handle).capture is None:
            return None  # the plain enqueue runs as usual
        if how == "raises":
            raise RuntimeError("simulated failure inside the capture")
        sim.cudaMalloc(64)  # not allowed while capturing: cudaErrorStreamCaptureUnsupported
        return False

    g.world.hooks["IExecutionContext.execute_async_v3"] = hook


@pytest.mark.parametrize("how", ["returns_false", "raises"])
@pytest.mark.parametrize("version", ["8.6.1", "10.16"])
def test_failed_capture_frees_everything_and_clears_the_cuda_error(version, how, tiny, tmp_path):
    g = SimGpu(version, CUDA_PYTHON[version])
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    _failing_capture(g, how)
    with g.installed():
        b = g.open(eng, cuda_graph=True)
        with pytest.raises((BackendUnavailableError, RuntimeError)):
            b.infer(np.zeros((1, 3, 64, 128), np.float32))
        err = g.sim.cudaGetLastError()[0]  # this thread's: what a later check would report
        assert err.name == "cudaSuccess"
        assert g.sim.live()["graphs"] == 0 and g.sim.live()["graph_execs"] == 0
        assert all(s.capture is None for s in g.sim._streams.values())  # capture ended
        del g.world.hooks["IExecutionContext.execute_async_v3"]
        b.infer(np.zeros((1, 3, 64, 128), np.float32))  # the next call captures and runs
        b.close()
    _closed_cleanly(g)


@pytest.mark.parametrize("version", ["8.6.1", "10.16"])
def test_standin_first_enqueue_under_capture_fails_as_tensorrt_does(version, tiny, tmp_path):
    """The stand-in's own rule, not the backend's: a context's first enqueue (and the first
    after a shape change) allocates, which a capture does not permit; so a backend that
    captured without trtexec's plain enqueue first would fail here as on a device."""
    g = SimGpu(version, CUDA_PYTHON[version])
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    with g.installed():
        b = g.open(eng)
        slot = b._slot()
        cuda, ctx = b.cuda, slot.context
        with b._using(slot):
            h = cuda.stream_handle(slot.stream)
            cuda.graph_capture_begin(slot.stream)
            assert ctx.execute_async_v3(h) is False  # no plain enqueue yet on this context
            with pytest.raises(BackendUnavailableError, match="cudaStreamEndCapture"):
                cuda.graph_capture_end(slot.stream)  # the capture was invalidated
            cuda.clear_last_error()
            assert ctx.execute_async_v3(h) is True  # trtexec's plain enqueue, then a sync
            cuda.stream_sync(slot.stream)
            cuda.graph_capture_begin(slot.stream)
            assert ctx.execute_async_v3(h) is True
            cuda.graph_destroy(cuda.graph_capture_end(slot.stream))
        b.close()
    del slot, ctx  # the context's memory goes with the last reference
    _closed_cleanly(g)


# ------------------------------------------------------------------ buffers after a failure
@pytest.mark.parametrize("version", ["8.6.1", "10.16"])
def test_a_refused_enqueue_then_a_larger_shape_frees_no_buffer_in_use(version, tiny, tmp_path):
    """TensorRT refuses one enqueue (False: its log says why); the input copy queued before it
    is still pending when the next call, at a larger shape, reallocates the buffers: freeing
    the pinned memory under it is a use-after-free (``cudaFreeHost`` does not wait)."""
    g = SimGpu(version, CUDA_PYTHON[version])
    dyn = {"min": [64, 32], "opt": [96, 48], "max": [128, 64], "batch": [1, 1, 1]}
    eng = g.write_engine(tmp_path, tiny["dynamic"], (1, 3, 48, 96), dynamic=dyn)
    refuse = {"left": 1}

    def once(ctx: Any, handle: int) -> Any:
        if refuse["left"]:
            refuse["left"] -= 1
            return False
        return None

    with g.installed():
        b = g.open(eng, input_shape=(1, 3, 48, 96))
        g.world.hooks["IExecutionContext.execute_async_v3"] = once
        with pytest.raises(BackendUnavailableError, match="failed to enqueue"):
            b.infer(np.zeros((1, 3, 48, 96), np.float32))
        x = np.ones((1, 3, 64, 128), np.float32)
        out = b.infer(x)  # larger: new buffers
        assert np.array_equal(out, g.executor_for({"onnx": str(tiny["dynamic"])}).compute(x))
        b.close()
    assert g.sim.faults == []
    _closed_cleanly(g)
