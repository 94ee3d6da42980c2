"""What each TensorRT version's Python API offers, as one table the build and runtime consult.

TensorRT changed its Python API in every generation (8.2 binding indices, 8.5 tensor names
and memory pools, 10.x removals, 11.x strong typing only). Code that branches on
``hasattr`` alone silently picks deprecated paths, and code that branches on the version
alone breaks on a build that differs; so every branch asks ``capabilities(version)``, whose
thresholds were read from NVIDIA's binding sources (``shared/trt_api/tensorrt-*.json``) and
are checked against those files by ``tests/test_trt_api.py``.

Stdlib only and Python 3.8 syntax: the runtime backend imports it on the robot.
"""

import re
import threading
from typing import Any, NamedTuple, Optional, Tuple, Union

from ..errors import BackendUnavailableError

Version = Tuple[int, int, int]

# The versions the conformance tests cover, one per deployment target (README: "Deploying
# on a 1080 Ti / on a Jetson").
SUPPORTED_VERSIONS = ("8.2.1", "8.5.2", "8.6.1", "10.3.0", "10.16", "11.1")

# A bare `pip install tensorrt` picks the newest release, which does not run on Pascal
# (TensorRT 10.0+: "Unsupported SM: 0x601"), so the hint names the per-generation extras.
INSTALL_HINT = (
    "install TensorRT on a machine with an NVIDIA GPU (JetPack on a Jetson; on a desktop "
    "`pip install 'cifrenet-edge[trt86]'` for Pascal such as the GTX 1080 Ti, "
    "`pip install 'cifrenet-edge[trt11]'` for Turing and newer: `cifrenet-edge info --env` "
    "names the one this GPU needs) and cuda-python (`pip install 'cifrenet-edge[cuda]'`)"
)


class TrtCaps(NamedTuple):
    """Which API path the code takes on one TensorRT version."""

    version: Version
    memory_pools: bool  # IBuilderConfig.set_memory_pool_limit (8.4+); else max_workspace_size
    tensor_api: bool  # num_io_tensors / set_tensor_address / execute_async_v3 (8.5+)
    binding_api: bool  # num_bindings / execute_async_v2 (8.x only)
    explicit_batch_flag: str  # "required" (8.x), "ignored" (10.x, deprecated), "absent" (11+)
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED usable (10.x)
    always_strongly_typed: bool  # 11+: precision comes only from the ONNX graph
    precision_flags: bool  # BuilderFlag.FP16/INT8 present and not deprecated (< 10.12)
    precision_flags_present: bool  # present at all (< 11)
    implicit_int8: bool  # IInt8EntropyCalibrator2 + config.int8_calibrator (< 11)
    progress_monitor: bool  # IProgressMonitor bindings (10.0+ in Python)
    platform_fast_flags: bool  # Builder.platform_has_fast_fp16/int8 (< 11)
    cuda_graphs: bool  # execute_async_v3 captured into a CUDA graph (8.5+, as trtexec does)
    optimization_level: bool  # IBuilderConfig.builder_optimization_level (8.6+)


def parse_version(text: str) -> Version:
    """'10.16.0.7' / '8.6.1.post1' / '10.16' -> (major, minor, patch)."""
    nums = [int(n) for n in re.findall(r"\d+", str(text))[:3]]
    if not nums:
        raise ValueError(f"not a TensorRT version: {text!r}")
    while len(nums) < 3:
        nums.append(0)
    return (nums[0], nums[1], nums[2])


