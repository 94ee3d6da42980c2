"""Can this CPU run INT8 without saturating? The probe every CPU INT8 decision asks.

x86 CPUs without an int8 dot-product instruction (AVX2-only: Intel before Cascade Lake
and Alder Lake, AMD before Zen 4) multiply int8 with ``VPMADDUBSW``: an unsigned x signed
byte product, summed in pairs into a *16-bit* lane that saturates. oneDNN (OpenVINO) and
ONNX Runtime run a symmetric s8 activation there by shifting it to u8 (+128), so pairs of
large activations times large weights overflow 32767 and the class map breaks: measured on
an AMD EPYC (Zen 3) with this network, 0.60-0.62 pixel agreement with FP32 where the same
Q/DQ file evaluated in float gives 0.94 (``shared/FACTS.md``).
VNNI (``avx512_vnni``, ``avx_vnni``), AMX (``amx_int8``) and Arm's dot product
(``asimddp``) accumulate in 32 bits: no saturation, and neither does TensorRT.

Without a dot product the CPU can still run INT8 safely, per convolution (``u8_inputs``):

- **u8 inputs, 8-bit weights** where the conv's input is provably never negative (every
  ReLU6 output: the inputs of the depthwise and projection convs). The file's symmetric
  int8 codes of such a tensor are 0..127; as u8 with zero point 0 and the same scale (a
  clamp at 127 codes keeps it so by construction) it is the same arithmetic, and
  ``VPMADDUBSW`` takes u8 directly: 2 x 127 x 127 = 32258 < 32767, no overflow.
- **pair-bounded weights** where the input may be negative (oneDNN shifts s8 to u8, codes
  up to 255): per output channel the scale is chosen so that the two largest same-sign
  codes sum to <= 128, so *any* pair of products, whichever two weights oneDNN pairs, stays
  within 255 x 128 = 32640 < 32767 (opposite signs: <= 255 x 127). Requantized from the
  file's float weights (``weights_pair_bounded``); the step is max(p1 + p2, n1 + n2) / 127,
  never coarser than 7-bit weights (2 max / 126) and finer when a channel's second-largest
  weight is smaller than its largest.
- **float** for the conv that reads the network input (3 channels, 27 taps: 7-bit weights
  cost the most accuracy there and its int8 kernel gains little), on the file's own
  quantized values (``dequantized_8bit``).

Measured (640x360 probe model, 12 held-out scenes, Q/DQ evaluated in float): the file
0.932 agreement with FP32, this variant 0.929 (with 7-bit instead of pair-bounded weights
0.926), 7-bit weights everywhere 0.872; OpenVINO under an AVX2 cap runs it at the speed of
the all-7-bit variant (per-node profile minima within 4 %).
The older all-7-bit variant (``weights_7bit``) stays as the fallback for files exported
before ``u8_inputs`` existed. The export verifies each variant the same way on every
machine (Q/DQ evaluated in float) and records it; the runtime runs one only when that
record passed.

The probe is forceable, so both paths run in CI on any machine:
``CIFRENET_EDGE_INT8_DOT=1|0`` (or ``force=``). It also honours oneDNN's ISA cap
(``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA``, which OpenVINO's CPU plugin obeys): capped
at AVX2, an AVX-512 VNNI Xeon computes exactly as an AVX2-only CPU does, which is how the
tests reproduce the saturation on a VNNI machine. OpenVINO's own properties do not tell:
``OPTIMIZATION_CAPABILITIES`` lists ``INT8`` on AVX2-only CPUs too.

numpy + standard library, Python 3.8 syntax (the runtime imports it on robots).
"""

import functools
import os
import platform
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..manifest import Manifest, ManifestLike

