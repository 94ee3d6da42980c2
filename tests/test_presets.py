"""Presets: one source of truth, mirrored in models/presets.json."""

import json
from pathlib import Path

import pytest

from cifrenet_edge.errors import ConfigError
from cifrenet_edge.presets import get_preset, parse_resolution, presets_document

ROOT = Path(__file__).resolve().parents[1]


def test_models_presets_json_in_sync():
    on_disk = json.loads((ROOT / "models" / "presets.json").read_text())
    assert on_disk == json.loads(json.dumps(presets_document())), (
        "regenerate: python -m cifrenet_edge.presets > models/presets.json"
    )


def test_cityscapes_classes_from_official_table():
    p = get_preset("cityscapes")
    assert p.num_classes == len(p.classes) == len(p.palette_rgb) == 19
    assert p.classes[0] == "road" and p.classes[18] == "bicycle"
    assert p.palette_rgb[0] == (128, 64, 128)
    assert p.mean_bgr == (73.16, 82.91, 72.39) and p.scale == pytest.approx(1 / 255)


@pytest.mark.parametrize("text, wh", [("640x360", (640, 360)), ("1024X512", (1024, 512))])
def test_parse_resolution(text, wh):
    assert parse_resolution(text) == wh


@pytest.mark.parametrize("text", ["640", "640x", "x360", "640x360x3", "-640x360", "a x b"])
def test_parse_resolution_rejects(text):
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        parse_resolution(text)
