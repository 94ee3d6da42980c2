"""Parameter, multiply-add and FLOP accounting, measured from the module graph by hooks.

Two conventions, because the literature mixes them: ``macs`` counts the multiply-adds of
convolutions and linear layers only; ``flops_paper`` adds what fvcore also counts
(BatchNorm 2 per element in eval, pooling 1 per input element, bilinear resize 4 per
output element, the broadcast global maps counted as the resize the public code does),
which is how the paper's 7.3 G at 640x360 is reached (one multiply-add = one FLOP).
Per-layer records feed the roofline estimate of ``bench --estimate``.
"""

from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple

import torch
from torch import nn

from . import cifrenet as model_module
from .cifrenet import CIFReNet, count_parameters


@dataclass
class LayerCost:
    """One leaf layer's work at a resolution, with the bytes it must move at FP32."""

    name: str
    kind: str
    macs: int
    extra_flops: int  # BN / pooling / resize work in the fvcore convention
    in_elems: int
    out_elems: int
    params: int


def layer_costs(model: nn.Module, wh: Tuple[int, int], batch: int = 1) -> List[LayerCost]:
    """Run one eval forward at ``wh`` (width, height) and record every leaf layer's cost."""
    records: List[LayerCost] = []
    hooks = []

    def hook(name: str):
        def fn(mod: nn.Module, inputs, output) -> None:
            x = inputs[0]
            in_elems = x.numel()
            out_elems = output.numel()
            macs = extra = 0
            if isinstance(mod, nn.Conv2d):
                kh, kw = mod.kernel_size
                macs = out_elems * (mod.in_channels // mod.groups) * kh * kw
            elif isinstance(mod, nn.Linear):
                macs = out_elems * mod.in_features
            elif isinstance(mod, nn.BatchNorm2d):
                extra = 2 * in_elems
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            records.append(
                LayerCost(name, type(mod).__name__, macs, extra, in_elems, out_elems, params)
            )

        return fn

    for name, mod in model.named_modules():
        if len(list(mod.children())) == 0:
            hooks.append(mod.register_forward_hook(hook(name)))
    # Functional pooling and resize have no module: count them through the functional API.
    import torch.nn.functional as F

    orig_pool, orig_interp = F.adaptive_avg_pool2d, F.interpolate

    def pool(x, output_size):
        y = orig_pool(x, output_size)
        records.append(
            LayerCost("functional.pool", "AdaptiveAvgPool2d", 0, x.numel(), x.numel(), y.numel(), 0)
        )
        return y

    def interp(x, *args, **kwargs):
        y = orig_interp(x, *args, **kwargs)
        records.append(
            LayerCost("functional.resize", "Resize", 0, 4 * y.numel(), x.numel(), y.numel(), 0)
        )
        return y

    orig_bcast = model_module.broadcast_like

    def bcast(g, x):
        # The public code resizes the 1x1 global maps bilinearly; our broadcast is the
        # same numbers, so it is counted as the resize it stands for.
        y = orig_bcast(g, x)
        records.append(
            LayerCost("functional.broadcast", "Resize", 0, 4 * y.numel(), g.numel(), y.numel(), 0)
        )
        return y

    was_training = model.training
    model.eval()
    try:
        F.adaptive_avg_pool2d, F.interpolate = pool, interp
        model_module.broadcast_like = bcast
        with torch.no_grad():
            model(torch.zeros(batch, 3, wh[1], wh[0]))
    finally:
        F.adaptive_avg_pool2d, F.interpolate = orig_pool, orig_interp
        model_module.broadcast_like = orig_bcast
        for h in hooks:
            h.remove()
        model.train(was_training)
    return records


def complexity(model: CIFReNet, wh: Tuple[int, int]) -> Dict[str, float]:
    """Multiply-adds and paper-convention FLOPs at one resolution."""
    costs = layer_costs(model, wh)
    macs = sum(c.macs for c in costs)
    return {
        "width": wh[0],
        "height": wh[1],
        "macs": macs,
        "flops_paper": macs + sum(c.extra_flops for c in costs),
    }


def parameter_report(model: CIFReNet) -> Dict[str, int]:
    report = {name: count_parameters(part) for name, part in model.parts().items()}
    report["dsp_each"] = count_parameters(model.mcim.dsp[0])
    report["total"] = count_parameters(model)
    return report


def costs_as_dicts(costs: List[LayerCost]) -> List[Dict[str, object]]:
    return [asdict(c) for c in costs]


def model_report(preset: str, resolutions: List[Tuple[int, int]]) -> Dict[str, object]:
    """Everything ``cifrenet-edge info`` shows: parameters per part and cost per resolution,
    each beside the paper's figure where it published one."""
    from .paper import PAPER_FPS, PAPER_GFLOPS, PAPER_PARAMS_M, REFERENCE_PARAMS

    model = CIFReNet(preset)
    rows = []
    for wh in resolutions:
        c = complexity(model, wh)
        c["paper_gflops"] = PAPER_GFLOPS.get(tuple(wh))
        c["paper_fps_1080ti"] = PAPER_FPS.get(tuple(wh))
        rows.append(c)
    return {
        "preset": preset,
        "num_classes": model.num_classes,
        "dsp_dilations": [list(d) for d in model.preset.dsp_dilations],
        "parameters": parameter_report(model),
        "paper_parameters_m": PAPER_PARAMS_M,
        "reference_parameters": REFERENCE_PARAMS if preset == "cityscapes" else None,
        "resolutions": rows,
    }
