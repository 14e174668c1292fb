"""OPT backbones: small, ungated, and the quickest way to try real weights."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from vla_backbone.families._common import FamilyBackbone
from vla_backbone.prompting import PromptBuilder, PurePromptBuilder

# === Registry: backbone id -> HuggingFace hub repo ===
OPT_MODELS = {
    "opt-125m": "facebook/opt-125m",
    "opt-350m": "facebook/opt-350m",
    "opt-1.3b": "facebook/opt-1.3b",
    "opt-2.7b": "facebook/opt-2.7b",
    "opt-6.7b": "facebook/opt-6.7b",
}


class OPTLLMBackbone(FamilyBackbone):
    family = "opt"
    models = OPT_MODELS
    llm_cls_path = "transformers.OPTForCausalLM"
    decoder_layer_path = "transformers.models.opt.modeling_opt.OPTDecoderLayer"
    # OPT already has <pad>, and its tokenizer prepends </s> as BOS, so it passes the BOS check unchanged.

    @property
    def embed_dim(self) -> int:
        # OPT-350m alone embeds tokens narrower than its hidden state (word_embed_proj_dim 512, hidden_size 1024,
        # with project_in/project_out around the layers). The projector must produce what the embedding produces.
        return self.llm.config.word_embed_proj_dim

    @property
    def prompt_builder_fn(self) -> type[PromptBuilder]:
        return PurePromptBuilder

    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        decoder = self.llm.model.decoder
        return (decoder.embed_tokens, decoder.layers[-1], self.llm.lm_head)
