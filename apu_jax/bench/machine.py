"""What a benchmark ran on: CPU model and cores, devices, library versions, matmul precision."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

import jax

# Every benchmark pins this: float32 matmuls could otherwise run as TF32/bf16 passes on some accelerators.
MATMUL_PRECISION = "highest"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """JSON-ready description of the machine and software a benchmark ran with."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average_1_5_15min": load,
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "smplx": _version("smplx"),
        "matmul_precision": MATMUL_PRECISION,
    }
