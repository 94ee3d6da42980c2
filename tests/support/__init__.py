"""Stand-ins the tests and ``tests/gpu_checks.py`` share: simulated TensorRT, its builder,
cuda-python and pycuda. Nothing here imports a test module."""
