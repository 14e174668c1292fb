"""Llama-2 (pure and chat) and Vicuna v1.5 backbones."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from vla_backbone.families._common import FamilyBackbone
from vla_backbone.prompting import LLaMa2ChatPromptBuilder, PromptBuilder, PurePromptBuilder, VicunaV15ChatPromptBuilder

# === Registry: backbone id -> HuggingFace hub repo ===
LLAMA2_MODELS = {
    "llama2-7b-pure": "meta-llama/Llama-2-7b-hf",
    "llama2-13b-pure": "meta-llama/Llama-2-13b-hf",
    "llama2-7b-chat": "meta-llama/Llama-2-7b-chat-hf",
    "llama2-13b-chat": "meta-llama/Llama-2-13b-chat-hf",
    "vicuna-v15-7b": "lmsys/vicuna-7b-v1.5",
    "vicuna-v15-13b": "lmsys/vicuna-13b-v1.5",
}


class LLaMa2LLMBackbone(FamilyBackbone):
    family = "llama2"
    models = LLAMA2_MODELS
    llm_cls_path = "transformers.LlamaForCausalLM"
    decoder_layer_path = "transformers.models.llama.modeling_llama.LlamaDecoderLayer"
    # Llama-2 ships without a PAD token; batching needs one (id 32000, hence 32064 embedding rows).
    pad_token = "<PAD>"
    # The hub's tokenizer_config says `"legacy": false`. transformers 4.x ignored that for the fast tokenizer, but 5.x
    # rebuilds the tokenizer and honours it, dropping the "▁" before a word that follows a special token written in
    # the text ("</s>In:" -> 797 instead of 512). OpenVLA checkpoints were trained on the 4.x ids: keep them.
    tokenizer_kwargs = {"legacy": True}

    @property
    def prompt_builder_fn(self) -> type[PromptBuilder]:
        if self.identifier.endswith("-pure"):
            return PurePromptBuilder
        if self.identifier.endswith("-chat"):
            return LLaMa2ChatPromptBuilder
        return VicunaV15ChatPromptBuilder

    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.model.embed_tokens, self.llm.model.layers[-1], self.llm.lm_head)
