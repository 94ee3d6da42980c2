"""OpenVINO backend (CPU): the fast way to run an INT8 Q/DQ model on an x86 CPU.

Compiled once with the LATENCY hint (one stream, all cores on one frame: a robot wants the
current frame soon, not many frames eventually) and ``INFERENCE_PRECISION_HINT=f32``: on CPUs
with AMX/AVX512-BF16 OpenVINO would otherwise run float layers in bf16 and quietly change the
class map compared with the parity-checked ONNX Runtime result.

Thread safety: an ``InferRequest`` is not thread-safe, the compiled model is. Requests come
from a small pool (grown on demand to the peak number of concurrent callers, returned after
each call) instead of one per thread, so a ROS executor that creates threads freely cannot
make the pool grow without bound.

numpy + openvino only, Python 3.8 syntax.
"""

import queue
import threading
from typing import Any, Dict, Optional

import numpy as np

try:  # OpenVINO >= 2023.1 exposes the API at the top level
    from openvino import Core, PartialShape, Tensor
except ImportError:  # 2022.x (older robot images)
    from openvino.runtime import Core, PartialShape, Tensor

from ...errors import BackendUnavailableError, ModelFileError, first_line
from .base import Backend, Shape, fixed_precision, parse_device


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
