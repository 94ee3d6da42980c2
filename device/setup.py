"""Which files of ../cifrenet_edge the device distribution ships (see pyproject.toml).

The runtime and the engine builder import numpy, OpenCV and their backend only, so the
toolkit's PyTorch/ONNX modules stay out: what is not listed here cannot be imported on the
device, and a test imports the runtime and runs the builder from an install of this folder.
Python 3.8 syntax: a Jetson with JetPack 5 builds it.
"""

import atexit
import os
import shutil
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(os.path.dirname(HERE), "cifrenet_edge")

# package -> the modules shipped (None: every module of that package)
SUBSET = {
    "cifrenet_edge": (
        "__init__",
        "__main__",
        "_io",
        "errors",
        "manifest",
        "preprocess",
        "presets",
    ),
    "cifrenet_edge.data": ("__init__", "calibration", "datasets", "synthetic"),  # --calib frames
    # the device check, run before engine work and by `cifrenet-edge info --env`
    "cifrenet_edge.device": None,
    "cifrenet_edge.runtime": None,
    "cifrenet_edge.runtime.backends": ("__init__", "base", "onnxruntime", "openvino", "tensorrt"),
    "cifrenet_edge.trt": None,
}


class RuntimeSubset(build_py):
    """build_py limited to SUBSET's modules."""

    def find_package_modules(self, package, package_dir):  # type: ignore[override]
        modules = super().find_package_modules(package, package_dir)
        keep = SUBSET.get(package)
        return [m for m in modules if keep is None or m[1] in keep]


if not os.path.isfile(os.path.join(SOURCE, "__init__.py")):
    # pip < 21.3 copies this folder alone to a temporary directory before building it
    raise SystemExit(
        "error: the device distribution builds from the checkout's cifrenet_edge/ beside it "
        f"({SOURCE} is missing): upgrade pip (python3 -m pip install -U 'pip>=21.3'; JetPack "
        "5's is 20.0) and install from the checkout: python3 -m pip install './device[onnxruntime]'"
    )

# Build files and egg-info go to a temporary folder, never into the checkout: setuptools
# would put the egg-info beside cifrenet_edge/ (on the toolkit's sys.path there) and leave
# device/build/ behind, shared by concurrent builds.
WORK = tempfile.mkdtemp(prefix="cifrenet-edge-runtime-build-")
atexit.register(shutil.rmtree, WORK, True)

setup(
    options={"egg_info": {"egg_base": WORK}, "build": {"build_base": os.path.join(WORK, "build")}},
    package_dir={"": ".."},
    packages=list(SUBSET),
    package_data={
        "cifrenet_edge": ["resources/trt_rules.json", "resources/onnx_parser_ops/*.json"]
    },
    cmdclass={"build_py": RuntimeSubset},
)
