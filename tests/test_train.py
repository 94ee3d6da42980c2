"""Training: batch-1 refusal, a real step at batch 2, safe checkpoints, exact resume."""

import pytest
import torch

from cifrenet_edge.errors import ConfigError, WeightsError
from cifrenet_edge.model.train import TrainConfig, poly_lr, train
from cifrenet_edge.model.weights import build_model

DATA = "synthetic:6@96x64,seed=3"


def _cfg(tmp_path, name, **kw) -> TrainConfig:
    base = dict(
        data=DATA,
        iters=2,
        batch_size=2,
        crop=(64, 64),
        output=str(tmp_path / name),
        quiet=True,
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_batch_size_one_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ConfigError) as exc:
        train(_cfg(tmp_path, "b1", batch_size=1))
    text = str(exc.value)
    assert "BatchNorm" in text and "1x1" in text and "--batch-size 2" in text
    assert "\n" not in text
    assert not (tmp_path / "b1").exists()  # refused before anything was written


def test_cli_refuses_batch_one(tmp_path, capsys):
    from cifrenet_edge.cli import main

    with pytest.raises(SystemExit) as ex:
        main(["train", "--data", DATA, "--iters", "1", "--batch-size", "1", "-o", str(tmp_path)])
    assert ex.value.code == 2
    assert capsys.readouterr().err.startswith("error: batch size 1 cannot train")


def test_bad_training_options(tmp_path):
    with pytest.raises(ConfigError):
        train(_cfg(tmp_path, "x", iters=None, epochs=None))
    with pytest.raises(ConfigError):
        train(_cfg(tmp_path, "x", lr=0.0))


def test_poly_schedule():
    assert poly_lr(0.005, 0, 100) == 0.005
    assert poly_lr(0.005, 100, 100) == 0.0
    assert poly_lr(0.005, 50, 100) == pytest.approx(0.005 * 0.5**0.9)


def test_training_step_at_batch_two_writes_safe_checkpoints(tmp_path):
    res = train(_cfg(tmp_path, "run", iters=2, val_every=2, val_limit=1))
    assert res.iterations == 2 and len(res.losses) == 2
    assert all(0.0 < v < 10.0 for v in res.losses)
    last = torch.load(str(res.last), map_location="cpu", weights_only=True)
    assert last["iteration"] == 2 and "optimizer" in last and last["preset"] == "cityscapes"
    assert last["optimizer"]["param_groups"][0]["momentum"] == 0.9
    assert last["optimizer"]["param_groups"][0]["weight_decay"] == 5e-4
    final = torch.load(str(res.final), map_location="cpu", weights_only=True)
    assert "optimizer" not in final and final["classes"][0] == "road"
    _model, meta = build_model("cityscapes", weights=res.model_path)
    assert meta["trained"] and meta["iteration"] == 2
    assert res.best is not None and res.val and 0.0 <= res.val[0]["miou"] <= 100.0
    assert (tmp_path / "run" / "history.json").is_file()


def test_resume_continues_exactly(tmp_path):
    """An interrupted run resumed from last.pth ends with the weights of an uninterrupted one."""
    straight = train(_cfg(tmp_path, "straight", iters=4))

    def stop_at_three(ev):
        if ev.get("iteration") == 3 and "loss" in ev:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, "cut", iters=4, save_every=2), progress=stop_at_three)
    assert torch.load(str(tmp_path / "cut" / "last.pth"), weights_only=True)["iteration"] == 2
    resumed = train(_cfg(tmp_path, "cut", iters=4, resume=str(tmp_path / "cut" / "last.pth")))
    assert resumed.iterations == 4
    assert resumed.losses[:2] == straight.losses[:2] and len(resumed.losses) == 4
    a = torch.load(str(straight.final), weights_only=True)["state_dict"]
    b = torch.load(str(resumed.final), weights_only=True)["state_dict"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5, rtol=1e-4), k


def test_resume_needs_optimizer_state(tmp_path):
    res = train(_cfg(tmp_path, "a", iters=1))
    with pytest.raises(WeightsError) as exc:
        train(_cfg(tmp_path, "b", iters=2, resume=str(res.final)))
    assert "last.pth" in str(exc.value)


def test_custom_class_folder_trains_a_model_with_its_classes(tmp_path):
    import cv2
    import numpy as np

    root = tmp_path / "robot"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("floor\nobstacle\nperson\n")
    rng = np.random.default_rng(0)
    for k in range(3):
        lab = np.zeros((64, 80), np.uint8)
        lab[: 20 + 5 * k] = 1
        lab[40:, 30:40] = 2
        img = (rng.integers(0, 40, (64, 80, 3)) + lab[..., None] * 80).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"{k}.png"), img)
        cv2.imwrite(str(root / "masks" / f"{k}.png"), lab)
    res = train(_cfg(tmp_path, "custom", data=f"folder:{root}", iters=1, crop=(64, 64)))
    ckpt = torch.load(str(res.final), weights_only=True)
    assert ckpt["num_classes"] == 3 and ckpt["classes"] == ["floor", "obstacle", "person"]
    model, _ = build_model("cityscapes", weights=res.final)
    assert model.num_classes == 3
    # fine-tuning a 19-class checkpoint on the 3-class data: all but the classifier carried over
    from cifrenet_edge.model.cifrenet import CIFReNet
    from cifrenet_edge.model.train import init_from_checkpoint

    city = train(_cfg(tmp_path, "city", iters=1, seed=5))
    fresh = CIFReNet("cityscapes", num_classes=3)
    info = init_from_checkpoint(fresh, city.final)
    src = torch.load(str(city.final), weights_only=True)["state_dict"]
    assert torch.equal(fresh.state_dict()["backbone.stem.0.weight"], src["backbone.stem.0.weight"])
    assert info["fresh"] and all("weight" in k or "bias" in k for k in info["fresh"])
    assert len(info["fresh"]) == 2  # the classifier's weight and bias only
    tuned = train(_cfg(tmp_path, "tuned", data=f"folder:{root}", iters=1, weights=str(city.final)))
    assert torch.load(str(tuned.final), weights_only=True)["num_classes"] == 3


def test_imagenet_file_that_is_not_mobilenet_is_refused(tmp_path):
    from cifrenet_edge.model.cifrenet import CIFReNet
    from cifrenet_edge.model.weights import save_checkpoint

    not_tv = save_checkpoint(CIFReNet("cityscapes"), tmp_path / "not_imagenet.pth")
    with pytest.raises(WeightsError) as exc:
        train(_cfg(tmp_path, "in", imagenet=str(not_tv)))
    assert "MobileNetV2" in str(exc.value)
