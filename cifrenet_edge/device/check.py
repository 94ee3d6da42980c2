"""The device check: each known incompatible pair on this machine, one line with its fix.

A first hour on a Jetson or a GPU desktop is lost to pairs that do not fit: a TensorRT
without kernels for this GPU, cuda-python built for a newer CUDA than the driver, two ONNX
Runtime packages fighting over one module, a pip TensorRT wheel on a JetPack image. Each
fails late and far from its cause (after the export and quantization, or as a raw
``RuntimeError`` on the first frame). So the pairs are checked here, once, by
``check_device``: a pure function of injected ``Facts`` (like ``trt.plan.plan_build``), so
each row is tested with faked facts on a machine without a GPU. ``gather_facts`` reads the
real ones and never raises: installed distributions, the driver (``libcuda.so.1`` through
ctypes, so a broken cuda-python cannot hide it) and ``/etc/nv_tegra_release``.

Who runs it: ``cifrenet-edge info --env`` shows every row; ``export --format engine``, the
device builder and ``Segmenter.open`` (engines, and ONNX Runtime's CUDA/TensorRT providers)
call ``require`` with their scope before any work, and an error row stops them with its
line. The facts and their sources (FACTS.md):

* TensorRT vs compute capability, and DLA: the support-matrix and DLA rules of
  ``trt/rules.py`` (``resources/trt_rules.json``, each rule with its source);
* cuda-python 13.x needs an R580+ driver (CUDA 13), 12.x a CUDA 12 driver: a bindings major
  above the driver's CUDA major fails (NVIDIA/cutlass#2866); cuda-python 12.4+ has no
  Python 3.8 wheels (11.8.2 and 12.3.0 do), so JetPack 5 (Python 3.8) uses pycuda or 11.8;
* onnxruntime-gpu >= 1.27 is built for CUDA 13, which has no Pascal kernels (GTX 1080 Ti:
  <= 1.26); ``onnxruntime`` and ``onnxruntime-gpu`` must not be installed together (both
  ship the ``onnxruntime`` module; ONNX Runtime's install docs);
* JetPack lines and their TensorRT: 4.6.x 8.2.1, 5.1.x 8.5.2, 6.1/6.2 10.3, 7.2 10.16
  (JetPack release notes); the L4T release in ``/etc/nv_tegra_release`` names the line
  (R32: JetPack 4, R35: 5, R36: 6, R38: 7; Jetson Linux release pages).

Standard library only, Python 3.8 syntax: the runtime and the device builder import it.
"""

import ctypes
import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import BackendUnavailableError

JETSON_RELEASE = Path("/etc/nv_tegra_release")
ENGINE, ORT_GPU = "engine", "onnxruntime-gpu"  # the scopes ``require`` is called with

# cuda-python per CUDA major: what to install for a driver of that major.
_CUDA_PYTHON_FOR_MAJOR = {
    11: "pip install 'cuda-python>=11.8,<12' (extra cuda11)",
    12: "pip install 'cuda-python>=12.6,<13' (extra cuda12)",
    13: "pip install 'cuda-python>=13,<14' (extra cuda13)",
}
# L4T major -> (JetPack line, TensorRT versions it ships [first, end), what it ships in words)
_JETPACK = {
    32: ("JetPack 4", (8, 0, 0), (8, 3, 0), "8.2.1 (JetPack 4.6.x)"),
    35: ("JetPack 5", (8, 4, 0), (8, 6, 0), "8.5.2 (JetPack 5.1.x)"),
    36: ("JetPack 6", (8, 6, 0), (10, 4, 0), "10.3 (JetPack 6.1/6.2)"),
    38: ("JetPack 7", (10, 0, 0), (12, 0, 0), "10.16 (JetPack 7.2)"),
}
ORT_CUDA13 = (1, 27, 0)  # first onnxruntime-gpu built for CUDA 13


class Facts(NamedTuple):
    """What the check looks at; None where it is unknown or absent."""

    python: Tuple[int, int]
    tensorrt: Optional[str] = None  # the TensorRT this Python imports
    compute_capability: Optional[str] = None
    gpu: Optional[str] = None
    driver_cuda: Optional[str] = None  # CUDA version the driver supports ("12.6"); None: none
    cuda_python: Optional[str] = None  # installed cuda-python / cuda-bindings version
    pycuda: Optional[str] = None
    cuda_library: Optional[str] = None  # the CUDA wrapper that opened ("cuda-python", "pycuda")
    onnxruntime: Optional[str] = None  # the CPU distribution `onnxruntime`
    onnxruntime_gpu: Optional[str] = None
    l4t: Optional[str] = None  # Jetson Linux release ("35.4.1"); None: not a Jetson
    dla_core: Optional[int] = None  # the DLA core asked for
    dla_cores: Optional[int] = None  # DLA cores of this device (None: unknown)


