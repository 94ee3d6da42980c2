"""The network against ARCHITECTURE.md: structure, figures, shapes, determinism, training."""

import pytest
import torch

from cifrenet_edge import CIFReNet
from cifrenet_edge.errors import ConfigError
from cifrenet_edge.model.cifrenet import DSP, MCIM, InvertedResidual
from cifrenet_edge.model.complexity import complexity, layer_costs, parameter_report
from cifrenet_edge.presets import PRESET_NAMES, get_preset


@pytest.fixture(scope="module")
def cityscapes():
    torch.manual_seed(0)
    return CIFReNet("cityscapes").eval()


def test_parameter_figures(cityscapes):
    report = parameter_report(cityscapes)
    assert report["total"] == 1_949_901
    assert report["mcim"] == 115_504
    assert report["dsp_each"] == 29_888
    # The paper's baseline (no LRM, no MCIM) is "1.82 M": backbone plus a head on 320 ch.
    assert round(report["backbone"] / 1e6, 2) == 1.81
    baseline = report["backbone"] + 320 * 256 // 16 + 256 + 2 * 256 + 256 * 19 + 19
    assert round(baseline / 1e6, 2) == 1.82


@pytest.mark.parametrize(
    "wh, macs_g, flops_g",
    [
        ((640, 360), 7.12, 7.31),
        ((512, 512), None, 8.31),
        ((713, 713), None, 16.42),
        ((1024, 448), None, 14.55),
        ((1024, 512), None, 16.63),
    ],
)
def test_complexity_figures(cityscapes, wh, macs_g, flops_g):
    c = complexity(cityscapes, wh)
    if macs_g is not None:
        assert round(c["macs"] / 1e9, 2) == macs_g
    assert round(c["flops_paper"] / 1e9, 2) == flops_g


def test_stage_table(cityscapes):
    """Stage table: channels, strides, dilations, t=1 expand conv kept, output stride 8."""
    stages = cityscapes.backbone.stages
    expected = [
        (16, 1, 1, 1),
        (24, 2, 2, 1),
        (32, 3, 2, 1),
        (64, 4, 1, 2),
        (96, 3, 1, 3),
        (160, 3, 1, 5),
        (320, 1, 1, 7),
    ]
    for stage, (cout, repeats, stride, dilation) in zip(stages, expected):
        assert len(stage) == repeats
        for i, block in enumerate(stage):
            assert isinstance(block, InvertedResidual)
            dw = block.dw[0]
            assert dw.stride == ((stride, stride) if i == 0 else (1, 1))
            assert dw.dilation == (dilation, dilation)
            assert dw.padding == (dilation, dilation)
            assert block.project[0].out_channels == cout
            assert block.expand[0].bias is None and dw.bias is None
    assert stages[0][0].expand[0].in_channels == stages[0][0].expand[0].out_channels == 32
    feats = cityscapes.forward_features(torch.zeros(1, 3, 360, 640))
    assert feats.shape == (1, 400, 45, 80)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_dsp_dilations_per_preset(preset):
    model = CIFReNet(preset)
    mcim = model.mcim
    assert isinstance(mcim, MCIM)
    got = tuple(tuple(p[0][0].dilation[0] for p in dsp.paths) for dsp in mcim.dsp)
    assert got == get_preset(preset).dsp_dilations
    for dsp in mcim.dsp:
        assert isinstance(dsp, DSP)
        assert dsp.down[0].groups == 4 and dsp.down[0].out_channels == 64
    assert model.head.classifier.out_channels == get_preset(preset).num_classes


@pytest.mark.parametrize("preset", PRESET_NAMES)
@pytest.mark.parametrize("wh", [(640, 360), (250, 130), (97, 71)])
def test_output_shape_any_size(preset, wh):
    """Output is at the input size, also for sizes not divisible by 8."""
    model = CIFReNet(preset).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, wh[1], wh[0]))
    assert y.shape == (1, get_preset(preset).num_classes, wh[1], wh[0])
    assert torch.isfinite(y).all()


def test_eval_is_deterministic(cityscapes):
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = cityscapes(x), cityscapes(x)
    assert torch.equal(a, b)


def test_custom_num_classes():
    model = CIFReNet("camvid", num_classes=12).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape[1] == 12


def test_training_step_batch_2_updates_weights():
    torch.manual_seed(0)
    model = CIFReNet("camvid").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(2, 3, 64, 96)
    target = torch.randint(0, 11, (2, 64, 96))
    target[0, :4] = 255
    before = model.head.classifier.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(x), target, ignore_index=255)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.head.classifier.weight)


def test_training_at_batch_1_is_a_clear_error():
    model = CIFReNet("cityscapes").train()
    with pytest.raises(ConfigError, match="batch of at least 2"):
        model(torch.randn(1, 3, 64, 64))


def test_broadcast_equals_bilinear_resize_of_1x1():
    """The export-friendly broadcast is the resize the public code does (to float rounding:
    bilinear weights of a 1x1 source sum to one, so only the last bit can differ)."""
    g = torch.randn(2, 8, 1, 1)
    resized = torch.nn.functional.interpolate(g, size=(5, 7), mode="bilinear", align_corners=False)
    torch.testing.assert_close(g.expand(-1, -1, 5, 7), resized, rtol=1e-6, atol=1e-6)


def test_layer_costs_cover_every_conv(cityscapes):
    costs = layer_costs(cityscapes, (160, 96))
    convs = [m for m in cityscapes.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(c.kind == "Conv2d" for c in costs) == len(convs)
