"""The runtime robots embed: ``Segmenter`` over PyTorch, ONNX Runtime, OpenVINO or TensorRT.

Imports numpy and OpenCV only; each backend's library is imported when a model needing it is
opened. Python 3.8 syntax (JetPack 5 ships 3.8), checked by ``vermin`` in the tests.

>>> from cifrenet_edge.runtime import Segmenter, open_source
>>> with Segmenter.open("model.onnx") as seg, open_source("0") as camera:
...     for frame in camera:
...         mask = seg.predict(frame.image)           # HxW uint8 class ids
...         view = seg.overlay(frame.image, mask)     # HxWx3 BGR
"""

from .backends import Backend, choose_backend

try:
    import cv2  # noqa: F401
except ImportError as _cv2_error:
    # A robot without OpenCV may still use the backends alone (the builder needs no OpenCV):
    # without cv2 the package still imports, and the names that need it say so when used.
    _NO_CV2 = str(_cv2_error)

    def __getattr__(name: str) -> object:
        if name in (
            "Prediction",
            "Segmenter",
            "Timing",
            "check_frame",
            "open_source",
            "preprocess",
        ):
            raise ImportError(
                f"cifrenet_edge.runtime.{name} needs OpenCV ({_NO_CV2}): "
                "pip install opencv-python-headless (on a Jetson: apt install python3-opencv)"
            )
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

else:
    from ..preprocess import check_frame, preprocess
    from .segmenter import Prediction, Segmenter, Timing
    from .sources import open_source

__all__ = [
    "Backend",
    "Prediction",
    "Segmenter",
    "Timing",
    "check_frame",
    "choose_backend",
    "open_source",
    "preprocess",
]
