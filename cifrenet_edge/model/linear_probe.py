"""A CIFReNet whose class map means something, built in seconds without training.

Untrained weights are useless for judging INT8: their logits barely depend on the input
and one class wins every pixel, so "100% agreement with FP32" proves nothing. A trained
checkpoint is the real thing; where none exists (tests, this benchmark on a fresh
machine) this makes the next best: the random backbone's BatchNorm statistics are
re-estimated on synthetic street scenes (so activations have realistic, normalised ranges,
as in a trained network) and the classifier is fitted in closed form (ridge regression,
a linear probe) to the scenes' labels. The result segments the scenes into many classes
with real decision margins, which is what INT8 agreement must be measured on.

Its margins are smaller than a trained model's (it was fitted in seconds on 256x128
synthetic scenes), so its INT8 agreement is a conservative figure: ``bench`` uses it by
default, so that every INT8 row's agreement with FP32 means something, and says so.
"""

from pathlib import Path
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data.synthetic import make_scene
from ..preprocess import preprocess
from ..presets import get_preset
from .cifrenet import HEAD_GROUPS, channel_shuffle
from .weights import build_model, save_checkpoint

LAM = 1.0
DAMP = 0.2
PRIOR = 1.0
POOLED_BN_IDENTITY = True
SMOOTH_INIT = True


def _scenes(seeds, wh):
    p = get_preset("cityscapes")
    xs, ys = [], []
    for s in seeds:
        img, lab = make_scene(int(s), wh)
        xs.append(preprocess(img, wh, p.mean_bgr, p.scale))
        ys.append(lab)
    return torch.from_numpy(np.concatenate(xs)), np.stack(ys)


@torch.no_grad()
def content_model(frames_bgr, wh: Tuple[int, int], seed: int = 0):
    """A seeded CIFReNet whose BatchNorm statistics come from ``frames_bgr`` (seconds).

    Untrained weights with default BatchNorm statistics paint one class everywhere, which
    makes any "same class map" comparison vacuous; statistics re-estimated on real or
    synthetic frames make the random network's class map follow the image (10+ classes per
    photograph), so a wrong channel order, normalisation, pointer or resize shows up. The
    cheaper sibling of ``make_probe_checkpoint`` (no fitted classifier).
    """
    torch.manual_seed(seed)
    model, _ = build_model("cityscapes")
    p = model.preset
    x = np.concatenate([preprocess(f, wh, p.mean_bgr, p.scale) for f in frames_bgr])
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    model(torch.from_numpy(x))
    return model.eval()


@torch.no_grad()
def make_probe_checkpoint(
    path, wh: Tuple[int, int] = (256, 128), scenes: int = 24, seed: int = 0
) -> Path:
    """Write a cityscapes checkpoint (BN re-estimated, classifier fitted) to ``path``."""
    torch.manual_seed(seed)
    model, _ = build_model("cityscapes")
    x, y = _scenes(range(1000 + seed, 1000 + seed + scenes), wh)
    if SMOOTH_INIT:
        # Structured, trained-like filters instead of i.i.d. noise: depthwise kernels are
        # smooth (a centred blur plus a small random part), 1x1 convs are orthogonal, so
        # each layer keeps the signal's energy rather than scrambling it.
        g = torch.Generator().manual_seed(seed)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                w = m.weight
                if m.groups == m.in_channels and m.groups > 1 and w.shape[-1] == 3:
                    blur = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
                    noise = torch.randn(w.shape, generator=g) * 0.1
                    w.copy_(blur + noise)
                elif w.shape[-1] == 1:
                    flat = torch.empty(w.shape[0], w.shape[1] * w.shape[2] * w.shape[3])
                    torch.nn.init.orthogonal_(flat, generator=g)
                    w.copy_(flat.reshape(w.shape))
    # 0. Damp residual branches (like zero-init-residual training starts): a deep random
    #    network is chaotic -- tiny input changes (e.g. rounding) grow layer by layer --
    #    which a trained network is not; damping keeps the probe's sensitivity realistic.
    for mod in model.modules():
        if getattr(mod, "use_residual", False):
            mod.project[1].weight.data.mul_(DAMP)
        if hasattr(mod, "paths") and hasattr(mod, "global_path"):
            for branch in mod.paths:
                branch[1][1].weight.data.mul_(DAMP)
            mod.global_path[1].weight.data.mul_(DAMP)
    # 1. BatchNorm statistics from data (cumulative average over all scenes).
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.reset_running_stats()
            m.momentum = None
    pooled = set()
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out: pooled.add(mod) if inp[0].shape[-1] == 1 else None
        )
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]
    model.train()
    for i in range(0, len(x), 8):
        model(x[i : i + 8]) if len(x[i : i + 8]) > 1 else None
    model.eval()
    for h in hooks:
        h.remove()
    # BatchNorm on 1x1 pooled maps (DSP/MCIM global paths) sees only the tiny variation of
    # image means across scenes; normalising by it would amplify that variation (and any
    # rounding of it) enormously, which training never lets happen. Leave those unscaled.
    for m in pooled:
        if POOLED_BN_IDENTITY:
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
    # 2. Linear probe: ridge regression from head features to one-hot labels (stride 8).
    head = model.head
    feats = []
    for i in range(0, len(x), 8):
        f = model.forward_features(x[i : i + 8])
        f = head.act(head.bn(channel_shuffle(head.reduce(f), HEAD_GROUPS)))
        feats.append(f)
    f = torch.cat(feats)  # N x 256 x h x w
    _, c, h, w = f.shape
    lab = torch.from_numpy(y).unsqueeze(1).float()
    lab = F.interpolate(lab, size=(h, w), mode="nearest").long().squeeze(1)
    a = f.permute(0, 2, 3, 1).reshape(-1, c).double()
    t = lab.reshape(-1)
    keep = t != 255
    a, t = a[keep], t[keep]
    k = model.num_classes
    onehot = torch.zeros(len(t), k, dtype=torch.float64)
    onehot[torch.arange(len(t)), t] = 1.0
    mu = a.mean(0)
    a0 = a - mu
    lam = LAM * a0.pow(2).sum(0).mean()
    wgt = torch.linalg.solve(a0.T @ a0 + lam * torch.eye(c, dtype=torch.float64), a0.T @ onehot)
    # no class prior in the bias: with strong shrinkage the prior would win every pixel
    bias = PRIOR * onehot.mean(0) - mu @ wgt
    scale = 8.0  # margins like a trained softmax classifier, not ridge's [0, 1] outputs
    head.classifier.weight.copy_((wgt.T * scale).float().reshape(k, c, 1, 1))
    head.classifier.bias.copy_((bias * scale).float())
    return save_checkpoint(model, Path(path), {"probe": "bn-recalibrated + ridge classifier"})
