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
from .preprocess import check_frame, preprocess
from .segmenter import Segmenter
from .sources import open_source

__all__ = ["Backend", "Segmenter", "check_frame", "choose_backend", "open_source", "preprocess"]
