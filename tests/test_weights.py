"""Checkpoints: safe formats, readable mismatch errors, exact torchvision ImageNet import."""

import pickle

import pytest
import torch
import torch.nn.functional as F

from cifrenet_edge import CIFReNet
from cifrenet_edge.errors import WeightsError
from cifrenet_edge.model.weights import (
    build_model,
    load_imagenet_backbone,
    load_weights,
    save_checkpoint,
)

# torchvision mobilenet_v2 inverted-residual settings (t, c, n, s) after the stem
TV_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _bn(prefix, c, g):
    return {
        f"{prefix}.weight": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.bias": torch.randn(c, generator=g) * 0.1,
        f"{prefix}.running_mean": torch.randn(c, generator=g) * 0.1,
        f"{prefix}.running_var": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(100),
    }


def torchvision_layout_state(seed=0):
    """A state dict with exactly torchvision's mobilenet_v2 key names and shapes."""
    g = torch.Generator().manual_seed(seed)
    sd = {"features.0.0.weight": torch.randn(32, 3, 3, 3, generator=g) * 0.3}
    sd.update(_bn("features.0.1", 32, g))
    k, cin, strides = 1, 32, {}
    for t, c, n, s in TV_SETTINGS:
        for i in range(n):
            hidden = cin * t
            p = f"features.{k}.conv"
            if t == 1:
                sd[f"{p}.0.0.weight"] = torch.randn(hidden, 1, 3, 3, generator=g) * 0.3
                sd.update(_bn(f"{p}.0.1", hidden, g))
                sd[f"{p}.1.weight"] = torch.randn(c, hidden, 1, 1, generator=g) * 0.3
                sd.update(_bn(f"{p}.2", c, g))
            else:
                sd[f"{p}.0.0.weight"] = torch.randn(hidden, cin, 1, 1, generator=g) * 0.3
                sd.update(_bn(f"{p}.0.1", hidden, g))
                sd[f"{p}.1.0.weight"] = torch.randn(hidden, 1, 3, 3, generator=g) * 0.3
                sd.update(_bn(f"{p}.1.1", hidden, g))
                sd[f"{p}.2.weight"] = torch.randn(c, hidden, 1, 1, generator=g) * 0.3
                sd.update(_bn(f"{p}.3", c, g))
            strides[k] = s if i == 0 else 1
            cin, k = c, k + 1
    sd["features.18.0.weight"] = torch.randn(1280, 320, 1, 1, generator=g)
    sd.update(_bn("features.18.1", 1280, g))
    sd["classifier.1.weight"] = torch.randn(1000, 1280, generator=g)
    sd["classifier.1.bias"] = torch.randn(1000, generator=g)
    return sd, strides


def _tv_forward_to_stride8(sd, strides, x):
    """torchvision's features[0:7] computed directly from its state dict (eval mode)."""

    def bn(x, p):
        return F.batch_norm(
            x,
            sd[f"{p}.running_mean"],
            sd[f"{p}.running_var"],
            sd[f"{p}.weight"],
            sd[f"{p}.bias"],
            False,
            0.0,
            1e-5,
        )

    x = F.relu6(bn(F.conv2d(x, sd["features.0.0.weight"], stride=2, padding=1), "features.0.1"))
    for k in range(1, 7):
        p = f"features.{k}.conv"
        inp = x
        if k == 1:
            w = sd[f"{p}.0.0.weight"]
            x = F.relu6(bn(F.conv2d(x, w, padding=1, groups=w.shape[0]), f"{p}.0.1"))
            x = bn(F.conv2d(x, sd[f"{p}.1.weight"]), f"{p}.2")
        else:
            x = F.relu6(bn(F.conv2d(x, sd[f"{p}.0.0.weight"]), f"{p}.0.1"))
            w = sd[f"{p}.1.0.weight"]
            x = F.relu6(
                bn(F.conv2d(x, w, stride=strides[k], padding=1, groups=w.shape[0]), f"{p}.1.1")
            )
            x = bn(F.conv2d(x, sd[f"{p}.2.weight"]), f"{p}.3")
        if strides[k] == 1 and inp.shape == x.shape:
            x = x + inp
    return x


def test_torchvision_import_is_exact(tmp_path):
    sd, strides = torchvision_layout_state()
    path = tmp_path / "mobilenet_v2-imagenet.pth"
    torch.save(sd, path)
    model = CIFReNet("cityscapes").eval()
    assert load_imagenet_backbone(model, path) == len(sd) - 6 - 2  # minus features.18, classifier
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        ours = model.backbone.stem(x)
        for stage in model.backbone.stages[:3]:
            ours = stage(ours)
        ref = _tv_forward_to_stride8(sd, strides, x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # The dilated stages take the same tensors (dilation changes padding, not weights).
    own = model.state_dict()
    assert torch.equal(own["backbone.stages.6.0.project.0.weight"], sd["features.17.conv.2.weight"])


def test_torchvision_import_rejects_other_files(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(WeightsError, match="MobileNetV2"):
        load_imagenet_backbone(CIFReNet(), path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_round_trip(tmp_path, suffix):
    torch.manual_seed(3)
    model = CIFReNet("camvid").eval()
    path = save_checkpoint(model, tmp_path / f"ckpt{suffix}", {"epoch": 7})
    loaded, meta = build_model("camvid", weights=path)
    assert meta["trained"] is True and str(meta["epoch"]) == "7"
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert not list(tmp_path.glob("*.partial"))


def test_wrong_preset_gives_one_readable_diff(tmp_path):
    path = save_checkpoint(CIFReNet("camvid"), tmp_path / "camvid.pth")
    with pytest.raises(WeightsError) as err:
        load_weights(CIFReNet("cityscapes"), path)
    msg = str(err.value)
    assert "mis-shaped" in msg and "head.classifier.weight" in msg
    assert "--preset camvid" in msg and "\n" not in msg


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = CIFReNet("helen").state_dict()
    state.pop("lrm.dw.0.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"1 missing: lrm\.dw\.0\.weight.*1 unexpected"):
        load_weights(CIFReNet("helen"), path)


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Payload()}, f, protocol=2)
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_weights(CIFReNet(), path)
    assert "pickled code ran" not in capsys.readouterr().out


def test_missing_file_and_garbage(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_model("cityscapes", weights=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights"):
        build_model("cityscapes", weights=junk)
