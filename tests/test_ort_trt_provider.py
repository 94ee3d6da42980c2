"""ONNX Runtime's TensorRT execution provider: the options a model needs, and the hint.

No GPU here: ``InferenceSession`` is wrapped to record the providers asked for and then
built for real on the CPU, so the backend meets the fallback it must report (ORT falls back
silently; a TensorRT provider asked for and not obtained is an error with the fix).
"""

import json

import onnxruntime as ort
import pytest
from support.trt_sim import make_onnx
from support.trt_standin import _manifest

from cifrenet_edge.errors import BackendUnavailableError
from cifrenet_edge.runtime.backends import onnxruntime as ort_backend
from cifrenet_edge.runtime.backends.onnxruntime import (
    OnnxRuntimeBackend,
    tensorrt_provider_options,
)


@pytest.fixture
def model(tmp_path):
    def make(precision):
        path = make_onnx(tmp_path / f"m_{precision}.onnx", (1, 3, 64, 128))
        m = _manifest(precision)
        m["resolution"] = [128, 64]
        path.with_name(path.name + ".json").write_text(json.dumps(m))
        return path, m

    return make


def test_qdq_model_enables_int8_and_caches_sit_beside_the_model(model):
    path, m = model("int8")
    opts = tensorrt_provider_options(
        str(path), m, 0, False, ort_version="1.17.3", trt_version="8.6.1"
    )
    assert opts["trt_int8_enable"] is True  # microsoft/onnxruntime#13381
    assert opts["trt_engine_cache_enable"] is True and opts["trt_timing_cache_enable"] is True
    cache = opts["trt_engine_cache_path"]
    assert cache == str(path.parent.resolve() / "m_int8.onnx.ort-trt-cache" / "ort1.17.3-trt8.6.1")
    assert (path.parent / "m_int8.onnx.ort-trt-cache").is_dir()
    fp32 = tensorrt_provider_options(str(model("fp32")[0]), model("fp32")[1], 1, True, "1.20.0")
    assert "trt_int8_enable" not in fp32 and fp32["trt_fp16_enable"] and fp32["device_id"] == 1


def test_options_an_older_onnxruntime_would_reject_are_not_passed(model):
    """ORT rejects unknown provider options; trt_timing_cache_enable arrived in 1.15."""
    path, m = model("fp32")
    opts = tensorrt_provider_options(
        str(path), m, 0, False, ort_version="1.14.1", trt_version="8.5"
    )
    assert "trt_timing_cache_enable" not in opts and opts["trt_engine_cache_enable"]


def test_read_only_model_folder_uses_the_user_cache(model, tmp_path, monkeypatch):
    """Robot images often mount the model read-only: the cache goes to ~/.cache instead."""
    path, m = model("fp32")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    real_access = ort_backend.os.access
    beside = str(path.parent.resolve())
    monkeypatch.setattr(
        ort_backend.os,
        "access",
        lambda p, mode: False if str(p).startswith(beside + "/m_fp32") else real_access(p, mode),
    )
    opts = tensorrt_provider_options(str(path), m, 0, False, "1.20.0", "10.4")
    assert opts["trt_engine_cache_path"].startswith(str(tmp_path / "home" / ".cache"))


def test_backend_passes_them_and_names_the_pascal_pairing(model, monkeypatch):
    path, m = model("int8")
    asked = []
    real = ort.InferenceSession

    def recording(p, options=None, providers=None, **kw):
        asked.append(providers)
        return real(p, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort_backend.ort, "InferenceSession", recording)
    monkeypatch.setattr(
        ort_backend.ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    with pytest.raises(BackendUnavailableError) as err:
        OnnxRuntimeBackend(str(path), m, (1, 3, 64, 128), device="tensorrt")
    name, opts = asked[0][0]
    assert name == "TensorrtExecutionProvider"
    assert opts["trt_int8_enable"] and opts["trt_engine_cache_enable"]
    msg = str(err.value)
    assert "fell back to CPUExecutionProvider" in msg
    assert "<= 1.17 with TensorRT 8.6" in msg and "Pascal" in msg and "\n" not in msg
