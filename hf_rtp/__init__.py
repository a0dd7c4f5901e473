"""hf_rtp: distil image datasets into addressable memories (Deng & Russakovsky, NeurIPS 2022), HF native."""

from transformers import AutoConfig, AutoModel

from .configuration_memory import AddressableMemoryConfig, BudgetError
from .distill import DistillConfig, Distiller
from .modeling_memory import AddressableMemory, CheckpointError, MemoryOutput

# Registered at import so AutoConfig / AutoModel load saved memories with no remote code.
AutoConfig.register(AddressableMemoryConfig.model_type, AddressableMemoryConfig, exist_ok=True)
AutoModel.register(AddressableMemoryConfig, AddressableMemory, exist_ok=True)

__version__ = "0.1.0"
__all__ = [
    "AddressableMemory",
    "AddressableMemoryConfig",
    "BudgetError",
    "CheckpointError",
    "DistillConfig",
    "Distiller",
    "MemoryOutput",
]
