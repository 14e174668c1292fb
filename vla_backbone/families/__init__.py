"""One module per LLM family, each with its id -> hub registry at the top."""
from vla_backbone.families.llama2 import LLAMA2_MODELS, LLaMa2LLMBackbone
from vla_backbone.families.mistral import MISTRAL_MODELS, MistralLLMBackbone
from vla_backbone.families.opt import OPT_MODELS, OPTLLMBackbone
from vla_backbone.families.phi import PHI_MODELS, PhiLLMBackbone
from vla_backbone.families.qwen25 import QWEN25_MODELS, Qwen25LLMBackbone

FAMILIES = (LLaMa2LLMBackbone, MistralLLMBackbone, PhiLLMBackbone, Qwen25LLMBackbone, OPTLLMBackbone)

__all__ = [
    "FAMILIES",
    "LLAMA2_MODELS",
    "MISTRAL_MODELS",
    "OPT_MODELS",
    "PHI_MODELS",
    "QWEN25_MODELS",
    "LLaMa2LLMBackbone",
    "MistralLLMBackbone",
    "OPTLLMBackbone",
    "PhiLLMBackbone",
    "Qwen25LLMBackbone",
]
