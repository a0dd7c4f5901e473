"""hf_rtp: distil image datasets into addressable memories (Deng & Russakovsky, NeurIPS 2022), HF native."""

import importlib
from typing import Any

from transformers import AutoConfig, AutoModel

from .configuration_memory import AddressableMemoryConfig, BudgetError
from .modeling_memory import AddressableMemory, CheckpointError, MemoryOutput

# Registered at import so AutoConfig / AutoModel load saved memories with no remote code.
AutoConfig.register(AddressableMemoryConfig.model_type, AddressableMemoryConfig, exist_ok=True)
AutoModel.register(AddressableMemoryConfig, AddressableMemory, exist_ok=True)

# The training loop (Accelerate and the engine) loads on first use, so loading a memory stays light.
_LAZY = {"DistillConfig": "distill", "Distiller": "distill", "MemoryBank": "bank", "distill_memory": "pipeline",
         "distill_dataset": "pipeline", "init_from_real": "initialization"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_rtp' has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = [
    "AddressableMemory",
    "AddressableMemoryConfig",
    "BudgetError",
    "CheckpointError",
    "DistillConfig",
    "Distiller",
    "MemoryBank",
    "MemoryOutput",
    "distill_dataset",
    "distill_memory",
    "init_from_real",
]