FORCE_ENV = "CIFRENET_EDGE_INT8_DOT"
ONEDNN_CAP_ENVS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
X86_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
ARM_DOT_FLAGS = ("asimddp",)
# oneDNN ISA cap values that still include an int8 dot product (oneDNN's cpu_isa_t order:
# avx2 < avx2_vnni < avx2_vnni_2; avx512_core < avx512_core_vnni < avx512_core_bf16 <
# avx10_1_512 (= avx512_core_fp16) < the AMX levels). "ALL"/"DEFAULT" mean no cap.
_ONEDNN_CAPS_WITH_DOT = frozenset(
    {
        "ALL",
        "DEFAULT",
        "AVX2_VNNI",
        "AVX2_VNNI_2",
        "AVX512_CORE_VNNI",
        "AVX512_CORE_BF16",
        "AVX10_1_512",
        "AVX512_CORE_FP16",
        "AVX10_1_512_AMX",
        "AVX512_CORE_AMX",
        "AVX10_1_512_AMX_FP16",
        "AVX512_CORE_AMX_FP16",
    }
)
W7_QMAX = 63  # 7-bit symmetric weights: 2 x 255 x 64 < 2**15, no 16-bit pair overflow
INT8_QMAX = 127
U8_CODE_MAX = 127  # u8 codes of a non-negative s8 tensor: 2 x 127 x 127 < 2**15 with 8-bit w
PAIR_CODE_SUM_MAX = 128  # two same-sign weight codes of a channel: 255 x 128 = 32640 < 2**15
# Variant names in the manifest's parity.variants, best first, for CPUs without a dot product.
NO_DOT_VARIANTS = ("u8_inputs", "weights_7bit")
CPUINFO = "/proc/cpuinfo"


class Int8Support(NamedTuple):
    """Whether int8 products accumulate without saturating here, and why (one line)."""

    dot_product: bool
    reason: str
    flags: Tuple[str, ...]  # the dot-product flags found (empty when none)
    arch: str  # "x86_64", "aarch64", ...


def _arch() -> str:
    m = platform.machine().lower()
    if m in ("amd64", "x86_64", "i386", "i686"):
        return "x86_64"
    if m in ("arm64", "aarch64"):
        return "aarch64"
    return m or "unknown"


@functools.lru_cache(maxsize=None)
def _cpuinfo_flags(path: str = CPUINFO) -> Optional[Tuple[str, ...]]:
    """Linux's feature flags ("flags" on x86, "Features" on Arm) of the first CPU.

    Read once per process: every INT8 open (backend choice, then the backend itself) asks.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return tuple(value.split())
    except OSError:
        return None
    return None


def _numpy_flags() -> Tuple[str, ...]:
    """numpy's own CPU dispatch table (works on Windows and macOS too), as cpuinfo names."""
    try:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as feats
        except ImportError:  # numpy 1.x
            from numpy.core._multiarray_umath import __cpu_features__ as feats
    except ImportError:
        return ()
    names = {"AVX512VNNI": "avx512_vnni", "ASIMDDP": "asimddp", "AVX2": "avx2"}
    return tuple(v for k, v in names.items() if feats.get(k))


def cpu_flags() -> Tuple[str, ...]:
    """The CPU's feature flags: /proc/cpuinfo where it exists, else numpy's table."""
    flags = _cpuinfo_flags()
    return flags if flags is not None else _numpy_flags()


def _onednn_cap() -> Optional[str]:
    for name in ONEDNN_CAP_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value.upper()
    return None


def _parse_force(value: Any) -> Optional[bool]:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "auto"):
        return None
    if text in ("1", "true", "yes", "on", "vnni", "dot"):
        return True
    if text in ("0", "false", "no", "off", "avx2", "none"):
        return False
    from ..errors import ConfigError

    raise ConfigError(
        f"{FORCE_ENV}={value!r} is not understood: use 1 (int8 dot product), 0 (none) or auto"
    )


