"""CIFReNet in PyTorch, block for block as ARCHITECTURE.md and the authors' public code.

Jiang, Tu, Yang, Yuan, "Context-Integrated and Feature-Refined Network for Lightweight
Object Parsing", IEEE TIP 2020. A dilated MobileNetV2 backbone at output stride 8,
a long-skip refinement module (LRM) gated by channel attention, a multi-scale context
integration module (MCIM) of three dense-sparse (DSP) blocks, and a light head.

Written for export: global branches are 1x1 maps broadcast with ``expand`` (numerically
identical to resizing a 1x1 map), there is no data-dependent control flow, and Dropout
is the only train-only layer (it vanishes from an eval-mode export).
"""

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..presets import Preset, get_preset

# (expansion t, out channels, repeats, stride of first block, dilation): stages 1..7.
STAGES: Tuple[Tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 1, 1),
    (6, 24, 2, 2, 1),
    (6, 32, 3, 2, 1),
    (6, 64, 4, 1, 2),
    (6, 96, 3, 1, 3),
    (6, 160, 3, 1, 5),
    (6, 320, 1, 1, 7),
)
STEM_CHANNELS = 32
LRM_STAGE = 3  # the LRM taps the output of stage 3 (32 ch, stride 8)
ATTENTION_STAGE = 6  # ... and refines the output of stage 6 (160 ch)
ATTENTION_REDUCTION = 16  # Linear(160, 10)
DSP_RATIO = 0.2  # c = 320 * 0.2 = 64
DSP_GROUPS = 4
HEAD_CHANNELS = 256
HEAD_GROUPS = 16
MCIM_GLOBAL_CHANNELS = 80
OUTPUT_STRIDE = 8


def conv_bn(
    cin: int,
    cout: int,
    k: int = 1,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = False,
    act: Optional[nn.Module] = None,
) -> nn.Sequential:
    """Conv + BN (+ activation): the unit every block is made of."""
    pad = dilation * (k - 1) // 2
    layers: List[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=bias),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def broadcast_like(g: Tensor, x: Tensor) -> Tensor:
    """Broadcast a 1x1 global map to x's spatial size.

    Equal to bilinear resizing of a 1x1 map, but exports as Expand rather than Resize.
    """
    return g.expand(-1, -1, x.shape[2], x.shape[3])


class InvertedResidual(nn.Module):
    """MobileNetV2 block as in the public code: the 1x1 expand conv is kept even at t = 1."""

    def __init__(self, cin: int, cout: int, stride: int, t: int, dilation: int) -> None:
        super().__init__()
        hidden = cin * t
        self.expand = conv_bn(cin, hidden, 1, act=nn.ReLU6(inplace=True))
        self.dw = conv_bn(
            hidden, hidden, 3, stride, dilation, groups=hidden, act=nn.ReLU6(inplace=True)
        )
        self.project = conv_bn(hidden, cout, 1)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_residual else y


