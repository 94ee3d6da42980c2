"""Short end-to-end run: train on synthetic scenes, it learns; evaluate through the Segmenter;
the INT8 gate passes a real INT8 model and fails a deliberately broken one."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from thresholds import check

from cifrenet_edge.accuracy.evaluate import evaluate, int8_gate
from cifrenet_edge.accuracy.metrics import ConfusionMatrix
from cifrenet_edge.data.datasets import open_dataset
from cifrenet_edge.errors import AccuracyGateError, DatasetError, ExportError

# held-out scenes: the on-the-fly val split (seeds 1000100..), never trained on
VAL = "synthetic:8@160x96,seed=100"
RES = (160, 96)


TRAIN = "synthetic:24@160x96,seed=100"


def _train(out: Path):
    """A short real training run on synthetic scenes (fixed seeds): ~15 s on a quiet core."""
    from cifrenet_edge.model.train import TrainConfig, train

    cfg = TrainConfig(
        data=TRAIN,
        iters=60,
        batch_size=4,
        crop=(96, 64),
        lr=0.02,  # short from-scratch run: a higher lr than the paper's learns in 60 steps
        threads=1,  # one thread: deterministic, and no OpenMP stalls on a busy machine
        output=str(out),
        seed=0,
        quiet=True,
    )
    return train(cfg)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("train_run"))


def _trivial_baseline() -> dict:
    """Predict the most frequent training class everywhere: what 'no learning' scores."""
    train = open_dataset(TRAIN, "train")
    counts = np.zeros(256, np.int64)
    for i in range(len(train)):
        counts += np.bincount(train[i][1].ravel(), minlength=256)
    majority = int(np.argmax(counts[:19]))
    val = open_dataset(VAL, "val")
    cm = ConfusionMatrix(19, val.classes)
    for i in range(len(val)):
        _, lab = val[i]
        cm.update(np.full_like(lab, majority), lab)
    return cm.result()


def _batch(spec: str, split: str):
    """A split as one float batch at RES (the deployment preprocessing) and its labels."""
    import torch

    from cifrenet_edge.preprocess import preprocess
    from cifrenet_edge.presets import get_preset

    p, ds = get_preset("cityscapes"), open_dataset(spec, split)
    items = [ds[i] for i in range(len(ds))]
    x = np.concatenate([preprocess(img, RES, p.mean_bgr, p.scale) for img, _ in items])
    y = np.stack([lab for _, lab in items]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def _with_population_bn(model, path: Path, meta: dict) -> Path:
    """Save ``model`` with BatchNorm statistics averaged over all training scenes.

    Why: after 60 steps of batch-4 crops, the running statistics are an exponential average
    of the last few batches, and the BatchNorms on 1x1 pooled maps (attention, DSP and MCIM
    global paths) estimate a variance from 4 values. That estimate, not the weights, makes
    the eval-mode result chaotic: 24 runs (4 seeds x 3 kernel sets x this schedule and a
    120-step one at lr 0.01) gave 1.8 to 12.7 eval-mode mIoU (an AVX2-only EPYC: 3.6) while
    their training losses ended within 1.35-1.60. Re-estimating the statistics as a
    cumulative average over the training set (precise BN) judges what the weights learned:
    8.2-12.0 mIoU over those same runs.
    """
    import torch

    from cifrenet_edge.model.weights import save_checkpoint

    x, _ = _batch(TRAIN, "train")
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over every batch below
    model.train()
    with torch.no_grad():
        for i in range(0, len(x) - 1, 4):
            model(x[i : i + 4])
    return save_checkpoint(model.eval(), path, meta)


def _learned(run) -> dict:
    """The trained weights and, as the 'no learning' control, the same seed's initial ones."""
    import torch

    from cifrenet_edge.model.cifrenet import CIFReNet
    from cifrenet_edge.model.weights import build_model, checkpoint_info

    meta = checkpoint_info(run.final)
    model, _ = build_model("cityscapes", run.final)
    out = run.output
    torch.manual_seed(0)  # train() seeds the model's initialisation with its seed (0)
    initial = CIFReNet("cityscapes")
    return {
        "trained": _with_population_bn(model, out / "population_bn.pth", meta),
        "initial": _with_population_bn(initial, out / "initial_population_bn.pth", meta),
    }


def _held_out_cross_entropy(ckpt: Path) -> float:
    import torch
    import torch.nn.functional as F

    from cifrenet_edge.model.weights import build_model

    model, _ = build_model("cityscapes", ckpt)
    x, y = _batch(VAL, "val")
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y, ignore_index=255))


@pytest.fixture(scope="module")
def learned(trained_run):
    return _learned(trained_run)


