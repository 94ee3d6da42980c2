"""Engine manifest refusal: manifests made to disagree with the running machine (no GPU needed).

``compare_engine`` is a pure function of (manifest, facts of the running machine), so every
rule is exercised here with real manifests and facts; the GPU test in ``test_trt_gpu.py``
checks the same refusal through ``Segmenter.open`` on a real engine.
"""

import json

import pytest
from support.trt_standin import _manifest

from cifrenet_edge.errors import EngineMismatchError, ModelFileError
from cifrenet_edge.trt.engine_manifest import (
    check_engine,
    compare_engine,
    rebuild_command,
    require_engine_manifest,
)

BUILT = {
    **_manifest("int8"),  # a complete manifest; the engine's own fields below
    "kind": "engine",
    "preset": "cityscapes",
    "precision": "int8",
    "resolution": [640, 360],
    "dynamic": None,
    "weights": {"path": "weights/cifrenet city.pth"},
    "calibration": {"path": "calib/frames"},
    "engine": {
        "tensorrt": "8.6.1.6",
        "gpu": "NVIDIA GeForce GTX 1080 Ti",
        "compute_capability": "6.1",
        "dla_core": None,
        "int8_mode": "qdq",
    },
}
HERE_SAME = {
    "tensorrt": "8.6.1.6",
    "gpu": "NVIDIA GeForce GTX 1080 Ti",
    "compute_capability": "6.1",
    "dla_cores": 0,
}


def test_matching_machine_passes():
    assert compare_engine(BUILT, HERE_SAME) == ([], [])
    # another build of the same release does not load: TensorRT 8.6 says "expecting library
    # version 8.6.1.6 got 8.6.1.2, please rebuild"
    (err,) = compare_engine(BUILT, dict(HERE_SAME, tensorrt="8.6.1.2"))[0]
    assert "8.6.1.6" in err and "8.6.1.2" in err
    assert compare_engine(BUILT, dict(HERE_SAME, tensorrt="8.6.1"))[0] == []  # build unknown


def test_other_tensorrt_is_refused_naming_both_and_the_rebuild_command():
    facts = dict(HERE_SAME, tensorrt="10.3.0.30")
    with pytest.raises(EngineMismatchError) as err:
        check_engine(BUILT, facts, "models/m_int8.engine")
    msg = str(err.value)
    assert "TensorRT 8.6.1.6" in msg and "TensorRT 10.3.0.30" in msg
    assert "cifrenet-edge export" in msg and "--format engine" in msg
    assert "--output models/m_int8.engine" in msg and "--precision int8" in msg
    assert "--target trt10" in msg  # the TensorRT running here decides the target
    assert "'weights/cifrenet city.pth'" in msg  # shell-quoted: copy-paste safe
    m = dict(BUILT, source={"onnx": "models/m_int8.onnx"})
    with pytest.raises(EngineMismatchError, match=r"python3 -m cifrenet_edge\.trt\.build"):
        check_engine(m, facts, "models/m_int8.engine")
    assert "\n" not in msg


def test_other_architecture_is_refused():
    facts = {"tensorrt": "8.6.1.6", "gpu": "Orin", "compute_capability": "8.7", "dla_cores": 2}
    errors, _ = compare_engine(BUILT, facts)
    assert len(errors) == 1
    assert "GTX 1080 Ti (compute capability 6.1)" in errors[0]
    assert "Orin (compute capability 8.7)" in errors[0]


def test_same_architecture_other_model_only_warns():
    facts = dict(HERE_SAME, gpu="NVIDIA GeForce GTX 1080")
    errors, warnings = compare_engine(BUILT, facts)
    assert errors == [] and "GTX 1080" in warnings[0] and "rebuild" in warnings[0]
    assert check_engine(BUILT, facts, "m.engine") == warnings


def test_both_mismatches_reported_together():
    facts = {"tensorrt": "10.16.0", "gpu": "RTX 4090", "compute_capability": "8.9"}
    errors, _ = compare_engine(BUILT, facts)
    assert len(errors) == 2


def test_dla_engine_needs_a_dla_core():
    m = json.loads(json.dumps(BUILT))
    m["engine"].update(dla_core=1, compute_capability="8.7", gpu="Orin")
    facts = {"tensorrt": "8.6.1.6", "gpu": "Orin", "compute_capability": "8.7", "dla_cores": 1}
    errors, _ = compare_engine(m, facts)
    assert errors and "DLA core 1" in errors[0]
    assert "--dla-core 1" in rebuild_command(m, "x.engine")


def test_non_engine_or_incomplete_manifest_is_refused():
    assert compare_engine(dict(BUILT, kind="onnx"), HERE_SAME)[0]
    m = json.loads(json.dumps(BUILT))
    del m["engine"]["tensorrt"]
    assert "no TensorRT version" in compare_engine(m, HERE_SAME)[0][0]
    with pytest.raises(ModelFileError, match="has no manifest"):
        require_engine_manifest(None, "m.engine")


def test_rebuild_command_for_dynamic_and_calibrator():
    m = json.loads(json.dumps(BUILT))
    m["dynamic"] = {"min": [320, 180], "opt": [640, 360], "max": [1280, 720]}
    m["engine"]["int8_mode"] = "calibrator"
    cmd = rebuild_command(m, "m.engine")
    assert "--res 640x360 --dynamic --min-res 320x180 --max-res 1280x720" in cmd
    assert "--int8-mode calibrator" in cmd
    assert "--calib calib/frames" in cmd
