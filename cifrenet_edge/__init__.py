"""cifrenet-edge: CIFReNet from PyTorch to ONNX, INT8 and TensorRT, and a runtime for robots.

Attributes are imported lazily (PEP 562) so that ``import cifrenet_edge.runtime`` on a
robot pulls in neither torch nor onnx. Python 3.8 syntax.
"""

__version__ = "0.2.0"

__all__ = ["CIFReNet", "Segmenter", "__version__"]


def __getattr__(name):  # type: (str) -> object
    if name == "CIFReNet":
        try:
            from .model.cifrenet import CIFReNet
        except ImportError as exc:  # the device install ships the runtime only
            from .device.cli import FULL_INSTALL

            raise ImportError(f"CIFReNet (the PyTorch model) needs {FULL_INSTALL}") from exc

        return CIFReNet
    if name == "Segmenter":
        from .runtime import Segmenter

        return Segmenter
    raise AttributeError(f"module 'cifrenet_edge' has no attribute {name!r}")
