"""A model fine-tuned on a robot team's own classes exports and runs with its class names."""

import numpy as np
import pytest
import torch

from cifrenet_edge import CIFReNet, Segmenter
from cifrenet_edge.errors import WeightsError
from cifrenet_edge.export import export_onnx
from cifrenet_edge.model.weights import save_checkpoint

CLASSES = ["floor", "wall", "person"]


@pytest.fixture(scope="module")
def custom_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = CIFReNet("camvid", num_classes=len(CLASSES))
    path = tmp_path_factory.mktemp("custom") / "robot.pth"
    return save_checkpoint(model, path, {"classes": CLASSES})


def test_export_and_runtime_carry_custom_classes(custom_checkpoint, tmp_path):
    result = export_onnx(
        preset="camvid",
        weights=custom_checkpoint,
        res=(128, 96),
        output=tmp_path / "r.onnx",
        quiet=True,
    )
    assert result.manifest["classes"] == CLASSES and result.manifest["num_classes"] == 3
    assert len(result.manifest["palette_rgb"]) == 3
    frame = np.full((120, 160, 3), 90, np.uint8)
    for path in (result.path, custom_checkpoint):
        with Segmenter.open(path, threads=1) as seg:
            assert seg.classes == CLASSES
            mask = seg.predict(frame)
            assert mask.shape == (120, 160) and int(mask.max()) < 3


def test_custom_class_count_without_names_is_refused(tmp_path):
    path = save_checkpoint(CIFReNet("camvid", num_classes=4), tmp_path / "anon.pth")
    with pytest.raises(WeightsError, match="names none"):
        export_onnx(
            preset="camvid", weights=path, res=(128, 96), output=tmp_path / "a.onnx", quiet=True
        )
    assert not (tmp_path / "a.onnx").exists()
