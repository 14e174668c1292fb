"""What every family shares: registry lookup, lazy class imports, the PAD/resize step, bf16."""
from __future__ import annotations

import importlib
from typing import ClassVar, Mapping, Optional, Sequence

import torch
from torch import nn

from vla_backbone.errors import UnknownBackboneError
from vla_backbone.hf_causal import HFCausalLLMBackbone


def import_attr(dotted: str):
    """``"pkg.module.Name"`` -> the object. Families name their classes as strings so `import vla_backbone` stays
    cheap: importing a transformers model class costs seconds."""
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except AttributeError:
        # Raised inside a property of an nn.Module, an AttributeError would be reported as the property missing.
        raise ImportError(f"{dotted!r}: module {module} has no {name}") from None


class FamilyBackbone(HFCausalLLMBackbone):
    """A family is a registry plus a few class attributes; the loading itself is `HFCausalLLMBackbone`'s."""

    family: ClassVar[str]
    models: ClassVar[Mapping[str, str]]  # backbone id -> hub repo
    llm_cls_path: ClassVar[str]  # e.g. "transformers.LlamaForCausalLM"
    decoder_layer_path: ClassVar[str]  # the block FSDP wraps (what checkpointing recomputes is transformers' choice)
    pad_token: ClassVar[Optional[str]] = None  # the PAD token to add, for families whose tokenizer ships without one

    def __init__(
        self,
        llm_backbone_id: str,
        llm_max_length: int = 2048,
        hf_token: Optional[str] = None,
        inference_mode: bool = False,
        use_flash_attention_2: bool = False,
        hf_hub_path: Optional[str] = None,
    ) -> None:
        # Resolved first, so that a wrong class path fails here rather than at FSDP time.
        import_attr(self.decoder_layer_path)
        if llm_backbone_id not in self.models:
            raise UnknownBackboneError(
                f"'{llm_backbone_id}' is not a {self.family} backbone. Known {self.family} ids: "
                f"{', '.join(sorted(self.models))}. vla_backbone.list_backbones() lists every family's ids."
            )
        super().__init__(
            llm_backbone_id,
            llm_family=self.family,
            llm_cls=import_attr(self.llm_cls_path),
            hf_hub_path=hf_hub_path or self.models[llm_backbone_id],
            llm_max_length=llm_max_length,
            hf_token=hf_token,
            inference_mode=inference_mode,
            use_flash_attention_2=use_flash_attention_2,
        )
        self._add_tokens_and_resize(pad_token=self.pad_token, extra_tokens=self.extra_tokens())

    def extra_tokens(self) -> Sequence[str]:
        """Tokens to append to the vocabulary after loading (none by default)."""
        return ()

    @property
    def transformer_layer_cls(self) -> type[nn.Module]:
        return import_attr(self.decoder_layer_path)

    @property
    def half_precision_dtype(self) -> torch.dtype:
        # OpenVLA trains every backbone in bf16: it keeps fp32's exponent range, so activations that overflow fp16 stay finite.
        return torch.bfloat16
