"""Before/after the issue-12 Q/DQ changes, on the CPU: same model, same calibration, one run.

    python benchmarks/int8_cpu/recipes.py            # 640x360, ~2 minutes

Four files from ONNX Runtime's quantizer, differing only in the TensorRT-relevant options
(``cifrenet_edge/quantize/ort_quantizer.py``): the 0.1 recipe (int8 weight initializers, Conv
outputs quantized), each change alone, and the 0.2 recipe (float weights -> Q -> DQ,
dedicated pairs, no Conv-output Q/DQ). Each is timed in OpenVINO (the runtime's CPU INT8
engine) interleaved with the FP32 model (the bench's scheduler), and its agreement with FP32
is measured with Q/DQ evaluated in float (the export's gate). Probe weights, 8 synthetic
calibration scenes, min-max ranges. Writes ``results/recipes-<host>-<UTC>.json``.
"""

import argparse
import contextlib
import io
import json
import logging
import os
import socket
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RECIPES = {
    "0.1 (int8 weights, Conv outputs quantized)": {},
    "weights through Q only": {"AddQDQPairToWeight": True, "DedicatedQDQPair": True},
    "no Conv-output Q/DQ only": {"OpTypesToExcludeOutputQuantization": ["Conv", "Add"]},
    "0.2 (both)": {
        "AddQDQPairToWeight": True,
        "DedicatedQDQPair": True,
        "OpTypesToExcludeOutputQuantization": ["Conv", "Add"],
    },
}


def _quantize(fp32: Path, out: Path, batches, extra_over: dict) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from cifrenet_edge.quantize import graph as G
    from cifrenet_edge.quantize import ort_quantizer as C

    model = onnx.load(str(fp32))
    sens = G.find_sensitive_nodes(model)
    excl = [n for k in ("classifier", "resize") for n in sens[k]] + G.grouped_convs(model)
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "CalibStridedMinMax": C.stride(len(batches)),
        "CalibTensorRangeSymmetric": True,
        **extra_over,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(fp32),
            str(out),
            C.Reader(batches, "input"),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(C.QUANTIZED_OP_TYPES),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excl,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=extra,
        )
    m = onnx.load(str(out))
    G.fuse_residual_adds(m)
    if extra_over.get("DedicatedQDQPair"):
        G.dedicate_qdq_pairs(m)
    onnx.save(m, str(out))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", default="640x360")
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    import openvino as ov

    from cifrenet_edge.bench import Series, run_interleaved
    from cifrenet_edge.data.calibration import load_calibration
    from cifrenet_edge.data.synthetic import make_scene, write_synthetic_dataset
    from cifrenet_edge.export import export_onnx
    from cifrenet_edge.model.linear_probe import make_probe_checkpoint
    from cifrenet_edge.preprocess import preprocess
    from cifrenet_edge.presets import get_preset, parse_resolution
    from cifrenet_edge.quantize import agreement_report
    from cifrenet_edge.quantize.verify import session

    sys.path.insert(0, str(HERE))
    from run import machine

    wh = parse_resolution(args.res)
    meta = get_preset("cityscapes").metadata()
    info = {"machine": machine(), "res": list(wh), "rounds": args.rounds, "recipes": {}}
    with tempfile.TemporaryDirectory(prefix="recipes_") as tmp:
        tmp = Path(tmp)
        weights = make_probe_checkpoint(tmp / "probe.pth")
        fp32 = export_onnx("cityscapes", weights=weights, res=wh, output=tmp / "f.onnx", quiet=True)
        write_synthetic_dataset(tmp / "cal", 8, wh, seed=0, val_fraction=0.0)
        cal = load_calibration(
            str(tmp / "cal/images/train"),
            wh,
            count=8,
            mean_bgr=meta["mean_bgr"],
            scale=meta["scale"],
        )
        held = [
            preprocess(make_scene(9000 + i, wh)[0], wh, meta["mean_bgr"], meta["scale"])
            for i in range(8)
        ]
        ref = [session(fp32.path).run(None, {"input": x})[0] for x in held]
        core = ov.Core()
        cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        series = [Series("fp32", _ov_call(core, fp32.path, cfg, held[0]))]
        for k, (name, extra) in enumerate(RECIPES.items()):
            out = tmp / f"r{k}.onnx"
            _quantize(fp32.path, out, cal.batches, extra)
            got = [session(out, float_qdq=True).run(None, {"input": x})[0] for x in held]
            info["recipes"][name] = {
                "options": extra,
                "agreement_qdq_in_float": agreement_report(ref, got, meta["classes"])["agreement"],
            }
            series.append(Series(name, _ov_call(core, out, cfg, held[0])))
        run_interleaved(series, warmup=3, iters=args.rounds, seconds=None)
    med = {s.key: float(np.median(s.samples_ms)) for s in series}
    info["openvino_median_ms"] = med
    for name in RECIPES:
        info["recipes"][name]["openvino_speedup_over_fp32"] = med["fp32"] / med[name]
    info["machine"]["loadavg_end"] = os.getloadavg()
    info["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    stamp = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    out = HERE / "results" / f"recipes-{socket.gethostname()}-{stamp}.json"
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"{'openvino fp32':48s} {med['fp32']:7.1f} ms")
    for name, rec in info["recipes"].items():
        print(
            f"{name:48s} {med[name]:7.1f} ms  {rec['openvino_speedup_over_fp32']:.2f}x  "
            f"agreement {rec['agreement_qdq_in_float']:.4f}"
        )
    print(f"wrote {out}")
    return info


def _ov_call(core, path, cfg, x):
    req = core.compile_model(str(path), "CPU", cfg).create_infer_request()
    return lambda: req.infer({0: x})


if __name__ == "__main__":
    main()