def int8_support(
    force: Optional[bool] = None, flags: Optional[Sequence[str]] = None, arch: Optional[str] = None
) -> Int8Support:
    """Probe (or take as forced) whether this CPU has an int8 dot product.

    Order: ``force`` argument, then ``CIFRENET_EDGE_INT8_DOT``, then the CPU's flags, then
    a oneDNN ISA cap that removes the dot product. ``flags``/``arch`` replace the probe of
    this machine (tests describe other CPUs with them).
    """
    arch = arch or _arch()
    forced = _parse_force(force)
    how = f"forced by the caller (force={forced})"
    if forced is None:
        forced = _parse_force(os.environ.get(FORCE_ENV))
        how = f"forced by {FORCE_ENV}={os.environ.get(FORCE_ENV, '').strip()}"
    have = tuple(flags) if flags is not None else cpu_flags()
    wanted = X86_DOT_FLAGS if arch == "x86_64" else ARM_DOT_FLAGS
    found = tuple(f for f in wanted if f in have)
    if forced is not None:
        return Int8Support(forced, how, found, arch)
    if not found:
        names = "/".join(wanted)
        what = "AVX2-only x86" if arch == "x86_64" else arch
        return Int8Support(False, f"{what} CPU without {names}", (), arch)
    cap = _onednn_cap()
    if arch == "x86_64" and cap is not None and cap not in _ONEDNN_CAPS_WITH_DOT:
        return Int8Support(
            False,
            f"{'/'.join(found)} present but oneDNN is capped at {cap} (ONEDNN_MAX_CPU_ISA)",
            found,
            arch,
        )
    return Int8Support(True, "/".join(found), found, arch)


