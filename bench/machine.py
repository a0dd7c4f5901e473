"""One line naming the machine a benchmark ran on, for its JSON record and the README."""

from __future__ import annotations

import os
import platform


def describe(device: str = "cpu") -> str:
    import torch

    line = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{line}, {torch.cuda.get_device_name(torch.device(device))}"
    return f"{line}, {'CPU only' if str(device) == 'cpu' and torch.cuda.is_available() else 'no GPU'}"


def default_device() -> str:
    from hf_rtp.evaluate import default_device as package_default

    return package_default()
