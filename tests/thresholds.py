"""Numeric thresholds whose values depend on the CPU's kernels, and a log of what they saw.

Float results change with the kernels ATen, oneDNN and MKL pick for the CPU (AVX-512, AVX2,
none), and INT8 results with the int8 instructions it has. A threshold tuned on one machine
has failed CI on another, so every such assertion goes through ``check``: it compares, and,
where ``CIFRENET_EDGE_THRESHOLD_LOG`` names a file, appends what it saw there as a JSON line.
``tests/threshold_audit.py`` runs the tests under each kernel ISA with that log and prints
each threshold's values and the margin left.

The product's own gates (the export's parity gate, the INT8 agreement gates) are logged the
same way by a conftest hook, since tests reach them through fixtures rather than asserts.
"""

import json
import os
from typing import Optional

LOG_ENV = "CIFRENET_EDGE_THRESHOLD_LOG"

_OPS = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
}


def record(name: str, value: float, op: str, limit: float, ideal: Optional[float] = None) -> None:
    """Append one observation to the audit log (a no-op unless the log is asked for).

    ``ideal`` is the value a perfect result has (1.0 for an agreement): the margin is then
    read against the room between the threshold and the ideal, not against the threshold.
    """
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    row = {
        "name": name,
        "value": float(value),
        "op": op,
        "limit": float(limit),
        "ideal": ideal,
        "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        "kernels": os.environ.get("CIFRENET_EDGE_AUDIT_KERNELS", "native"),
    }
    with open(path, "a") as f:  # one short line per write: concurrent appends stay whole
        f.write(json.dumps(row) + "\n")


def check(name: str, value: float, op: str, limit: float, ideal: Optional[float] = None) -> bool:
    """``value op limit``, recorded under ``name``; use as ``assert check(...), detail``."""
    record(name, value, op, limit, ideal)
    return bool(_OPS[op](float(value), float(limit)))