def capabilities(version: Union[str, Version]) -> TrtCaps:
    """The API paths of one TensorRT version (pure function of the version)."""
    v = parse_version(version) if isinstance(version, str) else tuple(version)
    major = v[0]
    return TrtCaps(
        version=(v[0], v[1], v[2]),
        memory_pools=v >= (8, 4, 0),
        tensor_api=v >= (8, 5, 0),
        binding_api=major < 10,
        explicit_batch_flag="required" if major < 10 else ("ignored" if major == 10 else "absent"),
        strongly_typed_flag=major == 10,
        always_strongly_typed=major >= 11,
        precision_flags=v < (10, 12, 0),
        precision_flags_present=major < 11,
        implicit_int8=major < 11,
        progress_monitor=major >= 10,
        platform_fast_flags=major < 11,
        cuda_graphs=v >= (8, 5, 0),  # trtexec 8.5.2/8.6.1 capture enqueueV3 (sampleInference)
        optimization_level=v >= (8, 6, 0),
    )


def target_for_version(version: Union[str, Version]) -> str:
    """The export target name ("trt8.2" ... "trt11") matching a TensorRT version."""
    v = parse_version(version) if isinstance(version, str) else tuple(version)
    if v[0] >= 11:
        return "trt11"
    if v[0] == 10:
        return "trt10"
    if v[:2] >= (8, 6):
        return "trt8.6"
    if v[:2] >= (8, 5):
        return "trt8.5"
    return "trt8.2"


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or BackendUnavailableError saying how to get it.

    Tests replace this function to run code paths against a strict stand-in module built
    from NVIDIA's binding sources; production code never sees that.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"TensorRT is not installed here ({exc}): {INSTALL_HINT}"
        ) from None
    except OSError as exc:  # the wheel is there but libnvinfer is not loadable
        raise BackendUnavailableError(
            f"TensorRT is installed but its libraries do not load ({str(exc).splitlines()[0]}): "
            f"check the CUDA/driver install, or {INSTALL_HINT}"
        ) from None
    return trt


_LOGGERS = {}  # type: Dict[int, Tuple[Any, Any]]
_LOGGERS_LOCK = threading.Lock()


def shared_logger(trt: Any) -> Any:
    """The process's one ``trt.Logger`` (WARNING): every Builder and Runtime gets this one.

    TensorRT 7.x/8.0 documented the logger as "internally considered a singleton: multiple
    instances of IRuntime and/or IBuilder must all use the same logger", and 8.0 warns that
    it "maintains only a single logger pointer at any given time" (NVIDIA/TensorRT#1475);
    from 8.2 the rule is that a logger must outlive every object created through it, and a
    plugin library keeps the first one it saw (NVIDIA/TensorRT#4134: a second logger
    crashed deserialisation). One logger that lives as long as the process satisfies all of
    them. Keyed by the module object, so a test's stand-in module gets its own.
    """
    with _LOGGERS_LOCK:
        entry = _LOGGERS.get(id(trt))
        if entry is None or entry[0] is not trt:
            entry = (trt, trt.Logger(trt.Logger.WARNING))
            _LOGGERS[id(trt)] = entry
        return entry[1]


_PLUGINS = {}  # type: Dict[int, Any]


def init_plugins(trt: Any, logger: Any) -> None:
    """``trt.init_libnvinfer_plugins(logger, "")`` once per module, before deserialising.

    An engine with a layer from libnvinfer_plugin deserialises only once its creators are
    registered (Polygraphy's ``EngineFromBytes`` calls this first for that reason). The
    signature is ``(logger, namespace)`` from 8.2 to 11.1 (pyPlugin.cpp); the plugin library
    keeps the logger pointer (``plugin::gLogger``), hence the process's shared logger. The
    function is absent from the lean and dispatch runtimes (8.6+, full bindings only): those
    cannot load such engines anyway, so nothing is called there.
    """
    with _LOGGERS_LOCK:
        if _PLUGINS.get(id(trt)) is trt:
            return
        init = getattr(trt, "init_libnvinfer_plugins", None)  # None: lean / dispatch
        if init is not None:
            init(logger, "")
        _PLUGINS[id(trt)] = trt


def trt_version(trt: Any) -> str:
    return str(getattr(trt, "__version__", "0.0.0"))


def enum_member(enum: Any, name: str) -> Optional[Any]:
    """An enum member or None: for members that exist only in some versions."""
    return getattr(enum, name, None)
