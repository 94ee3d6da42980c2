"""`cifrenet-edge info --env`: what this machine can run, and which precision to export.

The right precision depends on the GPU more than on the model: a GTX 1080 Ti (compute
capability 6.1) runs FP16 at 1/64 of its FP32 rate but INT8 (DP4A) at about 4x, a Jetson
Nano (5.3) has fast FP16 and no INT8, Volta and newer have tensor cores for both. TensorRT's
``platform_has_fast_fp16`` cannot be trusted on every version (NVIDIA/TensorRT#3184), so the
answer comes from the compute capability table below (CUDA C++ Programming Guide, arithmetic
instruction throughput). Every probe here is guarded: the report works on a machine with no
GPU, no TensorRT and no CUDA library, and says what is missing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

# Compute capability -> (fast FP16, fast INT8, FP16 note, INT8 note).
_CC_TABLE: dict[str, tuple[bool, bool, str, str]] = {
    "5.3": (True, False, "2x FP32 (Maxwell Tegra)", "no DP4A: no fast INT8 (Jetson Nano/TX1)"),
    "6.0": (True, False, "2x FP32 (P100)", "no DP4A"),
    "6.1": (False, True, "1/64 of the FP32 rate", "DP4A, about 4x FP32"),
    "6.2": (True, False, "2x FP32 (Jetson TX2)", "no DP4A: no fast INT8"),
}
JETSON_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def precision_support(compute_capability: str | None) -> dict[str, Any]:
    """Fast FP16 / INT8 on a compute capability, with the reason in words."""
    if not compute_capability:
        return {
            "fast_fp16": False,
            "fast_int8": False,
            "fp16_note": "no GPU",
            "int8_note": "no GPU",
        }
    cc = str(compute_capability)
    if cc in _CC_TABLE:
        f16, i8, n16, n8 = _CC_TABLE[cc]
    else:
        try:
            major, minor = (int(p) for p in cc.split(".")[:2])
        except ValueError:
            major, minor = 0, 0
        if (major, minor) >= (7, 0):
            f16, i8 = True, True
            n16 = n8 = "tensor cores" + (" (Volta: INT8 via DP4A/IMMA)" if major == 7 else "")
        else:
            f16, i8, n16, n8 = False, False, "pre-Pascal GPU", "pre-Pascal GPU"
    return {"fast_fp16": f16, "fast_int8": i8, "fp16_note": n16, "int8_note": n8}


def recommend(
    compute_capability: str | None,
    tensorrt: str | None,
    openvino_cpu: bool,
    x86: bool,
    int8_dot: bool,
    int8_reason: str = "",
) -> dict[str, str]:
    """The precision and backend to export for this machine, and why (pure function).

    Without a GPU the answer follows the runtime's CPU INT8 rule (``runtime.cpu_int8``):
    ``int8_dot`` says whether this CPU has an int8 dot product (VNNI/AMX/asimddp).
    """
    if not compute_capability:
        if openvino_cpu and x86 and int8_dot:
            return {
                "precision": "int8",
                "backend": "openvino",
                "reason": f"no NVIDIA GPU; this x86-64 CPU has an int8 dot product "
                f"({int8_reason}): OpenVINO runs the INT8 Q/DQ model about 1.8x faster than "
                "FP32 on such a CPU (benchmarks/int8_cpu/); FP32 ONNX Runtime is the "
                "accuracy reference",
            }
        if openvino_cpu and x86:
            return {
                "precision": "int8",
                "backend": "openvino",
                "reason": f"no NVIDIA GPU and no int8 dot product ({int8_reason}): OpenVINO "
                "runs the INT8 model's verified non-saturating variant here (u8 inputs with "
                "8-bit weights where the input is never negative, 7-bit weights elsewhere; "
                "plain 8-bit weights would saturate its AVX2 kernels); check its speed and "
                "agreement on this CPU with `cifrenet-edge bench`",
            }
        return {
            "precision": "fp32",
            "backend": "onnxruntime",
            "reason": "no NVIDIA GPU: FP32 ONNX on ONNX Runtime's CPU provider (it runs Q/DQ "
            "INT8 slower than FP32)",
        }
    sup = precision_support(compute_capability)
    backend = "tensorrt" if tensorrt else "onnxruntime"
    cc = compute_capability
    if sup["fast_int8"] and not sup["fast_fp16"]:
        return {
            "precision": "int8",
            "backend": backend,
            "reason": f"compute capability {cc}: INT8 is {sup['int8_note']} while FP16 runs at "
            f"{sup['fp16_note']}; use INT8 (FP32 if no calibration frames), never FP16",
        }
    if sup["fast_fp16"] and not sup["fast_int8"]:
        return {
            "precision": "fp16",
            "backend": backend,
            "reason": f"compute capability {cc}: FP16 is {sup['fp16_note']}; INT8: "
            f"{sup['int8_note']}",
        }
    if sup["fast_int8"]:
        return {
            "precision": "int8",
            "backend": backend,
            "reason": f"compute capability {cc}: tensor cores run INT8 and FP16; INT8 (Q/DQ) is "
            "fastest, FP16 needs no calibration frames and keeps FP32 accuracy",
        }
    return {
        "precision": "fp32",
        "backend": backend,
        "reason": f"compute capability {cc}: no fast FP16 or INT8",
    }


# The pip extra of each TensorRT generation (pyproject.toml), newest first, with the export
# target whose TensorRT versions it installs.
TRT_EXTRAS: tuple[tuple[str, str], ...] = (
    ("trt11", "trt11"),
    ("trt10", "trt10"),
    ("trt86", "trt8.6"),
)


def tensorrt_install(compute_capability: str | None, jetson: bool = False) -> dict[str, str]:
    """Which TensorRT this GPU needs and the command that installs it (pure function).

    Read from the support-matrix rules (``trt.rules``, hardware kind), so ``info --env``
    and the build refuse the same GPUs: the newest generation none of them refuses, or,
    where every one is refused (Maxwell) or only some releases are (Volta in 10.x), that
    rule's own fix. On a Jetson, TensorRT comes with JetPack, never from pip.
    """
    from ..trt import rules

    if not compute_capability:
        return {"extra": "", "command": "", "reason": "no NVIDIA GPU: TensorRT does not apply"}
    if jetson:
        return {
            "extra": "",
            "command": "JetPack's TensorRT (apt: nvidia-tensorrt / python3-libnvinfer)",
            "reason": f"a Jetson (compute capability {compute_capability}): its TensorRT is "
            "the one its JetPack ships; the pip wheels are not built for it",
        }
    last_fix = reason = ""
    for extra, target in TRT_EXTRAS:
        c = rules.Context(
            span=rules.TARGET_SPANS[target], compute_capability=str(compute_capability)
        )
        found = [f for f in rules.evaluate(c, ("hardware",)) if f.rule.id.startswith("hw.sm-")]
        if not found:
            cmd = f"pip install 'cifrenet-edge[{extra}]'"
            return {
                "extra": extra,
                "command": cmd,
                "reason": f"compute capability {compute_capability}: the newest TensorRT "
                f"that runs here is the --target {target} generation",
            }
        if all(f.partial for f in found):
            return {"extra": "", "command": found[0].rule.fix, "reason": found[0].rule.refuses}
        last_fix = last_fix or found[0].rule.fix
        reason = found[0].rule.refuses
    return {"extra": "", "command": last_fix, "reason": reason}


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _nvidia_smi() -> dict[str, Any] | None:
    """GPU facts from the driver alone, for machines without a CUDA Python library."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = "name,compute_cap,driver_version,memory.total"
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.strip().splitlines()[0] if out.strip() else ""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 4:
        return None
    return {
        "name": parts[0],
        "compute_capability": parts[1] if parts[1][:1].isdigit() else None,
        "driver": parts[2],
        "total_memory_mib": int(float(parts[3])) if parts[3][:1].isdigit() else None,
    }


