"""Error types of the toolkit.

Every failure a user can cause raises one of these with a one-line message
that names the problem and the fix; the CLI prints that line and exits
non-zero instead of showing a traceback from deep inside a library.
Kept free of torch/onnx and in Python 3.8 syntax: the runtime raises them too.
"""


class CifreNetError(Exception):
    """Base class: the CLI turns any of these into a one-line error, exit code 2."""

    exit_code = 2


class ConfigError(CifreNetError, ValueError):
    """A bad option: unknown preset, malformed resolution, unknown method..."""


class WeightsError(CifreNetError):
    """A checkpoint that is missing, unsafe, unreadable or does not fit the preset."""


class ExportError(CifreNetError):
    """The ONNX export or one of its gates (target check, parity) failed."""


class UnsupportedOpError(ExportError):
    """The graph holds operators the target TensorRT parser does not support."""


class ParityError(ExportError):
    """The exported model does not compute what PyTorch (or FP32) computes."""


class CalibrationError(CifreNetError):
    """Calibration data is missing, unreadable or unsuitable."""


class DatasetError(CifreNetError):
    """A dataset path has the wrong layout or inconsistent content."""


class ModelFileError(CifreNetError):
    """A model file is missing, has no usable metadata, or cannot be opened."""


class FrameError(CifreNetError, ValueError):
    """A frame passed to the runtime is not an HxWx3 uint8 BGR image.

    Raised per call: a camera loop can catch it, drop the frame and go on.
    """


class BackendUnavailableError(CifreNetError):
    """The requested backend/precision cannot run on this machine (says what would make it)."""


class EngineMismatchError(CifreNetError):
    """A TensorRT engine was built for another TensorRT version or GPU."""


class SourceError(CifreNetError):
    """An image/video/camera/bag source cannot be opened or lacks the topic."""


class ClosedError(CifreNetError, RuntimeError):
    """A Segmenter, backend or source used after ``close()`` (open a new one)."""


class AccuracyGateError(ExportError):
    """An INT8 model lost more mIoU against FP32 on labelled data than the gate allows."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of a library's exception text: what goes inside a one-line error."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
