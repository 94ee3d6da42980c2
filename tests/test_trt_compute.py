"""The TensorRT backend on a simulated GPU whose engines compute: outputs equal ONNX Runtime's.

``trt_sim`` gives a strict stand-in ``tensorrt`` of each version (names as NVIDIA's bindings)
whose engine runs ONNX Runtime on the engine's own ONNX, reading the bytes at the input
address and writing the output address on the given stream, over a simulated CUDA driven
through the real ``CudaPython`` wrapper. So these tests see what the data does: a wrong
pointer, size, dtype or binding order changes the output or faults, and the planted-bug
tests at the end prove the checks catch each of them.
"""

import gc
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest
from support.trt_sim import OrtCompute, SimFault, SimGpu, make_onnx

from cifrenet_edge.errors import (
    BackendUnavailableError,
    ClosedError,
    ConfigError,
    EngineMismatchError,
)
from cifrenet_edge.manifest import read_manifest
from cifrenet_edge.runtime.backends import tensorrt as trt_backend
from cifrenet_edge.trt import api

VERSIONS = api.SUPPORTED_VERSIONS
# The cuda-python each TensorRT line meets in the field (8.x: JetPack 5 / CUDA 11).
CUDA_PYTHON = {
    "8.2.1": "11.8.7",
    "8.5.2": "11.8.7",
    "8.6.1": "12.6.2.post1",
    "10.3.0": "12.6.2.post1",
    "10.16": "13.4.4",
    "11.1": "13.4.4",
}
ZERO = {
    "device": 0,
    "context_memory": 0,
    "pinned": 0,
    "streams": 0,
    "events": 0,
    "graphs": 0,
    "graph_execs": 0,
}


def _gpu(version: str, **kw: Any) -> SimGpu:
    return SimGpu(version, CUDA_PYTHON[version], **kw)


def _inputs(real_images_dir: Path, wh, meta, n: int = 5) -> List[np.ndarray]:
    from cifrenet_edge.preprocess import preprocess

    files = sorted(Path(real_images_dir).glob("*.jpg"))[:n]
    return [preprocess(cv2.imread(str(f)), wh, meta["mean_bgr"], meta["scale"]) for f in files]


def assert_matches_ort(b: Any, onnx: Path, xs: List[np.ndarray], g: SimGpu) -> None:
    """Every output equals ONNX Runtime's on the same file, and nothing faulted."""
    ref = OrtCompute(str(onnx))
    for x in xs:
        y = b.infer(x)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, ref(x), rtol=0, atol=1e-5)
    assert g.sim.faults == []


def _closed_cleanly(g: SimGpu) -> None:
    gc.collect()  # TensorRT frees an execution context's memory when the object dies
    assert g.sim.live() == ZERO
    assert g.sim.faults == []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("trt_compute")
    return {
        "fixed": make_onnx(d / "fixed.onnx", (1, 3, 64, 128)),
        "dynamic": make_onnx(d / "dynamic.onnx", dynamic=True),
        "half_res": make_onnx(d / "half.onnx", (1, 3, 64, 128), stride=2),
    }


DYNAMIC = {"min": [32, 16], "opt": [128, 64], "max": [256, 128], "batch": [1, 1, 2]}


# --------------------------------------------------------------------------- equal outputs
@pytest.mark.parametrize("version", VERSIONS)
def test_engine_outputs_equal_onnxruntime(version, runtime_content_onnx, real_images_dir, tmp_path):
    """The real CIFReNet export, five photographs, both execution APIs."""
    g = _gpu(version)
    m = read_manifest(runtime_content_onnx)
    eng = g.write_engine(tmp_path, runtime_content_onnx, (1, 3, 64, 128), manifest=m)
    with g.installed():
        b = g.open(eng)
        assert_matches_ort(b, runtime_content_onnx, _inputs(real_images_dir, (128, 64), m), g)
        b.close()
    assert g.rec.missing == [] and g.rec.deprecated == []
    expect = "execute_async_v2" if version == "8.2.1" else "execute_async_v3"
    assert g.rec.called(f"IExecutionContext.{expect}")
    _closed_cleanly(g)


