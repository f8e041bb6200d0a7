"""Describe the machine a benchmark ran on (imported by the scripts beside this file).

Only the standard library, torch and torchvision: the benchmarks run on a GPU machine
whose image lacks some of the runtime's dependencies.
"""

from __future__ import annotations

import os
import platform
import sys

import torch


def machine_info(device: torch.device) -> dict[str, str | int]:
    """CPU model, GPU name (if any), thread count, load average and library versions."""
    import torchvision

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError as exc:
        print(f"note: could not read /proc/cpuinfo ({exc}); using platform.processor()", file=sys.stderr)
    info: dict[str, str | int] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15min": " ".join(f"{load:.1f}" for load in os.getloadavg()),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
