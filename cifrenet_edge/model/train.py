"""Training and fine-tuning with the paper's protocol (section IV-A, the public code's batch 4).

SGD (momentum 0.9, weight decay 5e-4), learning rate 0.005 with poly decay (power 0.9)
per iteration, pixel-wise cross-entropy ignoring label 255, and the augmentation of
``data.transforms.augment`` (scale 0.5-1.5, horizontal flip, rotation +-3 degrees, crop).
Inputs are normalised by ``runtime.preprocess`` -- the function deployment uses -- so a
trained model can never see one normalisation in training and another on the robot.

Checkpoints are written with ``weights.save_checkpoint`` (a ``.pth`` that
``torch.load(weights_only=True)`` reads): ``last.pth`` carries the optimizer state and
iteration for ``--resume`` (tensors and primitives only, no pickled objects), ``best.pth``
/ ``final.pth`` carry only weights and plain metadata (what export and the runtime open).

Batch size 1 is refused: the channel attention, the DSP global paths and the MCIM global
branch apply BatchNorm to 1x1 pooled maps, which then hold one value per channel, and
BatchNorm cannot compute a batch variance from one value.
"""

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .._io import make_dir, write_json_atomic
from ..accuracy.metrics import ConfusionMatrix
from ..data.datasets import SegDataset, open_dataset
from ..data.transforms import augment
from ..errors import ConfigError, WeightsError
from ..preprocess import preprocess
from ..presets import IGNORE_INDEX, get_preset
from .cifrenet import CIFReNet
from .weights import load_imagenet_backbone, load_weights, save_checkpoint

BATCH1_REASON = (
    "batch size 1 cannot train CIFReNet: its attention, DSP and MCIM global branches apply "
    "BatchNorm to 1x1 pooled maps, which hold one value per channel at batch 1, so BN has no "
    "variance to normalise with; use --batch-size 2 or more (the paper's code uses 4)"
)


@dataclass
class TrainConfig:
    """Everything that defines a run; saved in every checkpoint (plain values only)."""

    data: str
    preset: str = "cityscapes"
    iters: Optional[int] = None
    epochs: Optional[int] = None
    batch_size: int = 4
    crop: Optional[Tuple[int, int]] = None
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    scale_range: Tuple[float, float] = (0.5, 1.5)
    max_rotation: float = 3.0
    flip: bool = True
    imagenet: Optional[str] = None
    weights: Optional[str] = None
    resume: Optional[str] = None
    output: str = "runs/train"
    val_every: int = 0
    val_split: str = "val"
    val_limit: Optional[int] = None
    val_res: Optional[Tuple[int, int]] = None
    seed: int = 0
    threads: Optional[int] = None
    workers: int = 0
    device: str = "auto"
    save_every: int = 0
    quiet: bool = False

    def plain(self) -> Dict[str, Any]:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass
