"""Mistral v0.1 backbones (base and instruct)."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from vla_backbone.families._common import FamilyBackbone
from vla_backbone.prompting import MistralInstructPromptBuilder, PromptBuilder, PurePromptBuilder

# === Registry: backbone id -> HuggingFace hub repo ===
MISTRAL_MODELS = {
    "mistral-v0.1-7b-pure": "mistralai/Mistral-7B-v0.1",
    "mistral-v0.1-7b-instruct": "mistralai/Mistral-7B-Instruct-v0.1",
}


class MistralLLMBackbone(FamilyBackbone):
    family = "mistral"
    models = MISTRAL_MODELS
    llm_cls_path = "transformers.MistralForCausalLM"
    decoder_layer_path = "transformers.models.mistral.modeling_mistral.MistralDecoderLayer"
    # Mistral, like Llama-2, ships without a PAD token.
    pad_token = "<PAD>"

    @property
    def prompt_builder_fn(self) -> type[PromptBuilder]:
        return PurePromptBuilder if self.identifier.endswith("-pure") else MistralInstructPromptBuilder

    # Upstream OpenVLA never defines this for Mistral, so its class cannot even be instantiated.
    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.model.embed_tokens, self.llm.model.layers[-1], self.llm.lm_head)