def _jetson() -> dict[str, Any] | None:
    if not JETSON_RELEASE.is_file():
        return None
    info: dict[str, Any] = {"l4t": JETSON_RELEASE.read_text(errors="replace").splitlines()[0]}
    if DEVICE_TREE_MODEL.is_file():
        info["model"] = DEVICE_TREE_MODEL.read_bytes().rstrip(b"\0").decode(errors="replace")
    return info


def _tensorrt() -> dict[str, Any]:
    if importlib.util.find_spec("tensorrt") is None:
        return {"version": None, "why": "not installed"}
    try:
        import tensorrt as trt
    except Exception as exc:  # the wheel is present but libnvinfer does not load
        return {"version": None, "why": f"import failed: {str(exc).splitlines()[0]}"}
    from ..trt.api import capabilities, target_for_version

    version = str(trt.__version__)
    caps = capabilities(version)
    return {
        "version": version,
        "target": target_for_version(version),
        "execution_api": "execute_async_v3" if caps.tensor_api else "execute_async_v2",
        "implicit_int8_calibrator": caps.implicit_int8,
        "fp16_via": "builder flag" if caps.precision_flags else "FP16 ONNX (strong typing)",
    }


def _dla_cores() -> int | None:
    """A Jetson's DLA cores, as TensorRT's builder counts them; None where it cannot say."""
    try:
        import tensorrt as trt

        from ..trt.api import shared_logger

        return int(trt.Builder(shared_logger(trt)).num_DLA_cores)
    except Exception:  # no GPU, a broken install: the check then guesses from the platform
        return None


