"""Shared test fixtures and the `gpu` marker's skip rule."""

import importlib.util
import shutil
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REAL_IMAGES = TESTS / "data" / "real"


def gpu_unavailable_reason():
    """Why TensorRT tests cannot run here, or None when they can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'cifrenet-edge[tensorrt]' on a GPU machine)"
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA driver (nvidia-smi not found)"
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return "cuda-python is not installed (pip install 'cifrenet-edge[cuda]')"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return f"no usable CUDA device (cudaGetDeviceCount: {err})"
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    checked = False
    for item in items:
        if "gpu" in item.keywords:
            if not checked:
                reason, checked = gpu_unavailable_reason(), True
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"gpu test skipped: {reason}"))


@pytest.fixture(scope="session")
def real_images_dir() -> Path:
    """A folder of five real photographs (see tests/data/real/README.md)."""
    return REAL_IMAGES
