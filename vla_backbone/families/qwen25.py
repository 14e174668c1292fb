"""Qwen-2.5 backbones, as MiniVLA (openvla-mini) adds them."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from vla_backbone import compat
from vla_backbone.families._common import FamilyBackbone
from vla_backbone.prompting import PromptBuilder, QwenPromptBuilder

# === Registry: backbone id -> HuggingFace hub repo ===
QWEN25_MODELS = {
    "qwen25-0_5b-pure": "Qwen/Qwen2.5-0.5B",
    "qwen25-0_5b-extra": "Qwen/Qwen2.5-0.5B",
    "qwen25-1_5b-pure": "Qwen/Qwen2.5-1.5B",
    "qwen25-3b-pure": "Qwen/Qwen2.5-3B",
    "qwen25-7b-pure": "Qwen/Qwen2.5-7B",
}

# `-extra` ids add 256 dedicated action tokens instead of reusing the least-used words.
NUM_EXTRA_TOKENS = 256


class Qwen25LLMBackbone(FamilyBackbone):
    family = "qwen25"
    models = QWEN25_MODELS
    llm_cls_path = "transformers.Qwen2ForCausalLM"
    decoder_layer_path = "transformers.models.qwen2.modeling_qwen2.Qwen2DecoderLayer"
    # Qwen already has a PAD token (<|endoftext|>), so pad_token stays None and nothing is added.
    tokenizer_kwargs = {"fix_mistral_regex": False} if compat.FALSE_MISTRAL_REGEX_WARNING else {}

    def extra_tokens(self) -> Sequence[str]:
        return [f"<|extra_{i}|>" for i in range(NUM_EXTRA_TOKENS)] if self.identifier.endswith("-extra") else ()

    @property
    def prompt_builder_fn(self) -> type[PromptBuilder]:
        return QwenPromptBuilder

    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.model.embed_tokens, self.llm.model.layers[-1], self.llm.lm_head)
