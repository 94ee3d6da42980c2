"""OpenVINO backend (CPU): the fast way to run an INT8 Q/DQ model on an x86 CPU.

Compiled once with the LATENCY hint (one stream, all cores on one frame: a robot wants the
current frame soon, not many frames eventually) and ``INFERENCE_PRECISION_HINT=f32``: on CPUs
with AMX/AVX512-BF16 OpenVINO would otherwise run float layers in bf16 and quietly change the
class map compared with the parity-checked ONNX Runtime result.

INT8 on a CPU without an int8 dot product (AVX2-only x86) runs with 7-bit weights
(``cpu_int8``): each quantized convolution's weight chain (float constant -> FakeQuantize
-> ... -> dequantizing Multiply, as OpenVINO imports ``float -> Q -> DQ``) is replaced by
int8 constants in [-63, 63] and their per-channel scale, computed by the same
``weights_7bit`` the export verified. OpenVINO still runs those convolutions with its int8
kernels (checked: same u8 runtime precision), now without 16-bit overflow.

Thread safety: an ``InferRequest`` is not thread-safe, the compiled model is. Requests come
from a small pool (grown on demand to the peak number of concurrent callers, returned after
each call) instead of one per thread, so a ROS executor that creates threads freely cannot
make the pool grow without bound.

numpy + openvino only, Python 3.8 syntax.
"""

import queue
import threading
from typing import Any, Dict, Optional, Tuple

import numpy as np

try:  # OpenVINO >= 2023.1 exposes the API at the top level
    from openvino import Core, PartialShape, Tensor
except ImportError:  # 2022.x (older robot images)
    from openvino.runtime import Core, PartialShape, Tensor

from ...errors import BackendUnavailableError, ModelFileError, first_line
from ..cpu_int8 import weights_7bit
from .base import Backend, Shape, fixed_precision, parse_device

_CONVS = ("Convolution", "GroupConvolution")
_MAX_WALK = 10  # nodes between a conv's weight input and its FakeQuantize (7 seen)


def _walk_to_weights(node: Any) -> Tuple[Any, Any, Any]:
    """(dequantizing Multiply, FakeQuantize, float Constant) above a conv weight, or Nones.

    A float weight reaches the conv as Constant -> [Convert] -> FakeQuantize -> Convert(i8)
    -> Convert -> [Subtract] -> Multiply -> [Reshape]; an unquantized weight as a Constant
    (through Reshape for grouped convs).
    """
    multiply = None
    for _ in range(_MAX_WALK):
        kind = node.get_type_name()
        if kind == "Multiply" and multiply is None:
            multiply = node
        if kind == "FakeQuantize":
            src = node.input_value(0).get_node()
            while src.get_type_name() == "Convert":
                src = src.input_value(0).get_node()
            return multiply, node, (src if src.get_type_name() == "Constant" else None)
        if kind == "Constant" or node.get_input_size() == 0:
            return multiply, None, None
        node = node.input_value(0).get_node()
    return None, None, None


def seven_bit_weights(model: Any) -> Tuple[int, int]:
    """Rewrite every quantized conv weight of an OpenVINO model to 7 bits, in place.

    Returns (convs with quantized weights, convs rewritten); the caller refuses the model
    when they differ (a weight form this cannot derive 7-bit weights from).
    """
    try:
        from openvino import opset13 as ops
    except ImportError:  # 2022.x/2023.0
        from openvino.runtime import opset10 as ops
    quantized, done = 0, 0
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _CONVS:
            continue
        multiply, fq, const = _walk_to_weights(op.input_value(1).get_node())
        if multiply is None and fq is None:
            continue  # float weights (classifier, grouped convs kept float)
        quantized += 1
        if fq is None or const is None or multiply is None:
            continue
        q, scale = weights_7bit(np.asarray(const.get_data(), dtype=np.float32), axis=0)
        out_type = multiply.get_output_element_type(0)
        deq = ops.multiply(ops.convert(ops.constant(q), "f32"), ops.constant(scale))
        if out_type != deq.get_output_element_type(0):
            deq = ops.convert(deq, out_type)
        multiply.output(0).replace(deq.output(0))
        done += 1
    model.validate_nodes_and_infer_types()
    return quantized, done


