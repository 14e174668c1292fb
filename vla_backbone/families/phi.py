"""Phi-2 backbone: the family whose tokenizer adds no BOS."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from vla_backbone.families._common import FamilyBackbone
from vla_backbone.prompting import PhiPromptBuilder, PromptBuilder

# === Registry: backbone id -> HuggingFace hub repo ===
PHI_MODELS = {
    "phi-2-3b": "microsoft/phi-2",
}


class PhiLLMBackbone(FamilyBackbone):
    family = "phi"
    models = PHI_MODELS
    llm_cls_path = "transformers.PhiForCausalLM"
    decoder_layer_path = "transformers.models.phi.modeling_phi.PhiDecoderLayer"
    # phi-2's only special token is <|endoftext|> (BOS = EOS = UNK); a distinct PAD keeps padding apart from EOS.
    pad_token = "<|pad|>"

    @property
    def prompt_builder_fn(self) -> type[PromptBuilder]:
        return PhiPromptBuilder

    # Upstream OpenVLA never defines this for Phi, so its class cannot even be instantiated.
    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.model.embed_tokens, self.llm.model.layers[-1], self.llm.lm_head)
