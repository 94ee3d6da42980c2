"""The runtime: backends agree, threads agree, memory stays flat, bad input fails clearly."""

import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from thresholds import check

from cifrenet_edge import Segmenter
from cifrenet_edge.errors import (
    BackendUnavailableError,
    ClosedError,
    ConfigError,
    FrameError,
    ModelFileError,
)
from cifrenet_edge.runtime.backends import choose_backend, installed
from cifrenet_edge.runtime.postprocess import argmax_classes, mask_from_logits

ROOT = Path(__file__).resolve().parents[1]
RES = (128, 64)  # conftest RUNTIME_RES: small, the file must stay fast on 2 busy cores


def _real_frames(folder):
    return [cv2.imread(str(p)) for p in sorted(Path(folder).glob("*.jpg"))]


@pytest.fixture(scope="session")
def content_checkpoint(runtime_content_checkpoint):
    return runtime_content_checkpoint


@pytest.fixture(scope="session")
def content_onnx(runtime_content_onnx):
    return runtime_content_onnx


@pytest.fixture(scope="session")
def tiny_onnx(runtime_tiny_onnx):
    return runtime_tiny_onnx


@pytest.fixture(scope="session")
def ort_seg(content_onnx):
    seg = Segmenter.open(content_onnx, backend="onnxruntime", threads=1)
    yield seg
    seg.close()


@pytest.fixture(scope="session")
def frames(real_images_dir):
    return _real_frames(real_images_dir)


# -- backends agree ----------------------------------------------------------------------


def _agreement(a, b):
    return float(np.mean(a == b))


def test_torch_onnxruntime_openvino_same_class_maps(content_checkpoint, content_onnx, frames):
    with Segmenter.open(content_checkpoint, resolution=RES, threads=1) as ref_seg:
        assert ref_seg.backend.name == "torch"
        reference = [ref_seg.predict(f) for f in frames]
        # torch takes any batch: predict_batch runs all five frames in one forward pass
        assert ref_seg.backend.dynamic_batch and ref_seg.backend.max_batch >= 5
        for batched, single in zip(ref_seg.predict_batch(frames), reference):
            assert check(
                "runtime.torch_batch_vs_single", _agreement(batched, single), ">=", 0.999, 1
            )
    for name in ("onnxruntime", "openvino"):
        with Segmenter.open(content_onnx, backend=name, threads=1) as seg:
            assert seg.backend.name == name and seg.resolution == RES
            for ref, frame in zip(reference, frames):
                mask = seg.predict(frame)
                assert mask.shape == frame.shape[:2] and mask.dtype == np.uint8
                agree = _agreement(mask, ref)
                assert check(f"runtime.{name}_vs_torch", agree, ">=", 0.999, 1.0), name
    # not vacuous: the network's answer depends on the picture
    assert min(len(np.unique(m)) for m in reference) >= 5
    other = _agreement(reference[0][:300, :300], reference[1][:300, :300])
    assert check("runtime.two_photos_differ", other, "<", 0.9)


def test_probabilities_and_sizes(ort_seg, frames):
    frame = frames[0]
    mask, probs = ort_seg.predict(frame, probabilities=True)
    h, w = frame.shape[:2]
    assert probs.shape == (h, w, ort_seg.num_classes) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    assert np.array_equal(mask, probs.argmax(-1))
    # the fast path (argmax, then nearest resize) agrees with the logits-resize reference:
    # 0.952 under every kernel ISA, the two resizes differing only at class borders
    fast = ort_seg.predict(frame)
    assert check("runtime.fast_vs_logit_resize", _agreement(fast, mask), ">", 0.9, 1.0)
    for size in [(37, 53), (720, 1280), (64, 128), (301, 199)]:  # a new size every call
        f = cv2.resize(frame, (size[1], size[0]))
        assert ort_seg.predict(f).shape == size