class Row(NamedTuple):
    """One mismatch: a line naming both sides and the fix."""

    check: str
    severity: str  # "error": the scopes' work cannot succeed; "warning": it may, worse
    scopes: Tuple[str, ...]
    line: str
    source: str

    def as_dict(self) -> Dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "scopes": list(self.scopes),
            "line": self.line,
            "source": self.source,
        }


def _version(text: Optional[str]) -> Tuple[int, int, int]:
    nums = [int(n) for n in re.findall(r"\d+", str(text or ""))[:3]]
    return tuple([*nums, 0, 0, 0][:3])  # type: ignore[return-value]


def _major(text: Optional[str]) -> int:
    return _version(text)[0]


def _gpu(f: Facts) -> str:
    name = f.gpu or "this GPU"
    return f"{name} (compute capability {f.compute_capability})" if f.compute_capability else name


# ----------------------------------------------------------------------------- the checks
def _tensorrt_rules(f: Facts) -> List[Row]:
    """TensorRT vs this GPU and its DLA: the rule table's hardware rules, with their sources."""
    if not f.tensorrt or (f.compute_capability is None and f.dla_core is None):
        return []
    from ..trt import rules
    from ..trt.api import parse_version

    c = rules.Context(
        span=rules.version_span(parse_version(f.tensorrt)),
        compute_capability=f.compute_capability,
        device=f.gpu,
        dla_core=f.dla_core,
        dla_cores=f.dla_cores,
    )
    return [
        Row(
            f"tensorrt.{x.rule.id}",
            x.severity,
            (ENGINE,),
            f"TensorRT {f.tensorrt} on {_gpu(f)}: {x.line()}",
            x.rule.source,
        )
        for x in rules.evaluate(c, kinds=("hardware",))
    ]


def _no_driver(f: Facts) -> List[Row]:
    if f.driver_cuda:
        return []
    gpu_side = [
        f"{name} {v}"
        for name, v in (("TensorRT", f.tensorrt), ("onnxruntime-gpu", f.onnxruntime_gpu))
        if v
    ]
    cuda_side = [f"{n} {v}" for n, v in (("cuda-python", f.cuda_python), ("pycuda", f.pycuda)) if v]
    if not gpu_side and not cuda_side:
        return []  # a CPU machine: nothing here wants a GPU
    return [
        Row(
            "driver.missing",
            "error" if gpu_side else "warning",
            (ENGINE, ORT_GPU),
            "no NVIDIA driver or GPU here (libcuda.so.1 does not load) but "
            f"{', '.join(gpu_side + cuda_side)} is installed: install the NVIDIA driver "
            "(JetPack on a Jetson), or run the .onnx model on the CPU (device='cpu')",
            "CUDA driver API: cuDriverGetVersion",
        )
    ]


def _cuda_python(f: Facts) -> List[Row]:
    out = []
    py = "{}.{}".format(*f.python)
    if f.cuda_library:
        pass  # CUDA opened: a library works, whichever it is
    elif f.python < (3, 9) and f.pycuda is None and not f.cuda_python and f.tensorrt:
        # A cuda-python that installed on 3.8 (11.8.2, <= 12.3) imports there: when it is
        # present, the driver rows name what failed, not the Python version.
        out.append(
            Row(
                "cuda-python.python",
                "error",
                (ENGINE,),
                f"Python {py} (JetPack 5) with no CUDA Python library, and the default "
                "`cuda` extra (cuda-python >= 12.6) has no Python 3.8 wheels: install pycuda "
                "(python3 -m pip install pycuda, with /usr/local/cuda/bin on PATH), which the "
                "runtime uses there, or cuda-python 11.8 for JetPack 5's CUDA 11.4 "
                f"({_CUDA_PYTHON_FOR_MAJOR[11]})",
                "PyPI wheels: cuda-python 11.8.2 and 12.3.0 have cp38 wheels, 12.4+ and "
                "cuda-bindings 11.8.7 none",
            )
        )
    elif f.tensorrt and not f.cuda_python and not f.pycuda:
        fix = _CUDA_PYTHON_FOR_MAJOR.get(_major(f.driver_cuda), _CUDA_PYTHON_FOR_MAJOR[12])
        out.append(
            Row(
                "cuda.no-library",
                "error",
                (ENGINE,),
                f"TensorRT {f.tensorrt} is installed but no CUDA Python library (driver: CUDA "
                f"{f.driver_cuda or 'none'}): {fix}, or pip install pycuda",
                "TensorRT's Python samples (cuda-python since 8.6)",
            )
        )
    if f.cuda_python and f.driver_cuda and _major(f.cuda_python) > _major(f.driver_cuda):
        d = _major(f.driver_cuda)
        fix = _CUDA_PYTHON_FOR_MAJOR.get(d, f"install the cuda-python release for CUDA {d}")
        out.append(
            Row(
                "cuda-python.driver",
                "warning" if f.pycuda else "error",  # open_cuda falls back to pycuda
                (ENGINE,),
                f"cuda-python {f.cuda_python} is built for CUDA {_major(f.cuda_python)}, the "
                f"NVIDIA driver supports CUDA {f.driver_cuda}: {fix}, or update the driver "
                "(CUDA 13 needs R580+)",
                "NVIDIA/cutlass#2866 (cuda-python 13 needs an R580+ driver)",
            )
        )
    return out