@pytest.fixture(scope="module")
def torch_eval(learned):
    return evaluate(learned["trained"], VAL, split="val", resolution=RES, device="cpu")


def learning_failures(losses, trained_eval: dict, trained_ce: float, initial_ce: float) -> list:
    """What says that this run did not learn; empty when it did.

    Each bound sits between what a learning run gave and what a broken one gives, measured
    over 4 seeds x 3 kernel sets (native AVX-512, AVX2, ATen default) on this problem:
    - the training loss (mean of the last 5 over the first 3) ends at 0.47-0.57: a zero
      learning rate or a detached loss leaves it near 1.0;
    - held-out cross-entropy against the untrained model's (both with population BatchNorm)
      is 0.44-0.62: no learning leaves it near 1.0, and a wrong label mapping in training
      raises it above 1.0, since the model then learns the wrong classes;
    - held-out mIoU 10.1-11.9 against the majority-class baseline's 2.5, pixel accuracy
      50-56 % against 30 % (a broken run: 1.1-1.3 mIoU, 5-7 %).
    The 120-step schedule at lr 0.01 stayed inside every bound too (CE ratio <= 0.54, mIoU
    >= 8.2, pixel accuracy >= 46 %).
    """
    failures = []
    ratio = float(np.mean(losses[-5:]) / np.mean(losses[:3]))
    if not check("train.loss_end_over_start", ratio, "<", 0.8):
        failures.append(f"the training loss fell only to {ratio:.2f} of its start")
    ce_ratio = trained_ce / initial_ce
    if not check("train.held_out_ce_vs_untrained", ce_ratio, "<", 0.8):
        failures.append(f"held-out cross-entropy {trained_ce:.3f} vs untrained {initial_ce:.3f}")
    base = _trivial_baseline()
    miou, bar = trained_eval["miou"], 2.0 * base["miou"] + 1.0
    if not check("train.held_out_miou", miou, ">", bar):
        failures.append(f"held-out mIoU {miou:.2f} <= {bar:.2f} (majority: {base['miou']:.2f})")
    acc, bar = trained_eval["pixel_accuracy"], base["pixel_accuracy"] + 5.0
    if not check("train.held_out_pixel_accuracy", acc, ">", bar):
        failures.append(f"held-out pixel accuracy {acc:.1f} % <= {bar:.1f} %")
    return failures


def test_short_training_learns(trained_run, learned, torch_eval):
    losses = trained_run.losses
    assert len(losses) == 60 and all(np.isfinite(losses))
    trained_ce = _held_out_cross_entropy(learned["trained"])
    initial_ce = _held_out_cross_entropy(learned["initial"])
    assert learning_failures(losses, torch_eval, trained_ce, initial_ce) == []
    assert torch_eval["images"] == 8 and torch_eval["backend"] == "torch"


def _detached(loss_fn):
    return lambda *a, **k: loss_fn(*a, **k).detach().requires_grad_()


def _shifted_labels(augment):
    def wrong(*a, **k):  # every class id moved by one: the model learns the wrong classes
        img, lab = augment(*a, **k)
        return img, np.where(lab == 255, lab, (lab.astype(np.int64) + 1) % 19).astype(lab.dtype)

    return wrong


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["zero lr", "detached loss", "wrong label mapping"])
def test_broken_training_is_caught(broken, tmp_path, monkeypatch):
    """The learning check has teeth: each way of breaking training fails it."""
    import cifrenet_edge.model.train as T

    if broken == "zero lr":
        monkeypatch.setattr(T, "poly_lr", lambda *a, **k: 0.0)
    elif broken == "detached loss":
        monkeypatch.setattr(T.F, "cross_entropy", _detached(T.F.cross_entropy))
    else:
        monkeypatch.setattr(T, "augment", _shifted_labels(T.augment))
    run = _train(tmp_path)
    monkeypatch.undo()
    ckpts = _learned(run)
    ev = evaluate(ckpts["trained"], VAL, split="val", resolution=RES, device="cpu")
    ce = _held_out_cross_entropy(ckpts["trained"]), _held_out_cross_entropy(ckpts["initial"])
    failures = learning_failures(run.losses, ev, *ce)
    assert failures, (broken, ev["miou"], ce)


def test_eval_is_deterministic(learned, torch_eval):
    again = evaluate(learned["trained"], VAL, split="val", resolution=RES, device="cpu")
    for key in ("miou", "pixel_accuracy", "per_class_iou", "pixels"):
        assert again[key] == torch_eval[key]


def test_eval_refuses_a_model_for_other_classes(tmp_path):
    from cifrenet_edge.model.cifrenet import CIFReNet
    from cifrenet_edge.model.weights import save_checkpoint

    ckpt = save_checkpoint(CIFReNet("camvid"), tmp_path / "camvid.pth")
    with pytest.raises(DatasetError) as exc:
        evaluate(ckpt, VAL, limit=1, device="cpu")
    text = str(exc.value)
    assert "11 classes" in text and "19" in text and "\n" not in text


