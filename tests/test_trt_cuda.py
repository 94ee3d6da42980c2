"""The CUDA wrapper against the real cuda-python, where installed (no GPU needed).

cuda-python imports on a machine without a GPU; 13.x then answers cudaErrorInsufficientDriver
(35), 11.8/12.x raise ``RuntimeError: Failed to dlopen libcuda.so.1``. That is the path a CPU
machine (or a Jetson with a broken driver) takes, and it must end in one
BackendUnavailableError line, not a traceback. Every cuda-python name the wrapper calls
is also checked to exist in the installed library (13.x moved modules; a typo would only
surface on a GPU otherwise).
"""

import re
from pathlib import Path

import pytest

from cifrenet_edge.errors import BackendUnavailableError
from cifrenet_edge.trt import cuda as cuda_mod


def _cudart():
    try:
        return cuda_mod.import_cudart()
    except ImportError:
        pytest.skip("cuda-python is not installed (pip install 'cifrenet-edge[cuda]')")


def test_every_cuda_python_name_used_exists():
    rt = _cudart()
    src = Path(cuda_mod.__file__).read_text()
    names = sorted(set(re.findall(r"self\.rt\.(\w+(?:\.\w+)?)", src)))
    assert len(names) > 20
    missing = []
    for name in names:
        obj = rt
        for part in name.split("."):
            if not hasattr(obj, part):
                missing.append(name)
                break
            obj = getattr(obj, part)
    assert missing == []


def test_no_driver_is_one_clear_error():
    rt = _cudart()
    try:
        err, _ = rt.cudaGetDeviceCount()
    except RuntimeError:  # cuda-python 11.8/12.x without libcuda
        err = -1
    if int(err) == 0:
        pytest.skip("a CUDA device is present")
    with pytest.raises(cuda_mod.NoCudaDeviceError) as exc:
        cuda_mod.CudaPython(0)
    msg = str(exc.value)
    assert "cudaGetDeviceCount" in msg and "driver" in msg and "\n" not in msg
    info, why = cuda_mod.probe_cuda()
    assert info is None and "cudaGetDeviceCount" in why


def test_without_any_cuda_library_the_error_says_what_to_install(monkeypatch):
    def no_lib(*a, **k):
        raise ImportError("No module named 'cuda'")

    monkeypatch.setattr(cuda_mod, "CudaPython", no_lib)
    monkeypatch.setattr(cuda_mod, "PyCuda", no_lib)
    with pytest.raises(BackendUnavailableError, match="pip install 'cifrenet-edge\\[cuda\\]'"):
        cuda_mod.open_cuda(0)


def test_version_text():
    assert cuda_mod._version_text(12060) == "12.6"
    assert cuda_mod._version_text(13040) == "13.4"
    assert cuda_mod._version_text(0) == "none"
