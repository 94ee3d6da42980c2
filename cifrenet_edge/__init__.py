"""cifrenet-edge: CIFReNet from PyTorch to ONNX, INT8 and TensorRT, and a runtime for robots.

Attributes are imported lazily (PEP 562) so that ``import cifrenet_edge.runtime`` on a
robot pulls in neither torch nor onnx. Python 3.8 syntax.
"""

__version__ = "0.2.0"

__all__ = ["CIFReNet", "Segmenter", "__version__"]


def __getattr__(name):  # type: (str) -> object
    if name == "CIFReNet":
        from .model import CIFReNet

        return CIFReNet
    if name == "Segmenter":
        from .runtime import Segmenter

        return Segmenter
    raise AttributeError(f"module 'cifrenet_edge' has no attribute {name!r}")
