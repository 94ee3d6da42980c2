"""Collect the end-to-end accuracy run (run.sh) into results.json and results.md.

Reads what the run wrote under WORK (train/history.json, eval_*.json, the INT8 manifest's
gate record) and the machine it ran on; writes nothing it did not measure.
"""

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional


def _load(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else None


def _machine() -> Dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_report": [round(v, 2) for v in load] if load else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def train_cpu_seconds(work: Path) -> Optional[float]:
    """User CPU seconds of the training command (GNU time's report), a load-independent cost."""
    path = work / "train.stderr"
    if not path.is_file():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if "User time (seconds):" in line:
            return float(line.rsplit(":", 1)[1])
    return None


def majority_baseline(data: str) -> Optional[Dict[str, Any]]:
    """What 'no learning' scores: the most frequent training class predicted everywhere."""
    import numpy as np

    from cifrenet_edge.accuracy.metrics import ConfusionMatrix
    from cifrenet_edge.data import open_dataset

    try:
        train, val = open_dataset(data, "train"), open_dataset(data, "val")
    except Exception:
        return None
    counts = np.zeros(256, np.int64)
    for i in range(len(train)):
        counts += np.bincount(train[i][1].ravel(), minlength=256)
    majority = int(np.argmax(counts[: train.num_classes]))
    cm = ConfusionMatrix(val.num_classes, val.classes)
    for i in range(len(val)):
        lab = val[i][1]
        cm.update(np.full_like(lab, majority), lab)
    r = cm.result()
    return {
        "class": val.classes[majority],
        "miou": round(float(r["miou"]), 2),
        "pixel_accuracy": round(float(r["pixel_accuracy"]), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    work: Path = args.work
    hist = _load(work / "train" / "history.json") or {}
    evals = {k: _load(work / f"eval_{k}.json") for k in ("torch", "fp32", "int8")}
    int8_manifest = _load(work / "models" / "int8.onnx.json") or {}
    gate = None
    for key in ("accuracy_gate", "int8_gate", "gate"):
        if key in int8_manifest:
            gate = int8_manifest[key]
    rows = []
    for key, label in (
        ("torch", "PyTorch checkpoint (FP32)"),
        ("fp32", "ONNX FP32"),
        ("int8", "ONNX INT8 (Q/DQ)"),
    ):
        e = evals[key]
        if e:
            rows.append(
                {
                    "model": label,
                    "file": Path(e["model"]).name,
                    "backend": e.get("backend"),
                    "precision": e.get("precision"),
                    "resolution": e.get("resolution"),
                    "miou": round(e["miou"], 2),
                    "pixel_accuracy": round(e["pixel_accuracy"], 2),
                    "images": e["images"],
                    "per_class_iou": {
                        k: (None if v is None else round(v, 2))
                        for k, v in e["per_class_iou"].items()
                    },
                    "predict_ms_mean": round(1000 * e.get("predict_seconds_mean", 0.0), 1),
                }
            )
    cmp = (evals["int8"] or {}).get("compare")
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "dataset": (evals["fp32"] or evals["torch"] or {}).get("dataset"),
        "training": {
            k: hist.get(k)
            for k in (
                "iterations",
                "seconds",
                "final_loss",
                "val",
                "best_miou",
                "device",
                "threads",
                "dataset",
            )
        },
        "training_config": hist.get("config"),
        "training_cpu_user_seconds": train_cpu_seconds(work),
        "loss_first_10_mean": (sum(hist["losses"][:10]) / 10) if hist.get("losses") else None,
        "loss_last_10_mean": (sum(hist["losses"][-10:]) / 10) if hist.get("losses") else None,
        "results": rows,
        "int8_vs_fp32": None
        if not cmp
        else {
            "delta_miou": round(cmp["delta_miou"], 3),
            "flip_rate": round(cmp["flip_rate"], 5),
            "per_class_delta": {
                k: (None if v is None else round(v, 2)) for k, v in cmp["per_class_delta"].items()
            },
        },
        "int8_gate_at_export": gate,
        "majority_class_baseline": majority_baseline((evals["fp32"] or {}).get("data", "")),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")

    lines = [
        "# End-to-end accuracy on CPU: synthetic street scenes",
        "",
        f"Recorded {result['created']} by `benchmarks/accuracy/run.sh` on "
        f"{result['machine']['cpu']}"
        f" ({result['machine']['cores']} cores, shared; load average at report "
        f"{result['machine']['load_average_at_report']}). Accuracy is the figure recorded here; "
        "times are those of a shared machine and only indicative.",
        "",
        f"Data: {result['dataset']}",
        "",
    ]
    cfg = hist.get("config") or {}
    if hist:
        lines += [
            f"Training: {hist.get('iterations')} iterations, batch {cfg.get('batch_size')}, crop "
            f"{cfg.get('crop')}, lr {cfg.get('lr')} (poly 0.9), SGD momentum 0.9, wd 5e-4, "
            f"from scratch (no ImageNet file here), {hist.get('seconds')} s on "
            f"{hist.get('device')} with {hist.get('threads')} thread(s) on the shared machine "
            f"({result['training_cpu_user_seconds']} s of CPU time). Loss "
            f"{result['loss_first_10_mean']:.3f} (first "
            f"10 iterations) -> {result['loss_last_10_mean']:.3f} (last 10). Validation mIoU "
            "during training: "
            + ", ".join(f"{v['miou']:.1f} @ {v['iteration']}" for v in hist.get("val", [])),
            "",
        ]
    base = result["majority_class_baseline"]
    if base:
        lines += [
            f"Trivial baseline (predict the most frequent training class, {base['class']}, "
            f"everywhere): mIoU {base['miou']:.2f} %, pixel accuracy "
            f"{base['pixel_accuracy']:.2f} %.",
            "",
        ]
    lines += [
        "| model | backend | precision | resolution | mIoU % | pixel acc. % | images |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        res = "x".join(map(str, r["resolution"] or []))
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['precision']} | {res} | "
            f"{r['miou']:.2f} | {r['pixel_accuracy']:.2f} | {r['images']} |"
        )
    if cmp:
        lines += [
            "",
            f"INT8 vs FP32 ONNX: mIoU delta {cmp['delta_miou']:+.2f} points, pixel flip rate "
            f"{100 * cmp['flip_rate']:.3f} %.",
        ]
    if gate:
        lines += ["", f"INT8 accuracy gate at export: `{json.dumps(gate)}`"]
    if rows:
        names = list(rows[0]["per_class_iou"])
        lines += [
            "",
            "Per-class IoU (%; '-' = class in neither ground truth nor prediction):",
            "",
            "| class | " + " | ".join(r["model"] for r in rows) + " |",
            "|---|" + "---|" * len(rows),
        ]
        for n in names:
            vals = [r["per_class_iou"][n] for r in rows]
            if all(v is None for v in vals):
                continue
            lines.append(
                f"| {n} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in vals) + " |"
            )
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
