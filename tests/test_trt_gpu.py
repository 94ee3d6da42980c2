"""TensorRT on a real GPU: build FP32/FP16/INT8 engines, run them, compare with ONNX Runtime.

Marked ``gpu``: conftest skips them (with the reason) where TensorRT, cuda-python or an
NVIDIA driver is missing. They are written to pass unchanged on a GPU machine with
TensorRT 8.5+ (8.2 needs opset 13 exports: see the README's deploying section). Models are
untrained
(random weights), so the agreement thresholds compare engines with the same file in ONNX
Runtime, not with ground truth.
"""

import json
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from cifrenet_edge.errors import EngineMismatchError

pytestmark = pytest.mark.gpu

# Minimum share of pixels whose class matches ONNX Runtime on the same model file.
AGREEMENT = {"fp32": 0.98, "fp16": 0.95, "int8": 0.90}


@pytest.fixture(scope="module")
def onnx_models(small_fp32_onnx, tmp_path_factory, real_images_dir):
    """FP32 export (shared session fixture, copied) and its INT8 Q/DQ model."""
    from cifrenet_edge.quantize import quantize_onnx

    d = tmp_path_factory.mktemp("trt_gpu")
    fp32 = d / small_fp32_onnx.name
    shutil.copy(small_fp32_onnx, fp32)
    shutil.copy(str(small_fp32_onnx) + ".json", str(fp32) + ".json")
    int8 = quantize_onnx(fp32, calib=real_images_dir, output=d / "cifrenet_int8.onnx", quiet=True)
    return {"fp32": fp32, "int8": Path(int8.path)}


@pytest.fixture(scope="module")
def engines(onnx_models):
    from cifrenet_edge.trt.build import build_engine

    out = {}
    for precision in ("fp32", "fp16", "int8"):
        src = onnx_models["int8" if precision == "int8" else "fp32"]
        out[precision] = build_engine(
            src, precision=precision, output=src.parent / f"m_{precision}.engine", quiet=True
        )
    return out


def _frames(real_images_dir):
    return [cv2.imread(str(p)) for p in sorted(Path(real_images_dir).glob("*.jpg"))]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_agrees_with_onnxruntime(precision, engines, onnx_models, real_images_dir):
    from cifrenet_edge import Segmenter

    result = engines[precision]
    assert result.path.is_file() and result.manifest_path.is_file()
    eng = result.manifest["engine"]
    assert eng["precision"] == precision and eng["compute_capability"] and eng["tensorrt"]
    ref_model = onnx_models["int8" if precision == "int8" else "fp32"]
    with Segmenter.open(result.path) as trt_seg, Segmenter.open(
        ref_model, device="cpu", backend="onnxruntime"
    ) as ort_seg:
        assert trt_seg.backend.name == "tensorrt"
        total = same = 0
        for frame in _frames(real_images_dir):
            a, b = trt_seg.predict(frame), ort_seg.predict(frame)
            assert a.shape == frame.shape[:2] and a.dtype == np.uint8
            same += int((a == b).sum())
            total += a.size
    assert same / total >= AGREEMENT[precision], f"{precision}: {same / total:.4f}"


def test_fp32_logits_close_to_onnxruntime(engines, onnx_models):
    import onnxruntime as ort

    from cifrenet_edge.manifest import read_manifest
    from cifrenet_edge.runtime.backends.tensorrt import TensorRTBackend

    res = engines["fp32"]
    m = read_manifest(res.path)
    w, h = m["resolution"]
    x = np.random.default_rng(0).uniform(-0.3, 0.7, (1, 3, h, w)).astype(np.float32)
    ref = ort.InferenceSession(str(onnx_models["fp32"]), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]
    with TensorRTBackend(path=str(res.path), manifest=m, input_shape=(1, 3, h, w)) as b:
        got = b.infer(x)
        assert got.shape == ref.shape
        # TF32 convolutions on Ampere+ are not bit-exact; 1e-2 of the logit range is generous
        assert np.abs(got - ref).max() <= 1e-2 * max(1.0, float(np.abs(ref).max()))
        stats = b.benchmark_gpu(iters=20, warmup=5)
        assert len(stats["compute"]) == 20 and min(stats["compute"]) > 0.0
        if b.caps.cuda_graphs and b.cuda.supports_graphs:
            g = b.benchmark_gpu(iters=20, warmup=5, cuda_graph=True)
            assert min(g["compute"]) > 0.0
            assert np.array_equal(b.infer(x), got)


def test_gpu_argmax_fast_path_equals_host_postprocessing(engines, real_images_dir):
    """With CuPy, only the uint8 class map crosses back; it must equal the host path's map."""
    pytest.importorskip("cupy", reason="CuPy not installed: the GPU argmax path is off")
    from cifrenet_edge.manifest import read_manifest
    from cifrenet_edge.preprocess import preprocess
    from cifrenet_edge.runtime.backends.tensorrt import TensorRTBackend
    from cifrenet_edge.runtime.postprocess import argmax_classes, resize_mask

    path = engines["fp32"].path
    m = read_manifest(path)
    w, h = m["resolution"]
    with TensorRTBackend(
        path=str(path), manifest=m, input_shape=(1, 3, h, w), gpu_argmax=True
    ) as b:
        for frame in _frames(real_images_dir):
            fast = b.predict_frame(frame)
            logits = b.infer(preprocess(frame, (w, h), m["mean_bgr"], m["scale"]))
            host = resize_mask(argmax_classes(logits[0]), (frame.shape[1], frame.shape[0]))
            assert fast.dtype == np.uint8 and np.array_equal(fast, host)


def test_threads_share_one_engine(engines, real_images_dir):
    from cifrenet_edge import Segmenter

    frames = _frames(real_images_dir)
    with Segmenter.open(engines["fp32"].path) as seg:
        expected = [seg.predict(f) for f in frames]
        results = {}

        def work(k):
            results[k] = [seg.predict(f) for f in frames for _ in range(3)][::3]

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k in range(4):
        assert all(np.array_equal(a, b) for a, b in zip(results[k], expected))


@pytest.mark.parametrize(
    "doctor", [("tensorrt", "7.2.3.4"), ("compute_capability", "5.0")], ids=["trt", "gpu"]
)
def test_doctored_manifest_is_refused(doctor, engines, tmp_path):
    from cifrenet_edge import Segmenter

    src = engines["fp32"].path
    eng = tmp_path / "doctored.engine"
    shutil.copy(src, eng)
    manifest = json.loads(Path(str(src) + ".json").read_text())
    manifest["engine"][doctor[0]] = doctor[1]
    Path(str(eng) + ".json").write_text(json.dumps(manifest))
    with pytest.raises(EngineMismatchError) as err:
        Segmenter.open(eng)
    msg = str(err.value)
    assert doctor[1] in msg and "cifrenet-edge export" in msg and "--format engine" in msg


def test_timing_cache_is_reused(onnx_models, engines):
    from cifrenet_edge.trt.build import build_engine

    first = engines["fp32"]
    cache = Path(first.manifest["engine"]["timing_cache"])
    assert cache.is_file() and cache.stat().st_size > 0
    again = build_engine(
        onnx_models["fp32"],
        precision="fp32",
        output=first.path.parent / "again.engine",
        timing_cache=cache,
        quiet=True,
    )
    assert again.path.is_file() and cache.stat().st_size > 0
