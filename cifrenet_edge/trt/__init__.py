"""TensorRT engines: version-aware build, engine manifest, calibrator.

Nothing here imports TensorRT at import time: a CPU machine (or a robot with only the
runtime) imports the package fine. ``build_engine`` lives in ``cifrenet_edge.trt.build``.
"""
