"""Cases the TensorRT test modules share: tiny graphs, ONNX files with manifests, and the
build fixtures over the two stand-ins (the API stand-in of ``trt_standin`` and the modelling
one of ``trt_sim``/``trt_build_sim``). Test modules import these by name; nothing here
imports a test module.
"""

import json
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cifrenet_edge.errors import CifreNetError
from cifrenet_edge.trt import api

from .trt_sim import ComputeStandIn, TrtWorld
from .trt_standin import RecordingCuda, Scenario, StandIn, _manifest


# --------------------------------------------------------------------------- the API stand-in
@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A real (tiny) FP32 ONNX graph Conv -> Resize named like an export, for the FP16 path."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = helper.make_tensor(
        "w", TensorProto.FLOAT, [19, 3, 3, 3], rng.normal(size=19 * 27).astype(np.float32)
    )
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 19, 96, 160])
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Resize", ["c", "", "", "sizes"], ["logits"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 96, 160])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, 96, 160])],
        [w, sizes],
    )
    # opset 13: what every listed parser reads (TensorRT 8.2 stops at 13; trt.rules onnx.opset)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path_factory.mktemp("trt_api") / "tiny_fp32.onnx"
    onnx.save(model, str(path))
    return path


def onnx_with_manifest(tmp_path: Path, src: Path, precision: str, dynamic: bool = False) -> Path:
    dst = tmp_path / f"m_{precision}.onnx"
    dst.write_bytes(src.read_bytes())
    (tmp_path / (dst.name + ".json")).write_text(json.dumps(_manifest(precision, dynamic)))
    return dst


@pytest.fixture
def run_build(monkeypatch, tmp_path, tiny_onnx):
    """Run build_engine against version v's stand-in; returns (result or exception, record)."""
    from cifrenet_edge.trt import build

    def go(
        version: str,
        precision: str,
        dynamic: bool = False,
        onnx_precision: Optional[str] = None,
        **kwargs: Any,
    ):
        scenario = Scenario(
            version,
            dla_cores=kwargs.pop("dla_cores", 0),
            build_fails=kwargs.pop("build_fails", False),
        )
        s = StandIn(version, scenario)
        cuda = RecordingCuda()
        monkeypatch.setattr(api, "import_tensorrt", s.module)
        monkeypatch.setattr(build, "_open_cuda", lambda: cuda)
        onnx_precision = onnx_precision or ("int8" if precision == "int8" else "fp32")
        src = onnx_with_manifest(tmp_path, tiny_onnx, onnx_precision, dynamic)
        result = build.build_engine(
            src,
            precision=precision,
            output=tmp_path / "m.engine",
            quiet=kwargs.pop("quiet", True),
            **kwargs,
        )
        return result, s.rec, cuda

    return go


def engine_files(tmp_path: Path, version: str, dynamic: bool = False) -> Path:
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"serialized-by-stand-in")
    m = _manifest("fp32", dynamic)
    m["kind"] = "engine"
    m["engine"] = {"tensorrt": version, "gpu": "Stand-in GPU", "compute_capability": "8.7"}
    (tmp_path / "m.engine.json").write_text(json.dumps(m))
    return eng