def test_predict_batch_matches_predict(ort_seg, frames):
    batch = ort_seg.predict_batch(frames)
    for frame, mask in zip(frames, batch):
        assert np.array_equal(mask, ort_seg.predict(frame))
    with pytest.raises(FrameError, match="frame 2"):
        ort_seg.predict_batch([frames[0], frames[1], None])


def test_argmax_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((19, 33, 47)).astype(np.float32)
    logits[3, :5, :5] = logits[7, :5, :5] = 9.0  # ties: first class wins, as np.argmax
    assert np.array_equal(argmax_classes(logits), logits.argmax(0).astype(np.uint8))
    assert mask_from_logits(logits, (94, 66), "logits").shape == (66, 94)


def test_colorize_and_overlay(ort_seg, frames):
    frame = frames[1]
    mask = ort_seg.predict(frame)
    colours = ort_seg.colorize(mask)
    assert colours.shape == frame.shape and colours.dtype == np.uint8
    k = int(mask[0, 0])
    r, g, b = ort_seg.manifest["palette_rgb"][k]
    assert tuple(colours[0, 0]) == (b, g, r)  # BGR out, like the frame
    assert np.array_equal(ort_seg.overlay(frame, mask, 0.0), frame)
    assert np.array_equal(ort_seg.overlay(frame, mask, 1.0), colours)
    with pytest.raises(ConfigError):
        ort_seg.overlay(frame, mask, 1.5)
    with pytest.raises(FrameError):
        ort_seg.overlay(frame, mask[:10], 0.5)


# -- threads and long runs ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_four_threads_same_as_one(content_onnx, frames, backend):
    sizes = [(360, 640), (240, 320), (480, 480), (200, 300)]
    work = [cv2.resize(frames[i % 5], (s[1], s[0])) for i, s in enumerate(sizes * 3)]
    with Segmenter.open(content_onnx, backend=backend, threads=1) as seg:
        expected = [seg.predict(f) for f in work]
        results = {}
        errors = []

        def worker(t):
            try:
                for rep in range(2):
                    for i in range(t, len(work), 2):  # threads overlap on the same frames
                        results[(t, rep, i)] = seg.predict(work[i])
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(results) == 2 * sum(len(range(t, len(work), 2)) for t in range(4))
        for (_, _, i), mask in results.items():
            assert np.array_equal(mask, expected[i])
        if backend == "openvino":  # requests are pooled, not one per thread ever seen
            assert 1 <= seg.backend.pool_size <= 5


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_memory_flat_over_thousands_of_frames(tiny_onnx, frames):
    """3000 frames: Python-heap growth (tracemalloc) and RSS growth stay bounded.

    Measured after a warm-up of 200 frames so allocator pools and per-thread buffers exist.
    Growth proportional to the frame count (a leak of even one 160x96 mask per frame = 15 KB
    x 3000 = 46 MB) would fail both bounds.
    """
    seg = Segmenter.open(tiny_onnx, threads=1)
    work = [cv2.resize(f, (160, 96)) for f in frames]
    for i in range(200):
        seg.predict(work[i % 5])
    gc.collect()
    tracemalloc.start()
    heap0 = tracemalloc.get_traced_memory()[0]
    rss0 = _rss_bytes()
    for i in range(3000):
        seg.predict(work[i % 5])
    gc.collect()
    heap1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss1 = _rss_bytes()
    seg.close()
    heap_growth, rss_growth = heap1 - heap0, rss1 - rss0
    print(f"3000 frames: heap growth {heap_growth} B, RSS growth {rss_growth / 1e6:.2f} MB")
    assert heap_growth < 256 * 1024
    assert rss_growth < 8 * 1024 * 1024


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame, words",
    [
        (None, "None"),
        (np.zeros((64, 64), np.uint8), "grayscale"),
        (np.zeros((64, 64, 1), np.uint8), "grayscale"),
        (np.zeros((64, 64, 4), np.uint8), "4 channels"),
        (np.zeros((64, 64, 3), np.uint16), "uint16"),
        (np.zeros((64, 64, 3), np.float32), "float32"),
        (np.zeros((0, 64, 3), np.uint8), "empty"),
        ([[1, 2, 3]], "numpy"),
    ],
)
def test_bad_frames_raise_frame_error_and_the_segmenter_goes_on(ort_seg, frames, frame, words):
    with pytest.raises(FrameError, match=words) as info:
        ort_seg.predict(frame)
    assert "\n" not in str(info.value)
    assert ort_seg.predict(frames[0]).shape == frames[0].shape[:2]


