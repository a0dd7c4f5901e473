"""hf_rtp: distil image datasets into addressable memories (Deng & Russakovsky, NeurIPS 2022), HF native."""

# Everything loads on first use (PEP 562), like transformers' own top level: `import hf_rtp` and `hf-rtp --help` stay
# as light as the command needs, while `hf_rtp.AddressableMemory` & co. work as if imported here.

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

_LAZY = {
    "AddressableMemoryConfig": "configuration_memory", "BudgetError": "configuration_memory",
    "AddressableMemory": "modeling_memory", "CheckpointError": "modeling_memory", "MemoryOutput": "modeling_memory",
    "DistillConfig": "distill", "Distiller": "distill", "MemoryBank": "bank", "distill_memory": "pipeline",
    "distill_dataset": "pipeline", "init_from_real": "initialization",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_rtp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


# ---- the Auto classes -------------------------------------------------------------------------------------------
# `import hf_rtp` registers AddressableMemoryConfig / AddressableMemory with AutoConfig / AutoModel, so a saved memory
# loads through transformers' Auto classes with no remote code. The two modules register themselves when imported;
# here we make sure they are imported as soon as transformers is: at once if it already is, else right after its
# first import (in any order: `import hf_rtp` then `from transformers import AutoModel` works).

_OURS = (f"{__name__}.configuration_memory", f"{__name__}.modeling_memory")


def _register_auto_classes() -> None:
    if not any(name in sys.modules for name in _OURS):  # one of ours is importing transformers: it registers itself
        importlib.import_module(".modeling_memory", __name__)


class _AfterTransformers(importlib.abc.MetaPathFinder):
    """Finds `transformers` like the other finders do, and registers our Auto classes once it has executed."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "transformers":
            return None
        sys.meta_path.remove(self)  # once only, and the real finders locate it
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _register_auto_classes()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "transformers" in sys.modules:
    _register_auto_classes()
elif not any(isinstance(finder, _AfterTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AfterTransformers())

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