class TrainResult:
    """Where the weights went and how the run went."""

    output: Path
    final: Path
    best: Optional[Path]
    last: Path
    iterations: int
    losses: List[float] = field(default_factory=list)
    val: List[Dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def model_path(self) -> Path:
        """The checkpoint to deploy: best validation mIoU if validated, else the final one."""
        return self.best or self.final


def poly_lr(base: float, it: int, total: int, power: float = 0.9) -> float:
    """The paper's schedule: base * (1 - it / total) ** power."""
    return base * (1.0 - min(it, total) / float(total)) ** power


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: torch sees no CUDA device; use --device cpu")
    return torch.device(name)


class _Augmented(torch.utils.data.Dataset):
    """Dataset items -> augmented, preprocessed tensors; item (index, seed) for reproducibility."""

    def __init__(self, ds: SegDataset, cfg: TrainConfig, crop: Tuple[int, int], mean, scale):
        self.ds, self.cfg, self.crop, self.mean, self.scale = ds, cfg, crop, mean, scale

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        img, lab = self.ds[index]
        rng = np.random.default_rng(seed)
        img, lab = augment(
            img,
            lab,
            self.crop,
            rng,
            self.mean,
            self.cfg.scale_range,
            self.cfg.max_rotation,
            self.cfg.flip,
        )
        x = preprocess(img, self.crop, self.mean, self.scale)[0]
        return torch.from_numpy(x), torch.from_numpy(lab.astype(np.int64))


def _batches(n: int, batch: int, seed: int, start_iter: int, total: int) -> Iterator[List]:
    """Epoch-wise shuffled batches of (index, augmentation seed), resumable at any iteration.

    Iteration ``it`` always sees the same images and augmentations whether the run was
    resumed or not: the epoch permutation and each item's seed derive from (seed, epoch, it).
    """
    per_epoch = max(1, n // batch) if n >= batch else 1
    it = start_iter
    while it < total:
        epoch, pos = divmod(it, per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        if n < batch:  # tiny dataset: sample with replacement so a batch is always full
            perm = np.random.default_rng([seed, epoch]).integers(0, n, batch * per_epoch)
        idx = perm[pos * batch : (pos + 1) * batch]
        yield [(int(i), int(seed * 1_000_003 + it * 97 + j)) for j, i in enumerate(idx)]
        it += 1


def _as_sampler(gen: Iterator[List]) -> torch.utils.data.Sampler:
    class _S(torch.utils.data.Sampler):
        def __iter__(self):
            return gen

        def __len__(self) -> int:  # pragma: no cover - DataLoader never needs it here
            return 0

    return _S()


@torch.no_grad()
def evaluate_torch(
    model: torch.nn.Module,
    ds: SegDataset,
    device: torch.device,
    num_classes: int,
    classes: Sequence[str],
    limit: Optional[int] = None,
    res: Optional[Tuple[int, int]] = None,
) -> Dict[str, Any]:
    """Validation during training: model at ``res`` (default: each image's size), logits
    resized bilinearly to the label size, argmax (the reference post-processing)."""
    was_training = model.training
    model.eval()
    preset = model.preset  # type: ignore[attr-defined]
    cm = ConfusionMatrix(num_classes, classes)
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in range(n):
        img, lab = ds[i]
        wh = res or (img.shape[1], img.shape[0])
        x = torch.from_numpy(preprocess(img, wh, preset.mean_bgr, preset.scale)).to(device)
        logits = model(x)
        if logits.shape[-2:] != lab.shape:
            logits = F.interpolate(logits, size=lab.shape, mode="bilinear", align_corners=False)
        pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
        cm.update(pred, lab)
    model.train(was_training)
    return cm.result()


def _classes_for(ds: SegDataset, preset_name: str) -> Tuple[Optional[int], List[str]]:
    """num_classes override (None = the preset's) and the class names the model predicts."""
    p = get_preset(preset_name)
    if tuple(ds.classes) == tuple(p.classes):
        return None, list(p.classes)
    if ds.preset and ds.preset != p.name and len(ds.classes) == get_preset(ds.preset).num_classes:
        raise ConfigError(
            f"the dataset is labelled for preset {ds.preset!r} but --preset is {p.name!r}: "
            f"pass --preset {ds.preset}"
        )
    return len(ds.classes), list(ds.classes)


def init_from_checkpoint(model: CIFReNet, path: Path) -> Dict[str, Any]:
    """Fine-tuning start: copy every tensor whose name and shape fit, report the rest.

    A Cityscapes model fine-tuned on a robot's own classes keeps its backbone, LRM, MCIM and
    head; only the final classifier (num_classes outputs) differs in shape and starts fresh.
    Nothing fitting at all is an error (wrong file).
    """
    from .weights import _read_state, _strip_prefix

    state = _strip_prefix(_read_state(Path(path).expanduser())["state_dict"])
    own = model.state_dict()
    fit = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fit:
        raise WeightsError(
            f"no tensor of {path} fits a CIFReNet ({model.preset.name}): give a checkpoint "
            "saved by cifrenet-edge train or weights.save_checkpoint"
        )
    model.load_state_dict(fit, strict=False)
    skipped = sorted(k for k in own if k not in fit)
    return {"loaded": len(fit), "fresh": skipped}


def _resume_state(path: Path, model: CIFReNet) -> Dict[str, Any]:
    if not path.is_file():
        raise WeightsError(
            f"--resume {path} does not exist: pass the last.pth of the run to continue"
        )
    meta = load_weights(model, path)
    if "optimizer" not in meta or "iteration" not in meta:
        raise WeightsError(
            f"{path} holds weights but no optimizer state/iteration: resume from the run's "
            "last.pth, or pass it as --weights to fine-tune from it in a new run"
        )
    return meta


def train(
    cfg: TrainConfig, progress: Optional[Callable[[Dict[str, Any]], None]] = None
) -> TrainResult:
    """Run (or resume) a training run; returns the checkpoints and the loss/val history."""
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch-size {cfg.batch_size}: must be at least 2")
    if cfg.batch_size == 1:
        raise ConfigError(BATCH1_REASON)
    if cfg.lr <= 0:
        raise ConfigError(f"--lr {cfg.lr}: the learning rate must be positive (paper: 0.005)")
    preset = get_preset(cfg.preset)
    crop = tuple(cfg.crop) if cfg.crop else preset.train_crop_wh
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    else:  # one thread per core; hyper-threads and oversubscription only slow convs down
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)

    train_ds = open_dataset(cfg.data, "train")
    if len(train_ds) < 1:
        raise ConfigError(f"{train_ds.describe()} is empty: nothing to train on")
    val_ds = open_dataset(cfg.data, cfg.val_split) if cfg.val_every else None
    num_classes, classes = _classes_for(train_ds, preset.name)
    per_epoch = max(1, len(train_ds) // cfg.batch_size)
    if cfg.iters:
        total = int(cfg.iters)
    elif cfg.epochs:
        total = int(cfg.epochs) * per_epoch
    else:
        raise ConfigError("give --iters N or --epochs N: how long to train")
    if total < 1:
        raise ConfigError(f"{total} iterations: give --iters or --epochs of at least 1")

    model = CIFReNet(preset.name, num_classes=num_classes)
    start, history, val_hist, best_miou = 0, [], [], -1.0
    resume_meta: Dict[str, Any] = {}
    if cfg.resume:
        resume_meta = _resume_state(Path(cfg.resume).expanduser(), model)
        start = int(resume_meta["iteration"])
        history = list(resume_meta.get("losses", []))
        val_hist = list(resume_meta.get("val_history", []))
        best_miou = float(resume_meta.get("best_miou", -1.0))
        total = int(resume_meta.get("total_iters", total)) if not cfg.iters else total
    else:
        if cfg.imagenet and cfg.weights:
            raise ConfigError("give --imagenet or --weights, not both: --weights holds a backbone")
        if cfg.imagenet:
            load_imagenet_backbone(model, Path(cfg.imagenet))
        elif cfg.weights:
            info = init_from_checkpoint(model, Path(cfg.weights))
            if info["fresh"] and not cfg.quiet:
                print(
                    f"fine-tuning from {cfg.weights}: {info['loaded']} tensors loaded, "
                    f"{len(info['fresh'])} start fresh ({', '.join(info['fresh'][:3])})"
                )
    model.to(device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    if resume_meta:
        optimizer.load_state_dict(resume_meta["optimizer"])
        if torch.is_tensor(resume_meta.get("torch_rng")):  # dropout continues its stream
            torch.set_rng_state(resume_meta["torch_rng"])
        for state in optimizer.state.values():
            for k, v in state.items():
                if torch.is_tensor(v):
                    state[k] = v.to(device)

    out = make_dir(cfg.output, "run folder")
    meta_common = {"data": str(cfg.data), "classes": classes, "train_config": cfg.plain()}

    def save(path: Path, it: int, with_optimizer: bool, extra: Optional[Dict] = None) -> Path:
        e = {**meta_common, "iteration": it, "total_iters": total, **(extra or {})}
        if with_optimizer:
            e.update(
                optimizer=optimizer.state_dict(),
                losses=history,
                val_history=val_hist,
                best_miou=best_miou,
                torch_rng=torch.get_rng_state(),
            )
        return save_checkpoint(model, path, e)

    mean, scale = preset.mean_bgr, preset.scale
    loader = torch.utils.data.DataLoader(
        _Augmented(train_ds, cfg, crop, mean, scale),
        batch_sampler=_as_sampler(_batches(len(train_ds), cfg.batch_size, cfg.seed, start, total)),
        num_workers=int(cfg.workers),
        pin_memory=device.type == "cuda",
        # its own generator: starting an epoch must not draw from the global RNG that
        # dropout uses, or a resumed run's dropout masks would shift against the original
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    bar = None
    if not cfg.quiet:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True)
    t0 = time.perf_counter()
    it = start
    best_path: Optional[Path] = out / "best.pth" if (out / "best.pth").exists() else None
    last_val = ""
    try:
        for x, y in loader:
            lr = poly_lr(cfg.lr, it, total, cfg.poly_power)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"the loss became {loss.item()} at iteration {it}: lower --lr "
                    f"(now {cfg.lr}) or check the labels"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            it += 1
            history.append(round(float(loss.item()), 5))
            if bar is not None:
                bar.set_postfix_str(f"loss {history[-1]:.3f} lr {lr:.2e}{last_val}")
                bar.update(1)
            if progress is not None:
                progress({"iteration": it, "loss": history[-1], "lr": lr})
            if val_ds is not None and cfg.val_every and (it % cfg.val_every == 0 or it == total):
                res = evaluate_torch(
                    model, val_ds, device, len(classes), classes, cfg.val_limit, cfg.val_res
                )
                val_hist.append(
                    {
                        "iteration": it,
                        "miou": round(float(res["miou"]), 3),
                        "pixel_accuracy": round(float(res["pixel_accuracy"]), 3),
                    }
                )
                last_val = f" val mIoU {res['miou']:.1f}"
                if progress is not None:
                    progress({"iteration": it, "val": val_hist[-1]})
                if res["miou"] > best_miou:
                    best_miou = float(res["miou"])
                    best_path = save(out / "best.pth", it, False, {"val_miou": best_miou})
                save(out / "last.pth", it, True)
            elif cfg.save_every and it % cfg.save_every == 0:
                save(out / "last.pth", it, True)
            if it >= total:
                break
    finally:
        if bar is not None:
            bar.close()
    last = save(out / "last.pth", it, True)
    final = save(out / "final.pth", it, False)
    seconds = time.perf_counter() - t0
    summary = {
        "iterations": it,
        "total_iters": total,
        "seconds": round(seconds, 1),
        "final_loss": history[-1] if history else None,
        "losses": history,
        "val": val_hist,
        "best_miou": best_miou if best_miou >= 0 else None,
        "config": cfg.plain(),
        "dataset": train_ds.describe(),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    write_json_atomic(out / "history.json", summary)
    return TrainResult(out, final, best_path, last, it, history, val_hist, seconds)


def smoothed(values: Sequence[float], window: int = 10) -> List[float]:
    """Running mean of a loss curve (what 'the loss falls' is judged on)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out