def _copy_model(src, dst_dir, name="m.onnx"):
    dst = Path(dst_dir) / name
    shutil.copy(src, dst)
    shutil.copy(str(src) + ".json", str(dst) + ".json")
    return dst


def _edit_manifest(path, **changes):
    side = Path(str(path) + ".json")
    manifest = json.loads(side.read_text())
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    side.write_text(json.dumps(manifest))


def _strip_embedded(path):
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))


@pytest.mark.parametrize(
    "change, words",
    [
        ({"classes": None}, "missing classes"),
        ({"num_classes": 11}, "class names for 11 classes"),
        ({"resolution": [320, 160]}, "graph takes 128x64"),
        ({"input_name": "images"}, "input 'images'"),
        ({"format": "someone-else/3"}, "format"),
    ],
)
def test_wrong_metadata_raises_model_file_error(content_onnx, tmp_path, change, words):
    path = _copy_model(content_onnx, tmp_path)
    _edit_manifest(path, **change)
    with pytest.raises(ModelFileError, match=words) as info:
        Segmenter.open(path, warmup=0)
    assert "\n" not in str(info.value) and "re-export" in str(info.value)


def test_missing_or_broken_model_files(content_onnx, content_checkpoint, tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        Segmenter.open(tmp_path / "nope.onnx")
    bare = _copy_model(content_onnx, tmp_path, "bare.onnx")
    Path(str(bare) + ".json").unlink()
    _strip_embedded(bare)
    with pytest.raises(ModelFileError, match="no cifrenet-edge manifest"):
        Segmenter.open(bare)
    garbage = _copy_model(content_onnx, tmp_path, "garbage.onnx")
    garbage.write_bytes(b"not an onnx file at all")
    with pytest.raises(ModelFileError, match="cannot load"):
        Segmenter.open(garbage, backend="onnxruntime")
    with pytest.raises(ModelFileError, match="cannot read"):
        Segmenter.open(garbage, backend="openvino")
    import torch

    plain = tmp_path / "plain.pth"  # a bare state_dict: no preset, no sidecar
    torch.save(torch.load(content_checkpoint, weights_only=True)["state_dict"], plain)
    with pytest.raises(ModelFileError, match="names no preset"):
        Segmenter.open(plain)
    (tmp_path / "weird.xyz").write_bytes(b"x")
    Path(str(tmp_path / "weird.xyz") + ".json").write_text(
        (Path(str(content_onnx) + ".json")).read_text()
    )
    with pytest.raises(ConfigError, match="suffix"):
        Segmenter.open(tmp_path / "weird.xyz")


def test_resolution_and_precision_requests(content_onnx, content_checkpoint):
    with pytest.raises(ConfigError, match="fixed 128x64"):
        Segmenter.open(content_onnx, resolution="640x360")
    with pytest.raises(ConfigError, match="int8"):
        Segmenter.open(content_onnx, precision="int8")
    with pytest.raises(ConfigError, match="outside the model's range"):
        Segmenter.open(content_checkpoint, resolution=(16, 16))
    with Segmenter.open(content_checkpoint, resolution="96x64", warmup=0) as seg:
        assert seg.resolution == (96, 64) and seg.backend.input_shape == (1, 3, 64, 96)
    seg = Segmenter.open(content_onnx, warmup=0)
    seg.close()
    with pytest.raises(ClosedError):
        seg.predict(np.zeros((8, 8, 3), np.uint8))


# -- which backend -------------------------------------------------------------------------


def test_backend_choice_rule(content_onnx, monkeypatch):
    from cifrenet_edge.errors import BackendUnavailableError
    from cifrenet_edge.runtime.cpu_int8 import FORCE_ENV

    manifest = json.loads(Path(str(content_onnx) + ".json").read_text())
    int8 = dict(manifest, precision="int8")
    monkeypatch.setenv(FORCE_ENV, "1")  # a CPU with an int8 dot product (VNNI)
    if (
        not installed("onnxruntime")
        or "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers()
    ):
        assert choose_backend("m.onnx", manifest, "cpu")[0] == "onnxruntime"
        expected = "openvino" if installed("openvino") else "onnxruntime"
        assert choose_backend("m.onnx", int8, "auto")[0] == expected
    name, why = choose_backend("m.onnx", int8, "cpu", backend="onnxruntime")
    assert name == "onnxruntime" and why.startswith("requested; ") and "dot product" in why
    assert choose_backend("m.onnx", manifest, "cpu", backend="onnxruntime") == (
        "onnxruntime",
        "requested",
    )
    monkeypatch.setenv(FORCE_ENV, "0")  # AVX2 only: 7-bit weights when verified, else refused
    with pytest.raises(BackendUnavailableError, match="saturate"):
        choose_backend("m.onnx", int8, "cpu")
    verified = {"variants": {"weights_7bit": {"agreement": 0.95, "passed": True}}}
    if installed("openvino"):
        name, why = choose_backend("m.onnx", dict(int8, parity=verified), "cpu")
        assert name == "openvino" and "7-bit" in why
    assert choose_backend("m.pth", manifest)[0] == "torch"
    assert choose_backend("m.plan", manifest)[0] == "tensorrt"
    with pytest.raises(ConfigError, match=r"cannot run a \.onnx"):
        choose_backend("m.onnx", manifest, backend="tensorrt")
    with pytest.raises(ConfigError, match="unknown backend"):
        choose_backend("m.onnx", manifest, backend="tflite")
    with pytest.raises(ConfigError, match="unknown device"):
        choose_backend("m.onnx", manifest, device="npu")


def test_gpu_requests_fail_clearly_on_a_cpu_machine(content_onnx):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime-gpu")
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        Segmenter.open(content_onnx, device="cuda")
    with pytest.raises(BackendUnavailableError, match="CPU"):
        Segmenter.open(content_onnx, backend="openvino", device="cuda")


def test_engine_without_tensorrt_says_what_to_install(content_onnx, tmp_path):
    if installed("tensorrt"):
        pytest.skip("TensorRT is installed here")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 64)
    manifest = json.loads(Path(str(content_onnx) + ".json").read_text())
    manifest["kind"] = "engine"
    Path(str(engine) + ".json").write_text(json.dumps(manifest))
    with pytest.raises(BackendUnavailableError, match=r"(?i)tensorrt") as info:
        Segmenter.open(engine)
    assert "\n" not in str(info.value)


