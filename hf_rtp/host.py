"""Platform tuning: what the host allows (a compiler for torch.compile) and how its allocator behaves.

Kept out of the engine (unroll.py): these are facts about the machine, not about the meta-gradient.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import torch


def keep_host_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system (Linux only).

    An eager unroll on a CPU allocates and frees the same activation tensors (tens of MB) every inner step; with
    glibc's defaults each of them is a fresh mmap or a heap trim, i.e. millions of page faults and seconds of system
    time per outer step. This keeps that memory mapped: the process's peak RSS is unchanged, it just stays resident.
    Process-wide and idempotent; returns False where glibc is not there."""
    global _HOST_MEMORY_KEPT
    if _HOST_MEMORY_KEPT:
        return True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    # Largest values glibc takes: no trimming of the heap top; blocks up to 32 MB come from the heap, not mmap.
    _HOST_MEMORY_KEPT = bool(mallopt(m_trim_threshold, 2**31 - 1)) and bool(mallopt(m_mmap_threshold, 32 * 2**20))
    return _HOST_MEMORY_KEPT


_HOST_MEMORY_KEPT = False


def compiler_available(device: str | torch.device) -> bool:
    """Whether torch.compile can build code for `device` here: Triton for a GPU, a C++ compiler for the CPU."""
    if torch.device(device).type == "cuda":
        return importlib.util.find_spec("triton") is not None
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))
