"""The machine a number was measured on, and which backends/precisions can run on it."""

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import __version__
from ..errors import ConfigError
from .constants import MAX_SIDE


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _cmd(args: Sequence[str], timeout: float = 5.0) -> Optional[str]:
    if shutil.which(args[0]) is None:
        return None
    try:
        p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unreadable ({type(exc).__name__})"
    out = (p.stdout or p.stderr).strip()
    if p.returncode != 0:
        return f"unreadable (exit {p.returncode}: {out.splitlines()[0] if out else ''})"
    return out


def _dist_version(*names: str) -> Optional[str]:
    from importlib import metadata

    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def _torch_threads() -> Optional[int]:
    """PyTorch's intra-op pool size, only if torch is already loaded (never import it here)."""
    import sys

    t = sys.modules.get("torch")
    return int(t.get_num_threads()) if t is not None else None


def system_info() -> Dict[str, Any]:
    """Device, software and clock/power state: what a number needs to be reproduced."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    m = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    governors = sorted(
        {
            g
            for g in (
                _read(str(p))
                for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")
            )
            if g
        }
    )
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo") or "", re.M)
    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": {
            "model": m.group(1).strip() if m else platform.processor() or platform.machine(),
            "logical_cores": os.cpu_count(),
            "usable_cores": affinity,
            "cgroup_cpu_max": _read("/sys/fs/cgroup/cpu.max"),
            "governor": ",".join(governors) if governors else "not readable (no cpufreq)",
            "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "memory_gb": round(int(mem.group(1)) / 1e6, 1) if mem else None,
        "threads_env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
            if k in os.environ
        },
        "torch_num_threads": _torch_threads(),
        "versions": {
            "cifrenet_edge": __version__,
            "numpy": np.__version__,
            "opencv": _dist_version(
                "opencv-python-headless", "opencv-python", "opencv-contrib-python"
            ),
            "torch": _dist_version("torch"),
            "onnx": _dist_version("onnx"),
            "onnxruntime": _dist_version("onnxruntime", "onnxruntime-gpu"),
            "openvino": _dist_version("openvino"),
            "tensorrt": _dist_version(
                "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_lean"
            ),
        },
        "gpu": None,
        "jetson": None,
    }
    smi = _cmd(
        [
            "nvidia-smi",
            "--query-gpu=name,driver_version,pstate,clocks.sm,clocks.max.sm,clocks.mem,"
            "power.draw,power.limit,temperature.gpu,persistence_mode",
            "--format=csv,noheader",
        ]
    )
    if smi:
        info["gpu"] = {"nvidia_smi": smi.splitlines()}
    tegra = _read("/etc/nv_tegra_release")
    if tegra:
        info["jetson"] = {
            "model": (_read("/proc/device-tree/model") or "unknown").rstrip("\x00"),
            "l4t": tegra.splitlines()[0],
            "nvpmodel": _cmd(["nvpmodel", "-q"]) or "nvpmodel not found",
            "jetson_clocks": _cmd(["jetson_clocks", "--show"])
            or "jetson_clocks not found (or needs sudo: run 'sudo jetson_clocks --show')",
        }
    return info


# --------------------------------------------------------------------------- availability


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _gpu_reason() -> Optional[str]:
    """None when TensorRT can run here, else why not and what fixes it."""
    if not _has("tensorrt"):
        return (
            "TensorRT is not installed: on a machine with an NVIDIA GPU install it (JetPack "
            "on Jetson; on a desktop the extra 'cifrenet-edge info --env' names for its GPU, "
            "e.g. pip install 'cifrenet-edge[trt86,cuda]' on a 1080 Ti)"
        )
    if shutil.which("nvidia-smi") is None and _read("/etc/nv_tegra_release") is None:
        return "no NVIDIA GPU/driver found (nvidia-smi missing): TensorRT needs an NVIDIA GPU"
    return None


def availability(backend: str, precision: str) -> Optional[str]:
    """None when ``backend`` can run ``precision`` here; else a reason that names the fix."""
    if backend == "torch":
        if not _has("torch"):
            return "PyTorch is not installed (pip install torch)"
        if precision == "int8":
            return (
                "PyTorch eager has no INT8 path in this toolkit: use onnxruntime, openvino "
                "or tensorrt"
            )
        if precision == "fp16":
            import torch

            if not torch.cuda.is_available():
                return (
                    "PyTorch FP16 needs a CUDA GPU (CPU half-precision convs are not a fair "
                    "baseline)"
                )
        return None
    if backend == "onnxruntime":
        if not _has("onnxruntime"):
            return "ONNX Runtime is not installed (pip install onnxruntime)"
        if precision == "fp16":
            return (
                "ONNX Runtime's CPU provider has no FP16 convolution kernels: use "
                "--backend tensorrt on an NVIDIA GPU for FP16"
            )
        return None
    if backend == "openvino":
        if not _has("openvino"):
            return "OpenVINO is not installed (pip install openvino)"
        if precision == "fp16":
            return (
                "OpenVINO's CPU plugin does not run FP16 models in FP16 (it converts them): "
                "use fp32 or int8 here, tensorrt on an NVIDIA GPU for FP16"
            )
        return None
    if backend == "tensorrt":
        return _gpu_reason()
    return f"unknown backend {backend!r}"


def parse_choices(text: Optional[str], allowed: Sequence[str], what: str) -> Optional[List[str]]:
    """'a,b' -> ['a','b'] (None or 'all' -> None = every available); unknown: ConfigError."""
    if text is None:
        return None
    items = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not items or "all" in items:
        return None
    aliases = {"ort": "onnxruntime", "ov": "openvino", "trt": "tensorrt", "pytorch": "torch"}
    items = [aliases.get(t, t) for t in items]
    for t in items:
        if t not in allowed:
            raise ConfigError(
                f"unknown {what} {t!r}: use one or more of {', '.join(allowed)}, or all"
            )
    return list(dict.fromkeys(items))


def parse_resolutions(texts: Optional[Sequence[str]]) -> List[Tuple[int, int]]:
    from ..presets import parse_resolution

    out = [parse_resolution(t, max_side=MAX_SIDE) for t in (texts or ["640x360"])]
    return list(dict.fromkeys(out))
