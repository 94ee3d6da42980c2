"""Post-processing choices for the runtime, measured: speed AND agreement. One command:

    python benchmarks/postprocess/run.py                       # ~1-2 minutes
    python benchmarks/postprocess/run.py --weights trained.pth --rounds 40

The network runs at 640x360 on a 1280x720 BGR frame (each real photograph of
tests/data/real resized to 1280x720); its logits (19 x 360 x 640) must become a 1280x720
class map. Candidates, timed interleaved (A, B, C, ... A, B, C ...) so load from other users
hits all alike:

- ``logits-hwc``: bilinear resize of the logits to 1280x720 (one cv2.resize over 19
  interleaved channels), then argmax. The REFERENCE: what evaluation does.
- ``logits-planar``: the same result, one cv2.resize per class plane + running argmax.
- ``nearest-exact``: argmax at 640x360 (running maximum, uint8), then nearest resize of the
  class map with ``cv2.INTER_NEAREST_EXACT`` (half-pixel centres). What the runtime uses.
- ``nearest``: the same with legacy ``cv2.INTER_NEAREST`` (samples the top-left neighbour,
  shifted by half a source pixel).
- argmax alone, both ways: ``np.argmax(axis=0)`` vs the runtime's running maximum.

Agreement is the fraction of pixels whose class equals the reference's, per image. It is
also measured at each photograph's native size (non-integer scale factors, where
INTER_NEAREST_EXACT and INTER_NEAREST differ), and what matters in the end, accuracy, is
compared on labelled synthetic street scenes at 1280x720 (``data.synthetic.make_scene``,
seeds the probe never saw): mIoU of every method against the ground truth.
It also checks that OpenCV's bilinear resize equals PyTorch's ``interpolate(...,
align_corners=False)`` on these logits (the runtime's reference must be training's).

Weights: a trained checkpoint if given; otherwise the INT8 benchmark's probe model (random
backbone, BatchNorm re-estimated and classifier fitted on synthetic street scenes), whose
class maps have real regions and margins. Speed does not depend on the weights; agreement
does (it measures how much boundary there is), so re-run with trained weights when they exist.

Writes ``benchmarks/postprocess/results/<host>-<UTC>.json`` and prints a Markdown table.
"""

import argparse
import os
import platform
import socket
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FRAME_WH = (1280, 720)
MODEL_WH = (640, 360)