def _onnxruntime() -> dict[str, Any]:
    if importlib.util.find_spec("onnxruntime") is None:
        return {"version": None, "providers": []}
    import onnxruntime as ort

    return {
        "version": ort.__version__,
        "package": "onnxruntime-gpu" if _dist_version("onnxruntime-gpu") else "onnxruntime",
        "providers": list(ort.get_available_providers()),
    }


def _openvino() -> dict[str, Any]:
    if importlib.util.find_spec("openvino") is None:
        return {"version": None, "devices": []}
    try:
        import openvino as ov

        return {"version": ov.get_version(), "devices": list(ov.Core().available_devices)}
    except Exception as exc:
        return {"version": _dist_version("openvino"), "devices": [], "why": str(exc)[:120]}


def _why_no_gpu(smi: dict[str, Any] | None, cuda_why: str) -> str:
    """One short reason; the full CUDA probe message stays under ``cuda.why_not``."""
    reasons = []
    if smi is None:
        reasons.append("no NVIDIA driver (nvidia-smi not found)")
    if "no CUDA Python library" in cuda_why:
        reasons.append("no cuda-python/pycuda")
    elif cuda_why and smi is not None:  # a driver is there, CUDA still fails: say how
        reasons.append(cuda_why)
    return "; ".join(reasons) or "no NVIDIA GPU found"


def environment_report(dla_core: int | None = None) -> dict[str, Any]:
    """Everything ``info --env`` shows, as a JSON-ready dict; never raises for a missing GPU.

    ``checks``: the device check's rows (``device_check.check_device``), each a mismatch with
    its fix; ``dla_core`` adds the DLA rows for that core.
    """
    from ..trt.cuda import probe_cuda
    from .check import check_device, gather_facts

    cuda_info, cuda_why = probe_cuda()
    smi = _nvidia_smi()
    gpu: dict[str, Any] | None = None
    if cuda_info is not None:
        gpu = dict(cuda_info)
        if smi:
            gpu["driver"] = smi.get("driver")
    elif smi is not None:
        gpu = dict(smi)
        gpu["cuda_library"] = None
    if gpu is not None:
        gpu.update(precision_support(gpu.get("compute_capability")))
    trt = _tensorrt()
    ort = _onnxruntime()
    ov = _openvino()
    from ..runtime.cpu_int8 import cpu_name, int8_support

    machine = platform.machine()
    x86 = machine.lower() in ("x86_64", "amd64")
    int8 = int8_support()
    rec = recommend(
        gpu.get("compute_capability") if gpu else None,
        trt.get("version"),
        "CPU" in ov.get("devices", []),
        x86,
        int8.dot_product,
        int8.reason,
    )
    cores = _dla_cores() if dla_core is not None and trt.get("version") else None
    facts = gather_facts(trt.get("version"), cuda_info, dla_core, cores)
    if facts.compute_capability is None and gpu:  # nvidia-smi saw the GPU, the driver API not
        facts = facts._replace(
            compute_capability=gpu.get("compute_capability"), gpu=gpu.get("name")
        )
    return {
        "checks": [row.as_dict() for row in check_device(facts)],
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.release()} {machine}",
        "cpu": {"name": cpu_name(), "int8_dot_product": int8.dot_product, "probe": int8.reason},
        "jetson": _jetson(),
        "gpu": gpu,
        "gpu_why_not": None if gpu else _why_no_gpu(smi, cuda_why),
        "cuda": {
            "library": (cuda_info or {}).get("cuda_library"),
            "runtime": (cuda_info or {}).get("cuda_runtime"),
            "driver": (cuda_info or {}).get("cuda_driver") or (smi or {}).get("driver"),
            "cuda_python": _dist_version("cuda-python", "cuda-bindings"),
            "pycuda": _dist_version("pycuda"),
            "why_not": cuda_why or None,
        },
        "tensorrt": trt,
        "onnxruntime": ort,
        "openvino": ov,
        "torch": _dist_version("torch"),
        "recommendation": rec,
        "tensorrt_install": tensorrt_install(
            gpu.get("compute_capability") if gpu else None, jetson=_jetson() is not None
        ),
    }