# --------------------------------------------------------------------------- graphs
def qdq_conv(
    *,
    int8_weights: bool = False,
    act_zp: int = 0,
    zp_type: int = TensorProto.INT8,
    zero_point: bool = True,
    scale_type: int = TensorProto.FLOAT,
    act_scale: float = 0.05,
    act_per_channel: bool = False,
    weight_axis: Optional[int] = 0,
    opset: int = 13,
) -> onnx.ModelProto:
    """input -> Q -> DQ -> Conv <- DQ <- (Q <- float weights | int8 weights): one Q/DQ conv."""
    c_out = 4
    np_scale = np.float16 if scale_type == TensorProto.FLOAT16 else np.float32
    w = np.linspace(-1, 1, c_out * 3).astype(np.float32).reshape(c_out, 3, 1, 1)
    a_scale = np.full(3 if act_per_channel else (), act_scale, np_scale)
    w_scale = np.full(c_out, 0.01, np_scale)
    zp_np = np.uint8 if zp_type == TensorProto.UINT8 else np.int8
    inits = [
        onnx.numpy_helper.from_array(a_scale, "a_scale"),
        onnx.numpy_helper.from_array(w_scale, "w_scale"),
        onnx.numpy_helper.from_array(np.full(a_scale.shape, act_zp, zp_np), "a_zp"),
        onnx.numpy_helper.from_array(np.zeros(c_out, np.int8), "w_zp"),
    ]
    a_in = ["input", "a_scale"] + (["a_zp"] if zero_point else [])
    w_axis = {} if weight_axis is None else {"axis": weight_axis}
    a_axis = {"axis": 1} if act_per_channel else {}
    nodes = [
        helper.make_node("QuantizeLinear", a_in, ["a_q"], name="act_q", **a_axis),
        helper.make_node("DequantizeLinear", ["a_q", *a_in[1:]], ["a_dq"], name="act_dq", **a_axis),
    ]
    if int8_weights:
        inits.append(onnx.numpy_helper.from_array(np.round(w / 0.01).astype(np.int8), "w_q"))
    else:
        inits.append(onnx.numpy_helper.from_array(w, "w"))
        nodes.append(
            helper.make_node(
                "QuantizeLinear", ["w", "w_scale", "w_zp"], ["w_q"], name="w_quant", **w_axis
            )
        )
    nodes += [
        helper.make_node(
            "DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_dq"], name="w_dequant", **w_axis
        ),
        helper.make_node("Conv", ["a_dq", "w_dq"], ["logits"], name="conv"),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, c_out, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def mixed_add(second: int = TensorProto.FLOAT16) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"], name="residual_add")],
        "mixed",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("b", second, [1, 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def plain_conv(opset: int) -> onnx.ModelProto:
    w = onnx.numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["y"], name="conv")],
        "plain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


# --------------------------------------------------------------------------- the modelling stand-in
class CcCuda(RecordingCuda):
    """The recording CUDA stand-in, on a GPU of the given compute capability."""

    def __init__(self, cc: str) -> None:
        super().__init__()
        self.cc = cc

    def device_info(self) -> Dict[str, Any]:
        return dict(super().device_info(), compute_capability=self.cc, name=f"GPU cc {self.cc}")


class Machine(NamedTuple):
    world: TrtWorld
    standin: ComputeStandIn


def machine(version: str, cc: str, dla_cores: int = 0) -> Machine:
    world = TrtWorld(
        version, lambda h: None, lambda n: 1, lambda p: None, dla_cores, compute_capability=cc
    )
    return Machine(world, ComputeStandIn(version, world))


def onnx_file(tmp_path: Path, model: onnx.ModelProto, precision: str, dynamic: bool) -> Path:
    path = tmp_path / f"m_{precision}.onnx"
    onnx.save(model, str(path))
    (tmp_path / (path.name + ".json")).write_text(json.dumps(_manifest(precision, dynamic)))
    return path


class Outcome(NamedTuple):
    result: Any  # EngineResult, or the exception raised
    world: TrtWorld
    standin: ComputeStandIn

    def text(self) -> str:
        if isinstance(self.result, BaseException):
            return str(self.result)
        return " ".join(self.result.warnings)


@pytest.fixture
def build_on(monkeypatch, tmp_path, real_images_dir):
    """build_engine through the modelling stand-in of ``version`` on a GPU of ``cc``."""
    from cifrenet_edge.trt import build

    def go(
        version: str,
        cc: str,
        precision: str,
        model: Optional[onnx.ModelProto] = None,
        onnx_precision: Optional[str] = None,
        dynamic: bool = False,
        dla_cores: int = 0,
        **kw: Any,
    ) -> Outcome:
        m = machine(version, cc, dla_cores)
        monkeypatch.setattr(api, "import_tensorrt", m.standin.module)
        monkeypatch.setattr(build, "_open_cuda", lambda: CcCuda(cc))
        onnx_p = onnx_precision or ("int8" if precision == "int8" else "fp32")
        model = model if model is not None else (qdq_conv() if onnx_p == "int8" else plain_conv(13))
        src = onnx_file(tmp_path, model, onnx_p, dynamic)
        if kw.get("int8_mode") == "calibrator":
            kw["calib"] = real_images_dir
        try:
            res: Any = build.build_engine(
                src, precision=precision, output=tmp_path / "e.engine", quiet=True, **kw
            )
        except (CifreNetError, AttributeError, TypeError, RuntimeError) as exc:
            res = exc
        return Outcome(res, m.world, m.standin)

    return go
