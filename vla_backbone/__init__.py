"""vla_backbone: how a vision-language-action model wraps its language model, on today's transformers.

Attributes load on first use (as in transformers itself), so `import vla_backbone` costs almost nothing until a
backbone is built: torch and the transformers model code take seconds to import.
"""
import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "LLMBackbone": "vla_backbone.base",
    "HFCausalLLMBackbone": "vla_backbone.hf_causal",
    "SPECIAL_CASES": "vla_backbone.hf_causal",
    "get_llm_backbone_and_tokenizer": "vla_backbone.registry",
    "list_backbones": "vla_backbone.registry",
}

__all__ = ["HFCausalLLMBackbone", "LLMBackbone", "SPECIAL_CASES", "get_llm_backbone_and_tokenizer", "list_backbones"]

if TYPE_CHECKING:
    from vla_backbone.base import LLMBackbone
    from vla_backbone.hf_causal import SPECIAL_CASES, HFCausalLLMBackbone
    from vla_backbone.registry import get_llm_backbone_and_tokenizer, list_backbones


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vla_backbone' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