@pytest.fixture(scope="module")
def exported(learned, synthetic_dataset_dir, tmp_path_factory):
    """FP32 ONNX, INT8 Q/DQ ONNX and a deliberately broken copy of the trained model."""
    import onnx
    from onnx import numpy_helper

    from cifrenet_edge.export import export_onnx
    from cifrenet_edge.quantize import quantize_onnx

    out = tmp_path_factory.mktemp("exported")
    fp32 = export_onnx(
        "cityscapes",
        weights=learned["trained"],
        res=RES,
        output=out / "fp32.onnx",
        verify_images=synthetic_dataset_dir / "images" / "val",
        quiet=True,
    ).path
    # a 60-step model has many near-tied logits, so per-class INT8/FP32 agreement is lower
    # than for a trained one; relax only quantize's own per-class gate: the mIoU gate is
    # what these tests are about
    int8 = quantize_onnx(
        fp32,
        calib=str(synthetic_dataset_dir / "images" / "train"),
        output=out / "int8.onnx",
        gates={"min_class_agreement": 0.5},
        quiet=True,
    )
    int8_path = Path(getattr(int8, "path", int8))
    # broken: the classifier's bias pushes one class everywhere (what a bad scale does)
    model = onnx.load(str(fp32))
    biases = [t for t in model.graph.initializer if len(t.dims) == 1 and t.dims[0] == 19]
    b = numpy_helper.to_array(biases[-1]).copy()
    b[2] += 40.0  # "building" wins everywhere
    biases[-1].CopyFrom(numpy_helper.from_array(b, biases[-1].name))
    broken = out / "broken.onnx"
    onnx.save(model, str(broken))
    shutil.copy(str(fp32) + ".json", str(broken) + ".json")
    return {"fp32": fp32, "int8": int8_path, "broken": broken}


def test_onnx_fp32_matches_torch_through_the_runtime(exported, torch_eval):
    onnx_eval = evaluate(exported["fp32"], VAL, device="cpu")
    assert onnx_eval["backend"] == "onnxruntime"
    gap = abs(onnx_eval["miou"] - torch_eval["miou"])
    assert check("eval.onnx_vs_torch_miou_gap", gap, "<", 1.0, 0.0)


def test_int8_gate_passes_a_real_int8_model(exported):
    summary = int8_gate(exported["int8"], exported["fp32"], VAL, max_drop=3.0, device="cpu")
    assert summary["passed"] and check("eval.int8_miou_drop", summary["miou_drop"], "<=", 3.0)
    assert summary["images"] == 8 and summary["flip_rate"] >= 0.0
    assert check("eval.int8_flip_rate", summary["flip_rate"], "<", 0.1, 0.0)


def test_int8_gate_fails_a_broken_model(exported):
    with pytest.raises(AccuracyGateError) as exc:
        int8_gate(exported["broken"], exported["fp32"], VAL, max_drop=1.0, device="cpu")
    assert isinstance(exc.value, ExportError)
    text = str(exc.value)
    assert "mIoU" in text and "--max-miou-drop" in text and "\n" not in text


def test_cli_eval_compare_writes_json(exported, tmp_path, capsys):
    from cifrenet_edge.cli import main

    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as ex:
        main(
            [
                "eval",
                str(exported["int8"]),
                "--data",
                VAL,
                "--compare",
                str(exported["fp32"]),
                "--limit",
                "2",
                "--json",
                str(out),
                "-q",
            ]
        )
    assert ex.value.code in (0, None)
    r = json.loads(out.read_text())
    assert r["images"] == 2 and "flip_rate" in r["compare"]
    assert set(r["compare"]["per_class_delta"]) == set(r["per_class_iou"])
    assert "pixel flip rate" in capsys.readouterr().out


def test_eval_on_a_split_without_labels_is_an_error(tmp_path, trained_run):
    import cv2

    root = tmp_path / "cs"
    img_dir = root / "leftImg8bit" / "test" / "berlin"
    gt_dir = root / "gtFine" / "test" / "berlin"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    cv2.imwrite(str(img_dir / "berlin_000000_000019_leftImg8bit.png"), np.zeros((48, 64, 3)))
    cv2.imwrite(str(gt_dir / "berlin_000000_000019_gtFine_labelIds.png"), np.zeros((48, 64)))
    with pytest.raises(DatasetError) as exc:
        evaluate(trained_run.final, f"cityscapes:{root}", "test", resolution=RES, device="cpu")
    assert "--split val" in str(exc.value)
