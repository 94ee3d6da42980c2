"""The manifest type: every file the toolkit writes reads back into it and out unchanged, its
fields are typed, a stage's change is a new manifest, and a bad or newer file is one line."""

import dataclasses
import json

import onnx
import pytest
from support.trt_standin import _manifest

from cifrenet_edge.errors import ConfigError, ModelFileError
from cifrenet_edge.manifest import (
    MANIFEST_FORMAT,
    DynamicRange,
    Manifest,
    read_manifest,
    write_manifest,
)


def _same_json(a, b) -> bool:
    """Equal as written (1 and 1.0 differ here, as they do in the file)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_an_export_reads_into_the_type_and_writes_back_the_same_json(small_fp32_export):
    doc = json.loads(small_fp32_export.manifest_path.read_text())
    m = Manifest.from_dict(doc)
    assert _same_json(m.to_dict(), doc)
    assert isinstance(small_fp32_export.manifest, Manifest) and small_fp32_export.manifest == doc
    props = {p.key: p.value for p in onnx.load(str(small_fp32_export.path)).metadata_props}
    assert _same_json(json.loads(props["cifrenet_edge"]), doc)  # the embedded copy, the same


@pytest.mark.parametrize(
    "kind", ["dynamic onnx", "int8", "fp16", "engine", "checkpoint", "older dynamic"]
)
def test_every_kind_the_toolkit_writes_round_trips(kind, tmp_path, monkeypatch):
    """What each stage writes, read back and written again, byte-identical JSON."""
    if kind == "dynamic onnx":
        doc = _manifest("fp32", dynamic=True)
        doc["dynamic"].update(verified=[[128, 64], [320, 192]], verified_batches=[1, 2])
    elif kind == "older dynamic":  # keys inside dynamic this version does not know
        doc = _manifest("fp32", dynamic=True)
        doc["dynamic"]["note"] = {"from": "a newer toolkit"}
    elif kind == "checkpoint":
        from cifrenet_edge.model.weights import build_model, save_checkpoint
        from cifrenet_edge.runtime.backends.torch import derive_manifest

        model, _ = build_model("camvid")
        ckpt = save_checkpoint(model, tmp_path / "c.pth", {"trained": False})
        doc = derive_manifest(str(ckpt)).to_dict()
    else:
        base = Manifest.from_dict(_manifest("fp32"))
        changes = {
            "int8": {
                "precision": "int8",
                "parity": {"agreement": 0.93, "variants": {}},
                "calibration": {"count": 60},
                "source": {"onnx": "m_fp32.onnx"},
            },
            "fp16": {"precision": "fp16", "fp16": {"io": "float32"}, "parity": None},
            "engine": {"kind": "engine", "engine": {"tensorrt": "10.3.0.30", "dla_core": None}},
        }[kind]
        doc = base.with_(**changes).to_dict()
    m = Manifest.from_dict(doc)
    assert _same_json(m.to_dict(), doc), kind
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    write_manifest(model, m)
    assert _same_json(json.loads((tmp_path / "m.onnx.json").read_text()), doc)


def test_fields_are_typed():
    m = Manifest.from_dict(_manifest("int8"))
    assert m.resolution == (160, 96) and m.dynamic is None and m.call_batch == 1
    assert isinstance(m.classes, tuple) and len(m.classes) == m.num_classes == 19
    assert all(isinstance(v, float) for v in m.mean_bgr) and isinstance(m.scale, float)
    assert m.nominal_wh == (160, 96) and m.input_wh() == (160, 96)
    d = Manifest.from_dict(_manifest("fp32", dynamic=True))
    assert d.dynamic == DynamicRange(min=(128, 64), opt=(160, 96), max=(320, 192), batch=(1, 1, 2))
    assert d.nominal_wh == (160, 96) and d.call_batch == 1 and d.dynamic.max_batch == 2
    assert d.input_wh("200x100") == (200, 100)


def test_resolution_outside_the_model_is_one_line():
    with pytest.raises(ConfigError, match="fixed 160x96, not 320x192: export it with --dynamic"):
        Manifest.from_dict(_manifest("fp32")).input_wh((320, 192))
    with pytest.raises(ConfigError, match=r"outside the model's range 128x64 \.\. 320x192"):
        Manifest.from_dict(_manifest("fp32", dynamic=True)).input_wh("640x360")


def test_a_stage_record_is_a_new_manifest_and_unknown_keys_travel(tmp_path):
    doc = dict(_manifest("fp32"), future_field={"added": "by a newer toolkit"}, opset=17)
    m = Manifest.from_dict(doc)
    assert m.extra["future_field"] == {"added": "by a newer toolkit"} and m.extra["opset"] == 17
    q = m.with_(precision="int8", parity={"agreement": 0.93}, accuracy_gate={"passed": True})
    assert (m.precision, m.parity) == ("fp32", None)  # the source is unchanged
    assert q.precision == "int8" and q.parity == {"agreement": 0.93}
    assert q.extra["accuracy_gate"] == {"passed": True} and q.extra["future_field"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.precision = "fp16"  # type: ignore[misc]
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read")
    write_manifest(model, q)
    back = read_manifest(model)
    assert back == q and back.to_dict() == q.to_dict() and back.extra["future_field"]
    assert "parity" not in m.with_(parity=None).to_dict()  # a record dropped is not written


def test_the_json_view_is_read_only_and_compares_with_dicts():
    doc = _manifest("fp16")
    m = Manifest.from_dict(doc)
    assert m["classes"] == doc["classes"] and m.get("missing") is None and m == doc
    assert dict(m, precision="int8")["precision"] == "int8"  # a plain copy to change
    with pytest.raises(TypeError):
        m["precision"] = "int8"  # type: ignore[index]
    doc["weights"]["path"] = "changed after reading"  # the manifest owns its records
    m["weights"]["path"] = "changed through the view"
    assert m.weights_path == "weights/cifrenet.pth"


def test_with_checks_and_types_what_it_makes(tmp_path):
    m = Manifest.from_dict(_manifest("fp32"))
    assert m.with_(resolution=[320, 192]).input_wh("320x192") == (320, 192)  # typed again
    d = m.with_(resolution=None, dynamic=DynamicRange((64, 64), (160, 96), (640, 360)))
    assert d.dynamic is not None and d.to_dict()["dynamic"]["opt"] == [160, 96]
    with pytest.raises(ModelFileError, match="neither a resolution nor a dynamic range"):
        m.with_(resolution=None)
    with pytest.raises(ModelFileError, match="3 class names for 19 classes"):
        m.with_(classes=["a", "b", "c"])


@pytest.mark.parametrize(
    "change, words",
    [
        ({"format": "cifrenet-edge/2"}, "format 'cifrenet-edge/2' (this toolkit reads"),
        ({"num_classes": "many"}, "a field has the wrong type"),
        ({"resolution": None}, "neither a resolution nor a dynamic range"),
        ({"mean_bgr": [1, 2]}, "mean_bgr must have 3 values"),
    ],
)
def test_a_bad_or_newer_manifest_is_one_line_naming_the_fix(change, words, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    (tmp_path / "m.onnx.json").write_text(json.dumps(dict(_manifest("fp32"), **change)))
    with pytest.raises(ModelFileError, match=r"re-export|upgrade") as err:
        read_manifest(model)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert MANIFEST_FORMAT == "cifrenet-edge/1"
