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
    # OpenVLA checkpoints were trained on the ids of the hub's tokenizer.json, which transformers 4.x used as it is.
    # 5.x rebuilds the tokenizer from its class instead: honouring the config's `"legacy": false` it drops the "▁"
    # before a word that follows a special token ("</s>In:" -> 797, not 512), and even with `legacy=True` its
    # Metaspace pre-tokenizer splits whitespace differently (" </s>" -> 29871, 2, not 259, 2). The file itself
    # gives the 4.x ids on every version. A checkpoint with only tokenizer.model was converted by 4.40 as if
    # `legacy` were true, whatever its config said; 4.57 converts it so only when asked, and on 5.x the converted
    # backend is rebuilt as 4.x built it (`compat.split_text_as_4x_converted`).
    tokenizer_from_file = True
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