def _onnxruntime(f: Facts) -> List[Row]:
    out = []
    if f.onnxruntime and f.onnxruntime_gpu:
        out.append(
            Row(
                "onnxruntime.both",
                "error",
                (ORT_GPU,),
                f"onnxruntime {f.onnxruntime} and onnxruntime-gpu {f.onnxruntime_gpu} are both "
                "installed and ship the same `onnxruntime` module (the last one installed wins): "
                "pip uninstall -y onnxruntime onnxruntime-gpu, then pip install onnxruntime-gpu "
                "(GPU) or onnxruntime (CPU)",
                "ONNX Runtime install docs; FACTS.md",
            )
        )
    if not f.onnxruntime_gpu or _version(f.onnxruntime_gpu) < ORT_CUDA13:
        return out
    v = f.onnxruntime_gpu
    if f.driver_cuda and _major(f.driver_cuda) < 13:
        out.append(
            Row(
                "onnxruntime-gpu.driver",
                "error",
                (ORT_GPU,),
                f"onnxruntime-gpu {v} is built for CUDA 13, the NVIDIA driver supports CUDA "
                f"{f.driver_cuda}: pip install 'onnxruntime-gpu<1.27', or update the driver "
                "(R580+)",
                "FACTS.md (onnxruntime-gpu >= 1.27 is CUDA 13); NVIDIA/cutlass#2866",
            )
        )
    if f.compute_capability and _major(f.compute_capability) < 7:
        out.append(
            Row(
                "onnxruntime-gpu.pascal",
                "error",
                (ORT_GPU,),
                f"onnxruntime-gpu {v} is built for CUDA 13, which has no kernels for "
                f"{_gpu(f)} (Pascal or older): pip install 'onnxruntime-gpu<=1.26'",
                "FACTS.md (onnxruntime-gpu >= 1.27: no Pascal)",
            )
        )
    return out


def _jetpack(f: Facts) -> List[Row]:
    if not f.l4t or _major(f.l4t) not in _JETPACK:
        return []
    line, first, end, ships = _JETPACK[_major(f.l4t)]
    where = f"{line} (L4T R{f.l4t})"
    source = "JetPack release notes; Jetson Linux release pages; FACTS.md"
    if not f.tensorrt:
        return [
            Row(
                "jetpack.no-tensorrt",
                "warning",
                (ENGINE,),
                f"{where} ships TensorRT {ships}, this Python finds none: sudo apt install "
                "python3-libnvinfer (JetPack's TensorRT); a virtualenv sees it only when made "
                "with --system-site-packages",
                source,
            )
        ]
    if first <= _version(f.tensorrt) < end:
        return []
    return [
        Row(
            "jetpack.tensorrt",
            "error",
            (ENGINE,),
            f"{where} ships TensorRT {ships}, this Python imports TensorRT {f.tensorrt} (not "
            "JetPack's: pip's TensorRT wheels are for desktops and servers): pip uninstall "
            "tensorrt, and use JetPack's (sudo apt install python3-libnvinfer)",
            source,
        )
    ]


CHECKS = (_tensorrt_rules, _no_driver, _cuda_python, _onnxruntime, _jetpack)


def check_device(facts: Facts) -> List[Row]:
    """Every known mismatch in ``facts``, errors first (pure function: tests fake the facts)."""
    rows = [row for check in CHECKS for row in check(facts)]
    return sorted(rows, key=lambda r: r.severity != "error")


def require(scope: str, facts: Facts, extra: str = "") -> List[str]:
    """Raise BackendUnavailableError (one line) on the error rows of ``scope``; return warnings.

    ``extra``: what the caller was about to do, prepended to the message.
    """
    rows = [r for r in check_device(facts) if scope in r.scopes]
    errors = [r.line for r in rows if r.severity == "error"]
    if errors:
        raise BackendUnavailableError(
            extra + "; ".join(errors) + " (`cifrenet-edge info --env` checks this machine)"
        )
    return [r.line for r in rows]