class OpenVINOBackend(Backend):
    """A compiled model plus a pool of infer requests."""

    name = "openvino"

    def __init__(
        self,
        path: str,
        manifest: Dict[str, Any],
        input_shape: Shape,
        device: str = "auto",
        precision: Optional[str] = None,
        threads: Optional[int] = None,
    ) -> None:
        super().__init__(path, manifest, input_shape, device, precision, threads)
        kind, _ = parse_device(device)
        if kind not in ("auto", "cpu"):
            raise BackendUnavailableError(
                f"the openvino backend runs on the CPU, not {device!r}: for an NVIDIA GPU use "
                "backend='onnxruntime' with onnxruntime-gpu, or a TensorRT engine"
            )
        self.precision = fixed_precision(self.name, precision, manifest)
        self.device = "cpu"
        core = Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            raise ModelFileError(
                f"openvino cannot read {path}: {first_line(exc)} (re-export the model)"
            ) from None
        names_in = [n for p in model.inputs for n in p.get_names()]
        names_out = [n for p in model.outputs for n in p.get_names()]
        want_in, want_out = manifest["input_name"], manifest["output_name"]
        if want_in not in names_in or want_out not in names_out:
            raise ModelFileError(
                f"{path}: manifest names input {want_in!r} / output {want_out!r} but the graph "
                f"has inputs {names_in} and outputs {names_out}: re-export the model"
            )
        self.weight_bits = self._int8_weights(model, path, manifest)
        pshape = model.input(want_in).get_partial_shape()
        want = list(self.input_shape)
        if pshape.is_dynamic:
            model.reshape({want_in: PartialShape(want)})
        else:
            have = [int(d) for d in pshape.to_shape()]
            if have[2:] != want[2:]:
                raise ModelFileError(
                    f"{path}: the graph takes {have[3]}x{have[2]} but its manifest says "
                    f"{want[3]}x{want[2]}: re-export the model"
                )
            self.input_shape = tuple(have)
        self.max_batch = int(self.input_shape[0])
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)  # type: ignore[assignment]
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelFileError(
                f"openvino cannot compile {path}: {first_line(exc)} (try backend='onnxruntime')"
            ) from None
        self._in = self.compiled.input(want_in)
        self._out = self.compiled.output(want_out)
        self._idle = queue.LifoQueue()  # type: queue.LifoQueue
        self._all = []  # type: List[Any]
        self._lock = threading.Lock()

    def _int8_weights(self, model: Any, path: str, manifest: Dict[str, Any]) -> Optional[int]:
        """8 or 7 (the non-saturating CPU variant) for INT8 models, None otherwise."""
        if self.precision != "int8":
            return None
        from . import cpu_int8_plan

        plan = cpu_int8_plan(path, manifest, backend=self.name)
        if plan.backend is None:
            raise BackendUnavailableError(plan.reason)
        if plan.weight_bits == 7:
            quantized, done = seven_bit_weights(model)
            if done != quantized or done == 0:
                raise ModelFileError(
                    f"{path}: {quantized - done} of {quantized} quantized convolutions have a "
                    "weight form the 7-bit CPU path cannot derive from (it needs float "
                    "weights -> Q -> DQ, as this toolkit exports): on this CPU use the FP32 "
                    "model"
                )
        self.int8_plan = plan.reason
        return plan.weight_bits

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        if self.weight_bits is not None:
            d["int8_weight_bits"] = self.weight_bits
        return d

    def _acquire(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
            with self._lock:
                self._all.append(request)
            return request

    def infer(self, x: np.ndarray) -> np.ndarray:
        self._check_open()
        request = self._acquire()
        try:
            request.set_tensor(self._in, Tensor(x, shared_memory=True))
            request.infer()
            # copy out: the request's output memory is reused by the next caller
            return np.array(request.get_tensor(self._out).data, copy=True)
        finally:
            self._idle.put(request)

    @property
    def pool_size(self) -> int:
        """Infer requests created so far (= peak concurrency)."""
        return len(self._all)

    def _close(self) -> None:
        self._all = []
        self._idle = queue.LifoQueue()
        self.compiled = None