class Backbone(nn.Module):
    """Dilated MobileNetV2 at output stride 8: no 1280-channel conv, no classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, STEM_CHANNELS, 3, stride=2, act=nn.ReLU6(inplace=True))
        stages = []
        cin = STEM_CHANNELS
        for t, cout, repeats, stride, dilation in STAGES:
            blocks = []
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, t, dilation))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)


class LRM(nn.Module):
    """Long-skip refinement: lifts the stride-8 stage-3 features (32 ch) to 160 ch."""

    def __init__(self, cin: int = 32, cout: int = 160) -> None:
        super().__init__()
        self.dw = conv_bn(cin, cin, 3, groups=cin, bias=True, act=nn.PReLU(cin))
        self.pw = conv_bn(cin, cout, 1, bias=True, act=nn.PReLU(cout))

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class ChannelAttention(nn.Module):
    """Squeeze-excitation gate from stage-6 features; sigmoid as in the public code.

    The paper's Eq. (3) writes softmax; the code that produced its numbers uses sigmoid.
    """

    def __init__(self, channels: int = 160, reduction: int = ATTENTION_REDUCTION) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x: Tensor) -> Tensor:
        w = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return w[:, :, None, None]


class DSP(nn.Module):
    """Dense-sparse block: grouped 1x1 down, four dilated depthwise paths, a global path."""

    def __init__(
        self,
        channels: int = 320,
        dilations: Sequence[int] = (1, 2, 3, 5),
        ratio: float = DSP_RATIO,
        groups: int = DSP_GROUPS,
    ) -> None:
        super().__init__()
        c = int(channels * ratio)
        self.groups = groups
        self.down = conv_bn(channels, c, 1, groups=groups, act=nn.PReLU(c))
        self.paths = nn.ModuleList(
            nn.Sequential(conv_bn(c, c, 3, dilation=d, groups=c, act=nn.PReLU(c)), conv_bn(c, c, 1))
            for d in dilations
        )
        self.global_path = conv_bn(c, c, 1, bias=True)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.down(x)
        g = self.global_path(F.adaptive_avg_pool2d(y, 1))
        out = torch.cat([p(y) for p in self.paths] + [broadcast_like(g, y)], dim=1)
        return self.act(channel_shuffle(out, self.groups) + x)


class MCIM(nn.Module):
    """Three DSP blocks in cascade, their outputs summed, plus a global branch (320 + 80 ch)."""

    def __init__(self, dilations: Sequence[Sequence[int]], channels: int = 320) -> None:
        super().__init__()
        self.dsp = nn.ModuleList(DSP(channels, d) for d in dilations)
        self.global_branch = conv_bn(
            channels, MCIM_GLOBAL_CHANNELS, 1, bias=True, act=nn.LeakyReLU(0.1, inplace=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        g = self.global_branch(F.adaptive_avg_pool2d(x, 1))
        y = x
        total: Optional[Tensor] = None
        for block in self.dsp:
            y = block(y)
            total = y if total is None else total + y
        assert total is not None
        return torch.cat([total, broadcast_like(g, x)], dim=1)


class Head(nn.Module):
    """The paper's up-sampling layer: grouped 1x1 + shuffle, classifier, bilinear x8."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(cin, HEAD_CHANNELS, 1, groups=HEAD_GROUPS, bias=True)
        self.bn = nn.BatchNorm2d(HEAD_CHANNELS)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Conv2d(HEAD_CHANNELS, num_classes, 1, bias=True)

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        x = channel_shuffle(self.reduce(x), HEAD_GROUPS)
        x = self.classifier(self.dropout(self.act(self.bn(x))))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class CIFReNet(nn.Module):
    """CIFReNet for one of the presets ``cityscapes``, ``camvid``, ``helen``.

    Input: N x 3 x H x W, BGR, ``(bgr - mean) / 255`` (see ``preset.metadata()``).
    Output: N x num_classes x H x W logits at the input size (any H, W; stride 8 inside).
    """

    def __init__(self, preset: str = "cityscapes", num_classes: Optional[int] = None) -> None:
        super().__init__()
        self.preset: Preset = get_preset(preset)
        self.num_classes = int(num_classes or self.preset.num_classes)
        self.backbone = Backbone()
        c3 = STAGES[LRM_STAGE - 1][1]
        c6 = STAGES[ATTENTION_STAGE - 1][1]
        c7 = STAGES[-1][1]
        self.lrm = LRM(c3, c6)
        self.attention = ChannelAttention(c6)
        self.mcim = MCIM(self.preset.dsp_dilations, c7)
        self.head = Head(c7 + MCIM_GLOBAL_CHANNELS, self.num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """Backbone + LRM/attention + MCIM: the 400-channel stride-8 context features."""
        if self.training and x.shape[0] == 1:
            # BatchNorm on the 1x1 pooled global maps sees one value per channel and fails
            # deep inside torch; say why here instead. Eval mode (export, inference) is fine.
            raise ConfigError(
                "training CIFReNet needs a batch of at least 2: BatchNorm on the 1x1 global "
                "maps has one value per channel at batch 1 (use --batch-size 2 or more, or "
                "model.eval() for inference)"
            )
        x = self.backbone.stem(x)
        low: Optional[Tensor] = None
        for index, stage in enumerate(self.backbone.stages, start=1):
            x = stage(x)
            if index == LRM_STAGE:
                low = x
            elif index == ATTENTION_STAGE:
                assert low is not None
                x = self.attention(x) * self.lrm(low) + x
        return self.mcim(x)

    def forward_head(self, features: Tensor, size: Tuple[int, int]) -> Tensor:
        return self.head(features, size)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x), (x.shape[2], x.shape[3]))

    def parts(self) -> dict:
        """The parts the paper reports separately, for parameter accounting."""
        return {
            "backbone": self.backbone,
            "lrm": self.lrm,
            "attention": self.attention,
            "mcim": self.mcim,
            "head": self.head,
        }


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