# ----------------------------------------------------------------------------- the facts
def _dist(*names: str) -> Optional[str]:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        except Exception:  # a broken dist-info must not break the check
            continue
    return None


def libcuda_facts() -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(driver's CUDA, compute capability, name) of device 0 from the driver API; never raises.

    Through ctypes, not cuda-python: the check must see the driver when the bindings do not
    load (a mismatched major, Python 3.8). ``cuDriverGetVersion`` needs no ``cuInit``;
    attributes 75/76 are CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR (cuda.h).
    """
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(v)) != 0 or v.value <= 0:
            return None, None, None
        driver = f"{v.value // 1000}.{(v.value % 1000) // 10}"
        dev, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        if lib.cuInit(0) != 0 or lib.cuDeviceGet(ctypes.byref(dev), 0) != 0:
            return driver, None, None
        lib.cuDeviceGetName(name, 256, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
        cc = f"{major.value}.{minor.value}" if major.value else None
        return driver, cc, name.value.decode("utf-8", "replace") or None
    except Exception:  # no driver, or one that does not load: "no driver" is the fact
        return None, None, None


def python_version() -> Tuple[int, int]:
    return sys.version_info[0], sys.version_info[1]


def jetson_l4t(path: Path = JETSON_RELEASE) -> Optional[str]:
    """'35.4.1' from '# R35 (release), REVISION: 4.1, ...'; None off a Jetson."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def gather_facts(
    tensorrt: Optional[str] = None,
    device: Optional[Dict[str, Any]] = None,
    dla_core: Optional[int] = None,
    dla_cores: Optional[int] = None,
) -> Facts:
    """This machine's facts; ``device`` is ``CudaApi.device_info()`` when CUDA opened.

    DLA cores, when not given: none off a Jetson (DLA is a Jetson SoC engine); unknown on
    one (TensorRT's builder knows, and the build asks it).
    """
    driver, cc, name = None, None, None
    cuda_python = _dist("cuda-python", "cuda-bindings")
    if device:
        drv = device.get("cuda_driver")
        driver = drv if drv and drv != "none" else None
        cc, name = device.get("compute_capability"), device.get("name")
        # CUDA opened: what matters is the library in use and the CUDA it was built for
        in_use = device.get("cuda_library") == "cuda-python"
        cuda_python = device.get("cuda_runtime") if in_use else None
    if driver is None or cc is None:
        d2, cc2, name2 = libcuda_facts()
        driver, cc, name = driver or d2, cc or cc2, name or name2
    l4t = jetson_l4t()
    if dla_cores is None and l4t is None:
        dla_cores = 0
    return Facts(
        python=python_version(),
        tensorrt=tensorrt,
        compute_capability=cc,
        gpu=name,
        driver_cuda=driver,
        cuda_python=cuda_python,
        pycuda=_dist("pycuda"),
        cuda_library=(device or {}).get("cuda_library"),
        onnxruntime=_dist("onnxruntime"),
        onnxruntime_gpu=_dist("onnxruntime-gpu"),
        l4t=l4t,
        dla_core=dla_core,
        dla_cores=dla_cores,
    )


def open_cuda_checked(
    open_cuda: Any,
    tensorrt: str,
    dla_core: Optional[int] = None,
    dla_cores: Optional[int] = None,
) -> Tuple[Any, Dict[str, Any], List[str]]:
    """CUDA for an engine, after the device check: (cuda, device facts, warning lines).

    When CUDA does not open, the check explains why where it knows (a cuda-python built for a
    newer driver, Python 3.8, no driver) before the library's own message; when it opens,
    the device's own facts feed the check (TensorRT vs this GPU, JetPack, DLA).
    """
    try:
        cuda = open_cuda()
        with cuda.activate():
            dev = cuda.device_info()
    except Exception as exc:
        require(ENGINE, gather_facts(tensorrt, None, dla_core, dla_cores))
        if isinstance(exc, BackendUnavailableError):
            raise
        text = str(exc).strip().splitlines()
        raise BackendUnavailableError(
            f"CUDA did not start ({type(exc).__name__}: {text[0] if text else ''}): check the "
            "NVIDIA driver and the CUDA Python library (`cifrenet-edge info --env`)"
        ) from None
    return cuda, dev, require(ENGINE, gather_facts(tensorrt, dev, dla_core, dla_cores))


def rows_as_data(rows: Sequence[Row]) -> List[Dict[str, Any]]:
    return [r.as_dict() for r in rows]