def cpu_name() -> str:
    """The CPU's model name, for reports ("unknown" where the OS does not say)."""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("model name", "hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def weights_7bit(weights: np.ndarray, axis: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Float weights -> (int8 values in [-63, 63], float32 per-channel scale along ``axis``).

    The same symmetric per-channel rule as the 8-bit file (scale = max|w| / qmax), with
    qmax 63 instead of 127. Computed from the float weights, not by requantizing the 8-bit
    values (that would round twice). Used by the runtime's OpenVINO backend and by the
    export's verification of this variant, so both compute the same numbers.
    """
    w = np.asarray(weights, dtype=np.float32)
    axes = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=axes, keepdims=True) if axes else np.abs(w)
    scale = (np.maximum(amax, np.float32(1e-12)) / np.float32(W7_QMAX)).astype(np.float32)
    q = np.clip(np.rint(w / scale), -W7_QMAX, W7_QMAX).astype(np.int8)
    return q, scale


def weights_pair_bounded(weights: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Float weights -> (int8 codes, per-output-channel scale) no 16-bit pair sum can overflow.

    Axis 0 is the output channel. Per channel, p1 + p2 (n1 + n2) are the two largest
    positive weights (magnitudes of negative ones); scale = max(p1 + p2, n1 + n2) / 127, so
    rounding keeps every same-sign pair of codes <= 128 (``PAIR_CODE_SUM_MAX``). Checked on
    the result, not assumed.
    """
    w = np.asarray(weights, dtype=np.float32)
    flat = w.reshape(w.shape[0], -1)

    def top2(a: np.ndarray) -> np.ndarray:
        s = -np.sort(-a, axis=1)
        return s[:, 0] + (s[:, 1] if s.shape[1] > 1 else 0.0)

    bound = np.maximum(top2(np.maximum(flat, 0)), top2(np.maximum(-flat, 0)))
    scale = (np.maximum(bound, np.float32(1e-12)) / np.float32(INT8_QMAX)).astype(np.float32)
    q = np.clip(np.rint(flat / scale[:, None]), -INT8_QMAX, INT8_QMAX).astype(np.int8)
    qi = q.astype(np.int32)
    worst = max(int(top2(np.maximum(qi, 0)).max()), int(top2(np.maximum(-qi, 0)).max()))
    if worst > PAIR_CODE_SUM_MAX:  # cannot happen with the rule above; never ship it if it did
        raise ValueError(f"pair-bounded weights reached a pair sum of {worst} codes")
    return q.reshape(w.shape), scale.reshape((-1,) + (1,) * (w.ndim - 1))


def dequantized_8bit(weights: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The file's own 8-bit weights, dequantized: DQ(Q(w)) with its per-channel ``scale``.

    What a float evaluation of the Q/DQ file computes for a weight (ONNX QuantizeLinear:
    round half to even, saturate to int8), for the conv the CPU variant runs in float.
    """
    w = np.asarray(weights, dtype=np.float32)
    s = np.asarray(scale, dtype=np.float32).reshape((-1,) + (1,) * (w.ndim - 1))
    return (np.clip(np.rint(w / s), -128, INT8_QMAX) * s).astype(np.float32)


class CpuInt8Plan(NamedTuple):
    """How the runtime executes an INT8 model on this CPU, or why it will not."""

    backend: Optional[str]  # "openvino" / "onnxruntime", None = refused
    weight_bits: int  # 8, or 7 (the narrowest weights of a non-saturating variant)
    reason: str  # one line, shown as Segmenter.reason / in the refusal
    variant: str = "file"  # "file", or the manifest's parity.variants name it runs


_VARIANT_WORDS = {
    "u8_inputs": "u8 inputs with 8-bit weights where the input is never negative, "
    "pair-bounded (about 7.5-bit) weights elsewhere, the first conv in float",
    "weights_7bit": "7-bit weights",
}


def fp32_hint(path: str, manifest: Manifest) -> str:
    """'open <the FP32 file> instead' with the file this INT8 model was quantized from."""
    src = manifest.source_onnx
    if src:
        near = os.path.join(os.path.dirname(str(path)), os.path.basename(str(src)))
        return f"open the FP32 model {near if os.path.exists(near) else src} instead"
    return "open the FP32 export of this model instead"


def plan_cpu_int8(
    path: str,
    manifest: ManifestLike,
    support: Int8Support,
    openvino: bool,
    onnxruntime: bool,
    backend: Optional[str] = None,
) -> CpuInt8Plan:
    """The one rule for INT8 on a CPU (runtime choice, export check, info --env, bench).

    With a dot product: OpenVINO on x86 (about 2x its FP32 on the Q/DQ file, where ONNX
    Runtime runs it at about 0.5x), else ONNX Runtime. Without: OpenVINO with 7-bit weights
    when the export verified them (x86 only: oneDNN's AVX2 kernels are the saturating
    ones), else a refusal naming the FP32 file. Never a silently saturated class map.
    """
    manifest = Manifest.from_dict(manifest, path)  # a Manifest as it is; a dict checked
    x86 = support.arch == "x86_64"
    if support.dot_product:
        if backend in (None, "openvino") and openvino and x86:
            return CpuInt8Plan(
                "openvino",
                8,
                f"INT8 Q/DQ on an x86-64 CPU with an int8 dot product ({support.reason}): "
                "OpenVINO runs it faster than onnxruntime",
            )
        if backend in (None, "onnxruntime") and onnxruntime:
            return CpuInt8Plan(
                "onnxruntime", 8, f"INT8 Q/DQ on a CPU with an int8 dot product ({support.reason})"
            )
        if backend == "openvino" and openvino:
            return CpuInt8Plan(
                "openvino", 8, f"INT8 Q/DQ on a CPU with an int8 dot product ({support.reason})"
            )
        return CpuInt8Plan(None, 8, "no INT8 CPU backend is installed: pip install openvino")
    recs = [(n, manifest.variant(n)) for n in NO_DOT_VARIANTS]
    passed = [(n, r) for n, r in recs if r and r.get("passed")]
    if backend in (None, "openvino") and openvino and x86 and passed:
        name, rec = passed[0]
        return CpuInt8Plan(
            "openvino",
            7,
            f"INT8 on a CPU without an int8 dot product ({support.reason}): OpenVINO with "
            f"{_VARIANT_WORDS[name]}, which cannot saturate (agreement with FP32 "
            f"{rec['agreement']:.3f} at export, Q/DQ evaluated in float)",
            name,
        )
    rec = next((r for _, r in recs if r), None)
    if backend not in (None, "openvino"):
        why = f"{backend} has no 7-bit path (OpenVINO has: backend='openvino')"
    elif not x86 or not openvino:
        why = "OpenVINO (x86) is not installed" if x86 else "the 7-bit path is x86-only"
    elif not rec:
        why = "this file has no verified 7-bit variant (re-export it with this toolkit)"
    else:
        why = (
            f"its non-saturating variants failed the export's gate "
            f"({'; '.join(rec.get('failures', []))})"
        )
    return CpuInt8Plan(
        None,
        8,
        f"INT8 would saturate on this CPU (no int8 dot product: {support.reason}; its int8 "
        f"kernels sum pairs of products in 16 bits) and {why}: {fp32_hint(path, manifest)}",
    )