# -- importable on the robot ---------------------------------------------------------------

_BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'onnxslim', 'torchvision'):
            raise ImportError('blocked: ' + name)
        return None
sys.meta_path.insert(0, Block())
import numpy as np, cv2
import cifrenet_edge.runtime as rt
from cifrenet_edge import Segmenter
import cifrenet_edge.runtime.sources, cifrenet_edge.runtime.predict_files
import cifrenet_edge.runtime.rosimg
seg = Segmenter.open(sys.argv[1])
mask = seg.predict(np.zeros((90, 160, 3), np.uint8))
assert mask.shape == (90, 160)
bad = [m for m in ('torch', 'onnx') if m in sys.modules]
assert not bad, bad
print('ok', seg.backend.name)
"""


def test_runtime_imports_and_runs_without_torch_or_onnx(content_onnx):
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKER, str(content_onnx)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok")


def test_runtime_is_python38_syntax():
    from conftest import assert_python38

    pkg = ROOT / "cifrenet_edge"
    files = sorted((pkg / "runtime").rglob("*.py"))
    names = ("errors.py", "_io.py", "manifest.py", "presets.py", "preprocess.py", "__init__.py")
    names += ("model/paper.py",)
    assert_python38(files + [pkg / n for n in names])


def test_device_fast_path_is_used_and_warmed(content_onnx, ort_seg, frames):
    """The Segmenter's contract with a backend that post-processes on its device (TensorRT's
    ``predict_frame``): used for class maps, warmed at open, bypassed for probabilities."""
    from cifrenet_edge.preprocess import preprocess
    from cifrenet_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from cifrenet_edge.runtime.postprocess import argmax_classes, resize_mask
    from cifrenet_edge.runtime.segmenter import open_manifest

    class WithDevicePath(OnnxRuntimeBackend):
        calls = 0

        def predict_frame(self, frame):  # what TensorRT does on the GPU, here on the host
            WithDevicePath.calls += 1
            m = self.manifest
            x = preprocess(frame, RES, m["mean_bgr"], m["scale"])
            mask = argmax_classes(self.infer(x)[0])
            return resize_mask(mask, (frame.shape[1], frame.shape[0]))

    manifest = open_manifest(Path(content_onnx))
    backend = WithDevicePath(
        path=str(content_onnx), manifest=manifest, input_shape=(1, 3, RES[1], RES[0]), threads=1
    )
    with Segmenter(backend, manifest, RES, str(content_onnx), "test") as seg:
        seg.warmup(2)
        assert WithDevicePath.calls == 2
        assert np.array_equal(seg.predict(frames[0]), ort_seg.predict(frames[0]))
        assert WithDevicePath.calls == 3
        seg.predict(frames[0], probabilities=True)
        assert WithDevicePath.calls == 3
        with pytest.raises(FrameError):
            seg.predict(np.zeros((4, 4), np.uint8))  # frames are checked before the device


def test_last_timing_is_per_call_and_per_thread(ort_seg, frames):
    """``last_timing`` holds the calling thread's last call, by phase, and never another's."""
    import threading

    from cifrenet_edge.runtime import Prediction, Timing

    out = ort_seg.predict(frames[0], probabilities=True)
    assert isinstance(out, Prediction) and out.mask.shape == frames[0].shape[:2]
    mask, probs = out  # the tuple form reads as before
    assert probs.shape[:2] == mask.shape
    t = ort_seg.last_timing
    assert isinstance(t, Timing) and t.preprocess_ms > 0 and t.infer_ms > 0
    assert t.postprocess_ms > 0 and t.total_ms == pytest.approx(
        t.preprocess_ms + t.infer_ms + t.postprocess_ms
    )
    seen = {}

    def other():
        seen["before"] = ort_seg.last_timing
        ort_seg.predict_batch(frames[:2])
        seen["after"] = ort_seg.last_timing

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert seen["before"] is None and isinstance(seen["after"], Timing)
    assert ort_seg.last_timing is t  # the other thread's call left this thread's figures


def test_open_validates_the_manifest_once(content_onnx, monkeypatch):
    """One check per open: where the manifest is read, not again by the Segmenter."""
    from cifrenet_edge import manifest as manifest_mod
    from cifrenet_edge.runtime import segmenter as segmenter_mod

    calls = []
    real = manifest_mod.check_manifest

    def counted(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(manifest_mod, "check_manifest", counted)
    monkeypatch.setattr(segmenter_mod, "check_manifest", counted, raising=False)
    with Segmenter.open(content_onnx, backend="onnxruntime", warmup=0) as seg:
        assert seg.resolution
    assert len(calls) == 1