@pytest.mark.parametrize("version", VERSIONS)
def test_dynamic_shapes_equal_onnxruntime(version, tiny, tmp_path):
    g = _gpu(version)
    eng = g.write_engine(tmp_path, tiny["dynamic"], (1, 3, 64, 128), dynamic=DYNAMIC)
    rng = np.random.default_rng(1)
    shapes = [(1, 3, 64, 128), (2, 3, 32, 64), (1, 3, 128, 256), (1, 3, 64, 128)]
    xs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    with g.installed():
        b = g.open(eng)
        assert_matches_ort(b, tiny["dynamic"], xs, g)
        with pytest.raises(ConfigError, match="outside the engine's optimisation profile"):
            b.infer(np.zeros((1, 3, 8, 8), np.float32))  # set_input_shape returns False
        assert_matches_ort(b, tiny["dynamic"], xs[:1], g)
        b.close()
    assert g.rec.missing == []
    _closed_cleanly(g)


def test_fp16_io_engine_equals_onnxruntime_in_fp16(tiny, tmp_path):
    g = _gpu("10.16")
    eng = g.write_engine(
        tmp_path, tiny["fixed"], (1, 3, 64, 128), dtypes={"input": "HALF", "logits": "HALF"}
    )
    x = np.random.default_rng(2).normal(size=(1, 3, 64, 128)).astype(np.float32)
    ref = OrtCompute(str(tiny["fixed"]))(x.astype(np.float16).astype(np.float32))
    with g.installed():
        b = g.open(eng)
        y = b.infer(x)
        b.close()
    assert y.dtype == np.float32
    assert np.array_equal(y, ref.astype(np.float16).astype(np.float32))
    _closed_cleanly(g)


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_four_threads_each_get_their_own_results(version, tiny, tmp_path):
    g = _gpu(version)
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    ref = OrtCompute(str(tiny["fixed"]))
    rng = np.random.default_rng(3)
    xs = {
        k: [rng.normal(size=(1, 3, 64, 128)).astype(np.float32) for _ in range(4)] for k in range(4)
    }
    errors: List[BaseException] = []
    with g.installed():
        b = g.open(eng, max_contexts=4)

        def work(k: int) -> None:
            try:
                for x in xs[k]:
                    np.testing.assert_allclose(b.infer(x), ref(x), rtol=0, atol=1e-5)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert g.rec.names().count("ICudaEngine.create_execution_context") == 4
        b.close()
    _closed_cleanly(g)


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1", "10.3.0", "10.16", "11.1"])
def test_cuda_graph_replays_each_new_input(version, tiny, tmp_path):
    """One capture; every replay reads the input copied in for that call (8.5+: trtexec
    8.5.2 and 8.6.1 capture execute_async_v3 the same way)."""
    g = _gpu(version)
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(1, 3, 64, 128)).astype(np.float32) for _ in range(3)]
    with g.installed():
        b = g.open(eng, cuda_graph=True)
        assert_matches_ort(b, tiny["fixed"], xs, g)
        assert len(g.sim.captures) == 1 and g.sim.calls.count("cudaGraphLaunch") == 3
        stats = b.benchmark_gpu(iters=3, warmup=1, cuda_graph=True)
        assert min(stats["compute"]) > 0 and stats["cuda_graph"]
        b.close()
    _closed_cleanly(g)