def render_environment(report: dict[str, Any], console: Any) -> None:
    """The report as two short tables and the recommendation, for a terminal."""
    from rich.markup import escape
    from rich.table import Table

    def yes(v: Any) -> str:
        return "[green]yes[/]" if v else "[red]no[/]"

    t = Table(title="Machine", show_header=False)
    t.add_column("item")
    t.add_column("value")
    t.add_row("platform", report["platform"] + f", Python {report['python']}")
    cpu = report.get("cpu") or {}
    if cpu:
        dot = "yes" if cpu.get("int8_dot_product") else "[red]no[/]"
        t.add_row("CPU", f"{escape(cpu['name'])}, int8 dot product: {dot} ({escape(cpu['probe'])})")
    if report.get("jetson"):
        j = report["jetson"]
        t.add_row("Jetson", f"{j.get('model', '?')} ({j['l4t']})")
    gpu = report.get("gpu")
    if gpu:
        cc = gpu.get("compute_capability") or "?"
        mem = gpu.get("total_memory_mib")
        t.add_row("GPU", f"{gpu['name']} (compute capability {cc}, {mem} MiB)")
        t.add_row("fast FP16", f"{yes(gpu.get('fast_fp16'))} ({gpu.get('fp16_note')})")
        t.add_row("fast INT8", f"{yes(gpu.get('fast_int8'))} ({gpu.get('int8_note')})")
    else:
        t.add_row("GPU", escape(f"none ({report.get('gpu_why_not')})"))
    cuda = report["cuda"]
    t.add_row(
        "CUDA",
        f"runtime {cuda.get('runtime') or '-'}, driver {cuda.get('driver') or '-'}, "
        f"cuda-python {cuda.get('cuda_python') or '-'}, pycuda {cuda.get('pycuda') or '-'}",
    )
    trt = report["tensorrt"]
    if trt.get("version"):
        t.add_row(
            "TensorRT",
            f"{trt['version']} (target {trt['target']}, {trt['execution_api']}, FP16 via "
            f"{trt['fp16_via']}, calibrator INT8: "
            f"{'yes' if trt['implicit_int8_calibrator'] else 'removed'})",
        )
    else:
        t.add_row("TensorRT", escape(f"none ({trt.get('why')})"))
    need = report.get("tensorrt_install") or {}
    if need.get("command"):
        t.add_row("TensorRT for this GPU", escape(f"{need['command']} ({need['reason']})"))
    ort = report["onnxruntime"]
    t.add_row(
        "ONNX Runtime",
        f"{ort.get('version') or 'none'} providers: {', '.join(ort.get('providers', [])) or '-'}",
    )
    ov = report["openvino"]
    t.add_row(
        "OpenVINO",
        f"{ov.get('version') or 'none'} devices: {', '.join(ov.get('devices', [])) or '-'}",
    )
    t.add_row("PyTorch", report.get("torch") or "none")
    console.print(t)
    render_checks(report.get("checks") or [], console.print)
    rec = report["recommendation"]
    console.print(
        f"[bold]Recommended:[/] --precision {rec['precision']} on {rec['backend']}: "
        + escape(rec["reason"])
    )


def render_checks(rows: list[dict[str, Any]], say: Any) -> None:
    """The device check's rows, one line each (rich markup: ``say`` is console.print)."""
    from rich.markup import escape

    if not rows:
        say("[bold]Device check:[/] no known mismatch on this machine")
        return
    say(f"[bold]Device check:[/] {len(rows)} mismatch{'es' if len(rows) > 1 else ''}")
    for row in rows:
        style = "red" if row["severity"] == "error" else "yellow"
        say(f"  [{style}]{row['severity']}:[/] {escape(row['line'])} [dim]({row['check']})[/]")
