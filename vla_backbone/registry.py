"""Backbone ids -> family class and hub path, and the one call that loads a backbone from any source."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from vla_backbone.errors import UnknownBackboneError
from vla_backbone.families import FAMILIES
from vla_backbone.families._common import FamilyBackbone
from vla_backbone.hf_causal import HFCausalLLMBackbone

# === Registry: backbone id -> family class (each family module holds its own id -> hub table) ===
LLM_BACKBONES: dict[str, type[FamilyBackbone]] = {
    backbone_id: family for family in FAMILIES for backbone_id in family.models
}

SOURCES = ("tiny", "hub")
SOURCE_ENV = "VLA_BACKBONE_SOURCE"


def list_backbones() -> list[str]:
    """Every registered backbone id, sorted."""
    return sorted(LLM_BACKBONES)


def backbone_class(llm_backbone_id: str) -> type[FamilyBackbone]:
    """The family class that serves ``llm_backbone_id``."""
    if llm_backbone_id not in LLM_BACKBONES:
        raise UnknownBackboneError(
            f"Unknown backbone id '{llm_backbone_id}'. Known ids: {', '.join(list_backbones())}."
        )
    return LLM_BACKBONES[llm_backbone_id]


def hub_path(llm_backbone_id: str) -> str:
    """The HuggingFace repo of the real weights for ``llm_backbone_id``."""
    return backbone_class(llm_backbone_id).models[llm_backbone_id]


def resolve_source(source: Optional[str] = None) -> str:
    """``source`` if given, else ``$VLA_BACKBONE_SOURCE``, else ``"tiny"``."""
    return source or os.environ.get(SOURCE_ENV) or "tiny"


def checkpoint_path(llm_backbone_id: str, source: Optional[str] = None) -> str:
    """Where ``llm_backbone_id`` loads from under ``source``: a tiny replica, a hub repo, or a local directory."""
    family = backbone_class(llm_backbone_id)
    source = resolve_source(source)
    if source == "tiny":
        from vla_backbone.tiny import tiny_checkpoint

        return str(tiny_checkpoint(family.family))
    if source == "hub":
        return family.models[llm_backbone_id]
    # Anything else is a local checkpoint directory; HFCausalLLMBackbone checks it exists and is complete.
    return str(Path(source).expanduser().resolve())


def get_llm_backbone_and_tokenizer(
    llm_backbone_id: str,
    llm_max_length: int = 2048,
    hf_token: Optional[str] = None,
    inference_mode: bool = False,
    source: Optional[str] = None,
) -> tuple[HFCausalLLMBackbone, "object"]:
    """Build the backbone registered as ``llm_backbone_id`` and return it with its tokenizer.

    ``source``: ``"tiny"`` (default; offline replicas), ``"hub"`` (the real weights) or a local checkpoint
    directory. The id is the same under every source, so family-specific behaviour stays keyed on real ids.
    """
    family = backbone_class(llm_backbone_id)
    backbone = family(
        llm_backbone_id,
        llm_max_length=llm_max_length,
        hf_token=hf_token,
        inference_mode=inference_mode,
        hf_hub_path=checkpoint_path(llm_backbone_id, source),
    )
    return backbone, backbone.get_tokenizer()