def machine() -> dict:
    info = {"platform": platform.platform(), "python": sys.version.split()[0]}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln
        )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    info["loadavg_1min_at_start"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info["opencv"] = cv2.__version__
    info["numpy"] = np.__version__
    return info


def get_logits(weights, frames, threads):
    """Logits (19 x 360 x 640) for every frame (a list per group), via the torch backend."""
    from cifrenet_edge import Segmenter

    if weights is None:
        sys.path.insert(0, str(ROOT / "benchmarks" / "int8_cpu"))
        from probe import make_probe_checkpoint

        weights = Path(tempfile.mkdtemp()) / "probe.pth"
        make_probe_checkpoint(weights, wh=MODEL_WH)
        label = "probe (BN re-estimated + ridge classifier on synthetic scenes; no trained weights)"
    else:
        label = str(weights)
    with Segmenter.open(weights, resolution=MODEL_WH, threads=threads, warmup=0) as seg:
        from cifrenet_edge.preprocess import preprocess

        m = seg.manifest
        logits = [
            [seg.backend.infer(preprocess(f, MODEL_WH, m.mean_bgr, m.scale))[0] for f in group]
            for group in frames
        ]
    return logits, label


def check_against_torch(logits) -> float:
    """Max |cv2 bilinear - torch interpolate(align_corners=False)| over the logits."""
    import torch
    import torch.nn.functional as F

    from cifrenet_edge.runtime.postprocess import resize_logits

    worst = 0.0
    for lg in logits[:2]:
        ours = resize_logits(lg, FRAME_WH)
        ref = F.interpolate(
            torch.from_numpy(lg)[None], size=FRAME_WH[::-1], mode="bilinear", align_corners=False
        )[0]
        worst = max(worst, float(np.abs(ours - ref.permute(1, 2, 0).numpy()).max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, help="trained checkpoint (.pth/.safetensors)")
    ap.add_argument("--images", type=Path, default=ROOT / "tests" / "data" / "real")
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds per method and image")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the logits")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    from cifrenet_edge._io import write_json_atomic
    from cifrenet_edge.runtime.postprocess import (
        NEAREST,
        argmax_classes,
        resize_logits,
        resize_mask,
    )

    cv2.setNumThreads(1)  # the runtime's post-processing runs on the calling thread
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    photos = [cv2.imread(str(p)) for p in paths]
    frames = [cv2.resize(p, FRAME_WH, interpolation=cv2.INTER_LINEAR) for p in photos]
    from cifrenet_edge.accuracy.metrics import miou
    from cifrenet_edge.data.synthetic import make_scene

    scenes = [make_scene(9000 + i, FRAME_WH) for i in range(6)]
    (logits, native_logits, scene_logits), label = get_logits(
        args.weights, [frames, photos, [s[0] for s in scenes]], args.threads
    )

    def logits_hwc(lg):
        return np.argmax(resize_logits(lg, FRAME_WH), axis=-1).astype(np.uint8)

    def logits_planar(lg):
        planes = np.stack([cv2.resize(p, FRAME_WH, interpolation=cv2.INTER_LINEAR) for p in lg])
        return argmax_classes(planes)

    def nearest_exact(lg):
        return resize_mask(argmax_classes(lg), FRAME_WH)

    def nearest_legacy(lg):
        return cv2.resize(argmax_classes(lg), FRAME_WH, interpolation=cv2.INTER_NEAREST)

    def argmax_numpy(lg):
        return np.argmax(lg, axis=0).astype(np.uint8)

    def argmax_running(lg):
        return argmax_classes(lg)

    methods = {
        "logits-hwc": logits_hwc,
        "logits-planar": logits_planar,
        "nearest-exact": nearest_exact,
        "nearest": nearest_legacy,
        "argmax-numpy (640x360 only)": argmax_numpy,
        "argmax-running (640x360 only)": argmax_running,
    }
    assert getattr(cv2, "INTER_NEAREST_EXACT", cv2.INTER_NEAREST) == NEAREST

    reference = [logits_hwc(lg) for lg in logits]
    agreement = {}
    for name in ("logits-planar", "nearest-exact", "nearest"):
        agreement[name] = [
            float(np.mean(methods[name](lg) == ref)) for lg, ref in zip(logits, reference)
        ]
    native = {}
    for name, interp in (("nearest-exact", NEAREST), ("nearest", cv2.INTER_NEAREST)):
        native[name] = []
        for lg, photo in zip(native_logits, photos):
            wh = (photo.shape[1], photo.shape[0])
            ref = np.argmax(resize_logits(lg, wh), axis=-1).astype(np.uint8)
            got = cv2.resize(argmax_classes(lg), wh, interpolation=interp)
            native[name].append(float(np.mean(got == ref)))
    scene_miou = {}
    for name in ("logits-hwc", "nearest-exact", "nearest"):
        scene_miou[name] = float(
            np.mean([miou(methods[name](lg), s[1], 19) for lg, s in zip(scene_logits, scenes)])
        )
    same_argmax = all(np.array_equal(argmax_numpy(lg), argmax_running(lg)) for lg in logits)
    classes = [len(np.unique(r)) for r in reference]

    times = {name: [] for name in methods}
    for _ in range(args.rounds):
        for lg in logits:
            for name, fn in methods.items():  # interleaved: A, B, C, ... per image
                t0 = time.perf_counter()
                fn(lg)
                times[name].append((time.perf_counter() - t0) * 1e3)

    try:
        torch_diff = check_against_torch(logits)
    except ImportError:
        torch_diff = None

    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "frame": list(FRAME_WH),
        "model_resolution": list(MODEL_WH),
        "images": [p.name for p in paths],
        "weights": label,
        "classes_per_reference_map": classes,
        "rounds": args.rounds,
        "ms": {
            k: {
                "median": round(float(np.median(v)), 3),
                "p90": round(float(np.percentile(v, 90)), 3),
                "min": round(float(np.min(v)), 3),
            }
            for k, v in times.items()
        },
        "agreement_with_logits_reference": {
            k: {
                "mean": round(float(np.mean(v)), 5),
                "min": round(float(np.min(v)), 5),
                "per_image": [round(a, 5) for a in v],
            }
            for k, v in agreement.items()
        },
        "agreement_at_native_photo_size": {
            "sizes": [f"{p.shape[1]}x{p.shape[0]}" for p in photos],
            **{k: [round(a, 5) for a in v] for k, v in native.items()},
        },
        "synthetic_scenes_miou_percent": {k: round(v, 3) for k, v in scene_miou.items()},
        "running_argmax_equals_np_argmax": bool(same_argmax),
        "cv2_vs_torch_bilinear_max_abs_diff": torch_diff,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = write_json_atomic(args.out / f"{socket.gethostname()}-{stamp}.json", result)

    ref_ms = result["ms"]["logits-hwc"]["median"]
    print(
        f"# Post-processing, {FRAME_WH[0]}x{FRAME_WH[1]} frame, {MODEL_WH[0]}x{MODEL_WH[1]} model"
    )
    print(
        f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
        f"load {result['machine']['loadavg_1min_at_start']}; weights: {label}\n"
    )
    print("| method | median ms | p90 ms | vs reference | agreement mean (min) |")
    print("|---|---:|---:|---:|---:|")
    for name, t in result["ms"].items():
        agr = result["agreement_with_logits_reference"].get(name)
        a = (
            "reference"
            if name == "logits-hwc"
            else (f"{agr['mean'] * 100:.3f}% ({agr['min'] * 100:.3f}%)" if agr else "-")
        )
        print(
            f"| {name} | {t['median']:.2f} | {t['p90']:.2f} | {ref_ms / t['median']:.1f}x | {a} |"
        )
    print(
        "\nagreement at the photos' native sizes "
        + ", ".join(result["agreement_at_native_photo_size"]["sizes"])
        + ": "
        + "; ".join(f"{k} {np.mean(v) * 100:.3f}%" for k, v in native.items())
    )
    print(
        "mIoU on 6 labelled synthetic 1280x720 scenes: "
        + "; ".join(f"{k} {v:.2f}%" for k, v in scene_miou.items())
    )
    print(f"running argmax == np.argmax: {same_argmax}")
    print(f"cv2 vs torch bilinear, max |diff| of the logits: {torch_diff}")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