def test_calibrator_device_buffer_holds_the_frames(real_images_dir, tmp_path):
    """Read the calibrator's pointer as TensorRT does: batch_size frames, every byte right."""
    from cifrenet_edge.data.calibration import load_calibration
    from cifrenet_edge.trt.int8_calibrator import make_entropy_calibrator

    g = _gpu("8.6.1")
    data = load_calibration(real_images_dir, (160, 96))  # five frames
    cal = make_entropy_calibrator(g.trt, g.cuda, data.batches, tmp_path / "c.cache", batch_size=2)
    frame_bytes = np.asarray(data.batches[0]).nbytes
    for k in range(2):
        (ptr,) = cal.get_batch(["input"])
        want = np.concatenate([data.batches[2 * k], data.batches[2 * k + 1]]).astype(np.float32)
        assert g.sim.read(ptr, 2 * frame_bytes) == want.tobytes()
        with pytest.raises(SimFault, match="past the end"):
            g.sim.read(ptr, 3 * frame_bytes)  # a batch-3 engine would read past the buffer
    assert cal.get_batch(["input"]) is None
    cal.release()
    assert g.sim.live() == ZERO and g.sim.faults == []


def test_stand_ins_return_what_tensorrt_returns(tiny, tmp_path):
    """None for a foreign or garbage plan and without memory; bools; -1 for a bad profile."""
    g = _gpu("10.3.0")
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    runtime = g.trt.Runtime(g.trt.Logger(g.trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(b"garbage") is None
    assert runtime.deserialize_cuda_engine(eng.read_bytes().replace(b"10.3.0", b"10.16")) is None
    engine = runtime.deserialize_cuda_engine(eng.read_bytes())
    ctx = engine.create_execution_context()
    assert ctx.execute_async_v3(0) is False  # no tensor addresses set
    assert ctx.set_input_shape("input", (1, 3, 32, 32)) is False  # a fixed engine
    builder = g.trt.Builder(g.trt.Logger(g.trt.Logger.WARNING))
    config = builder.create_builder_config()
    bad = builder.create_optimization_profile()
    with pytest.raises(RuntimeError, match="opt is inconsistent"):  # min > opt: pyCore.cpp
        bad.set_shape("input", (1, 3, 64, 64), (1, 3, 32, 32), (1, 3, 128, 128))
    assert config.add_optimization_profile(bad) == -1  # no shape set: an invalid profile
    good = builder.create_optimization_profile()
    good.set_shape("input", (1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 128, 128))
    assert config.add_optimization_profile(good) == 0
    g.sim.memory_bytes = g.sim.live_device_bytes()  # nothing left for another context
    assert engine.create_execution_context() is None
    del ctx, engine
    g.sim.memory_bytes = 0
    with g.installed():
        with pytest.raises(BackendUnavailableError, match="could not create an execution context"):
            g.open(eng).infer(np.zeros((1, 3, 64, 128), np.float32))
        eng.write_bytes(b"garbage")
        with pytest.raises(EngineMismatchError, match="could not deserialize"):
            g.open(eng)
    assert g.rec.missing == []


# --------------------------------------------------------------------------- finding 12
def test_close_during_slot_creation_frees_the_slot_and_raises_closed_error(tiny, tmp_path):
    g = _gpu("10.3.0")
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    entered, release = threading.Event(), threading.Event()
    outcome: Dict[str, Any] = {}

    def pause(*args):
        if threading.current_thread().name == "caller" and not entered.is_set():
            entered.set()
            release.wait(5)

    g.sim.hooks["cudaStreamCreateWithFlags"] = g.sim.hooks["cudaStreamCreate"] = pause
    with g.installed():
        b = g.open(eng)

        def call():
            try:
                outcome["result"] = b.infer(np.zeros((1, 3, 64, 128), np.float32))
            except BaseException as exc:
                outcome["error"] = exc

        caller = threading.Thread(target=call, name="caller")
        caller.start()
        assert entered.wait(5)
        closer = threading.Thread(target=b.close)
        closer.start()
        time.sleep(0.2)  # close() is under way (old code: finished) while the slot is made
        release.set()
        caller.join(5)
        closer.join(5)
    assert isinstance(outcome.get("error"), ClosedError), outcome
    _closed_cleanly(g)


def test_a_call_waiting_for_a_slot_that_close_frees_gets_closed_error(tiny, tmp_path):
    g = _gpu("10.3.0")
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    x = np.random.default_rng(5).normal(size=(1, 3, 64, 128)).astype(np.float32)
    inside, release = threading.Event(), threading.Event()
    outcome: Dict[str, Any] = {}

    def hold(ctx, stream):
        if threading.current_thread().name == "first" and not inside.is_set():
            inside.set()
            release.wait(5)

    g.world.hooks["IExecutionContext.execute_async_v3"] = hold
    with g.installed():
        b = g.open(eng, max_contexts=1)  # the two threads share one slot

        def call(name):
            try:
                outcome[name] = b.infer(x)
            except BaseException as exc:
                outcome[name] = exc

        first = threading.Thread(target=call, args=("first",), name="first")
        first.start()
        assert inside.wait(5)
        second = threading.Thread(target=call, args=("second",), name="second")
        second.start()
        time.sleep(0.1)  # second now waits for the slot's lock
        closer = threading.Thread(target=b.close)
        closer.start()
        time.sleep(0.1)
        release.set()
        for t in (first, second, closer):
            t.join(5)
    np.testing.assert_allclose(outcome["first"], OrtCompute(str(tiny["fixed"]))(x), atol=1e-5)
    assert isinstance(outcome["second"], ClosedError), outcome["second"]
    _closed_cleanly(g)


def test_close_racing_four_predicting_threads(tiny, tmp_path):
    """Only correct results or ClosedError, whatever the interleaving, and nothing leaks."""
    g = _gpu("10.3.0")
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    ref = OrtCompute(str(tiny["fixed"]))
    x = np.random.default_rng(6).normal(size=(1, 3, 64, 128)).astype(np.float32)
    want = ref(x)
    bad: List[BaseException] = []
    with g.installed():
        b = g.open(eng, max_contexts=2)

        def loop():
            for _ in range(200):
                try:
                    np.testing.assert_allclose(b.infer(x), want, atol=1e-5)
                except ClosedError:
                    return
                except BaseException as exc:
                    bad.append(exc)
                    return

        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        b.close()
        for t in threads:
            t.join(10)
    assert bad == []
    _closed_cleanly(g)


# --------------------------------------------------------------------------- finding 13
def test_benchmark_with_graphs_does_not_switch_other_threads_to_graphs(tiny, tmp_path):
    g = _gpu("10.3.0")
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    in_loop, done = threading.Event(), threading.Event()

    def pause(*args):
        if threading.current_thread().name == "bench" and not in_loop.is_set():
            in_loop.set()
            done.wait(5)

    x = np.random.default_rng(7).normal(size=(1, 3, 64, 128)).astype(np.float32)
    with g.installed():
        b = g.open(eng, max_contexts=2)  # cuda_graph off for ordinary calls
        bench = threading.Thread(
            target=lambda: b.benchmark_gpu(iters=2, warmup=0, cuda_graph=True), name="bench"
        )
        g.sim.hooks["cudaEventRecord"] = pause  # first event of the timed loop
        bench.start()
        assert in_loop.wait(5)
        result: Dict[str, Any] = {}
        other = threading.Thread(target=lambda: result.update(y=b.infer(x)), name="other")
        other.start()
        other.join(5)
        done.set()
        bench.join(5)
        b.close()
    np.testing.assert_allclose(result["y"], OrtCompute(str(tiny["fixed"]))(x), atol=1e-5)
    assert [name for _, name in g.sim.captures] == ["bench"]  # "other" never captured
    _closed_cleanly(g)


# --------------------------------------------------------------------------- finding 14
def test_tensorrt_rows_throughput_is_images_over_host_walltime(tiny, tmp_path):
    """DEFINITIONS["throughput"]: queries x batch / host wall clock of the timed loop."""
    from cifrenet_edge import bench
    from cifrenet_edge.bench import rows

    g = _gpu("10.3.0", compute_ms=50.0)  # simulated GPU time far above the host's
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    with g.installed():
        b = g.open(eng)
        seen: Dict[str, Any] = {}
        real = b.benchmark_gpu

        def spy(**kw):
            seen.update(real(**kw))
            return seen

        b.benchmark_gpu = spy
        row = rows._Row(
            bench.BenchResult("tensorrt", "fp32", (128, 64), 1), type("S", (), {"backend": b})()
        )
        rows._gpu_series(row, iters=6, warmup=1, cuda_graph=False)
        b.close()
    r = row.result
    wall = seen["walltime_s"]
    assert 0 < wall < 6 * 0.050  # the host loop, not the simulated 50 ms kernels
    assert r.compute.total_walltime_s == pytest.approx(wall)
    assert r.compute.throughput == pytest.approx(6 / wall)
    assert r.compute.mean_ms == pytest.approx(50.0)  # GPU compute time is still the events'
    _closed_cleanly(g)


# --------------------------------------------------------------------------- finding 15
def test_failed_slot_creation_frees_stream_events_and_buffers(tiny, tmp_path):
    g = _gpu("10.3.0")
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    with g.installed():
        b = g.open(eng)
        # room for the context and the input buffer, not the output buffer
        g.sim.memory_bytes = (1 << 20) + 3 * 64 * 128 * 4 + 1024
        with pytest.raises(BackendUnavailableError, match="cudaMalloc"):
            b.infer(np.zeros((1, 3, 64, 128), np.float32))
        gc.collect()
        assert g.sim.live() == ZERO  # not even the stream or its four events
        g.sim.memory_bytes = 1 << 30
        assert_matches_ort(b, tiny["fixed"], [np.ones((1, 3, 64, 128), np.float32)], g)
        b.close()
    _closed_cleanly(g)


def test_shape_outside_the_profile_at_open_leaks_nothing(tiny, tmp_path):
    g = _gpu("10.16")
    eng = g.write_engine(tmp_path, tiny["dynamic"], (1, 3, 64, 128), dynamic=DYNAMIC)
    with g.installed():
        b = g.open(eng, input_shape=(1, 3, 512, 512))
        with pytest.raises(ConfigError, match="outside the engine's optimisation profile"):
            b.infer(np.zeros((1, 3, 512, 512), np.float32))
        gc.collect()
        assert g.sim.live() == ZERO
        b.close()


# --------------------------------------------------------------------------- finding 16
@pytest.mark.parametrize("which", ["fixed", "half_res"])
def test_gpu_argmax_reads_the_logits_at_their_own_size(which, tiny, real_images_dir, tmp_path):
    """predict_frame (argmax on the device) == the host path, also for half-size logits."""
    from cifrenet_edge.preprocess import preprocess
    from cifrenet_edge.runtime.postprocess import argmax_classes, resize_mask

    g = _gpu("10.3.0")
    eng = g.write_engine(tmp_path, tiny[which], (1, 3, 64, 128))
    m = read_manifest(eng)
    with g.installed(cupy=True):
        b = g.open(eng)
        assert b.predict_frame is not None
        for f in sorted(Path(real_images_dir).glob("*.jpg"))[:3]:
            frame = cv2.imread(str(f))
            fast = b.predict_frame(frame)
            logits = b.infer(preprocess(frame, (128, 64), m["mean_bgr"], m["scale"]))
            host = resize_mask(argmax_classes(logits[0]), (frame.shape[1], frame.shape[0]))
            assert fast.dtype == np.uint8 and np.array_equal(fast, host)
        b.close()
    assert g.sim.faults == []


# --------------------------------------------------------------------------- finding 18
def test_one_trt_logger_per_process(tiny, tmp_path):
    g = _gpu("8.2.1")
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    with g.installed():
        b1, b2 = g.open(eng), g.open(eng)
        b1.close()
        b2.close()
    assert len(g.world.loggers) == 1
    assert {id(logger) for _, logger in g.world.runtimes} == {id(g.world.loggers[0])}


def test_close_synchronises_streams_before_freeing_buffers(tiny, tmp_path):
    """A failed enqueue leaves a queued copy; close must not free memory it still uses."""
    g = _gpu("10.3.0")
    eng = g.write_engine(tmp_path, tiny["fixed"], (1, 3, 64, 128))
    g.world.hooks["IExecutionContext.execute_async_v3"] = lambda ctx, stream: False
    with g.installed():
        b = g.open(eng)
        with pytest.raises(BackendUnavailableError, match="failed to enqueue"):
            b.infer(np.ones((1, 3, 64, 128), np.float32))
        b.close()
    _closed_cleanly(g)


# --------------------------------------------------------------------------- planted bugs
@pytest.fixture
def planted(tiny, tmp_path):
    """A backend on a sim GPU and the check every test above makes, for bug-planting tests."""

    def open_(version="10.3.0", **engine_kw):
        g = _gpu(version)
        eng = g.write_engine(tmp_path / version, tiny["fixed"], (1, 3, 64, 128), **engine_kw)
        ctx = g.installed()
        ctx.__enter__()
        opened.append(ctx)
        return g, g.open(eng)

    opened: List[Any] = []
    xs = [np.random.default_rng(8).normal(size=(1, 3, 64, 128)).astype(np.float32)]
    yield open_, xs
    for ctx in reversed(opened):  # each restores what the one before it installed
        ctx.__exit__(None, None, None)


CAUGHT = (AssertionError, BackendUnavailableError)


def test_planted_wrong_pointer_is_caught(planted, tiny, monkeypatch):
    open_, xs = planted
    real = trt_backend.TensorRTBackend._set_shape

    def wrong_pointer(self, slot, shape):
        real(self, slot, shape)
        slot.context.set_tensor_address(self._io["input"]["name"], slot.d_out)

    monkeypatch.setattr(trt_backend.TensorRTBackend, "_set_shape", wrong_pointer)
    g, b = open_()
    with pytest.raises(CAUGHT):
        assert_matches_ort(b, tiny["fixed"], xs, g)


def test_planted_wrong_size_is_caught(planted, tiny, monkeypatch):
    open_, xs = planted
    g, b = open_()
    real = b.cuda.htod_async
    monkeypatch.setattr(
        b.cuda, "htod_async", lambda dst, src, s: real(dst, src[: src.size // 2], s)
    )
    with pytest.raises(CAUGHT):
        assert_matches_ort(b, tiny["fixed"], xs, g)


def test_planted_wrong_dtype_is_caught(planted, tiny, monkeypatch):
    open_, xs = planted
    monkeypatch.setitem(trt_backend._NP_DTYPES, "HALF", np.float32)  # HALF read as float32
    g, b = open_("10.16", dtypes={"input": "HALF", "logits": "HALF"})
    with pytest.raises(CAUGHT):
        y = b.infer(xs[0])
        ref = OrtCompute(str(tiny["fixed"]))(xs[0].astype(np.float16).astype(np.float32))
        np.testing.assert_allclose(y, ref, atol=1e-2)
        assert g.sim.faults == []


def test_planted_swapped_binding_order_is_caught(planted, tiny, monkeypatch):
    """An 8.2 engine whose output is binding 0: bindings must follow the engine, not habit."""
    open_, xs = planted
    g, b = open_("8.2.1", order=["logits", "input"])
    assert_matches_ort(b, tiny["fixed"], xs, g)  # the backend reads the engine's order
    b.close()
    real = trt_backend.TensorRTBackend._discover_io

    def habit(self):
        io = real(self)
        io["input"]["index"], io["output"]["index"] = 0, 1
        return io

    monkeypatch.setattr(trt_backend.TensorRTBackend, "_discover_io", habit)
    g, b = open_("8.2.1", order=["logits", "input"])
    with pytest.raises(CAUGHT):
        assert_matches_ort(b, tiny["fixed"], xs, g)
