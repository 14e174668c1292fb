"""Upstream's client runs unchanged: a VLM written only against OpenVLA's LLMBackbone interface (REFERENCE §5, §11)
builds on every backbone, freezes by each of upstream's stages, and trains with patches spliced after BOS.

The VLM below is this project's own, small stand-in for `PrismaticVLM`: it touches the backbone exactly through the
members upstream's class uses, and nothing else.
"""
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributed.fsdp.wrap import _module_wrap_policy, _or_policy

import vla_backbone
from vla_backbone.actions import ActionTokenizer
from vla_backbone.fsdp import wrap_plan
from vla_backbone.prompting import openvla_action_prompt

IGNORE_INDEX = -100
STAGES = ("align", "finetune", "full-finetune", "last-layer-finetune", "vla-sandwich-train")


class PatchProjector(nn.Module):
    """Vision features -> the LLM's embedding width (upstream's MLP projector, in miniature)."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim)

    def forward(self, features):
        return self.fc2(self.act(self.fc1(features)))


class ClientVLM(nn.Module):
    def __init__(self, llm_backbone, vision_dim: int = 32, patch_pixels: int = 48) -> None:
        super().__init__()
        self.llm_backbone = llm_backbone
        # A stand-in vision backbone: flattened pixel patches -> features.
        self.vision_backbone = nn.Linear(patch_pixels, vision_dim)
        self.projector = PatchProjector(vision_dim, llm_backbone.embed_dim)
        # PrismaticVLM.__init__: answers it scores must be single tokens.
        tokenizer = llm_backbone.tokenizer
        for word in ["True", "False", "Yes", "No", *map(chr, range(ord("A"), ord("Z") + 1))]:
            token_ids = tokenizer.encode(word, add_special_tokens=False)
            assert len(token_ids) == 1, f'String "{word}" is tokenized as more than one token!'

    def freeze_backbones(self, stage: str) -> None:
        vision, llm, projector = self.vision_backbone, self.llm_backbone, self.projector
        trainable = {
            "align": (False, False, True),
            "finetune": (False, True, True),
            "full-finetune": (True, True, True),
            "last-layer-finetune": (False, False, False),
            "vla-sandwich-train": (True, False, True),
        }[stage]
        for module, flag in zip((vision, llm, projector), trainable):
            module.requires_grad_(flag)
        if stage in ("last-layer-finetune", "vla-sandwich-train"):
            for module in llm.last_layer_finetune_modules:
                module.requires_grad_(True)

    def get_fsdp_wrapping_policy(self):
        projector_policy = partial(_module_wrap_policy, module_classes={PatchProjector})
        return partial(_or_policy, policies=[self.llm_backbone.get_fsdp_wrapping_policy(), projector_policy])

    def forward(self, input_ids, attention_mask, pixel_patches, labels):
        projected = self.projector(self.vision_backbone(pixel_patches))
        embeddings = self.llm_backbone.embed_input_ids(input_ids)
        # Patches go right after BOS (position 0); they are attended to and never labelled.
        inputs_embeds = torch.cat([embeddings[:, :1], projected, embeddings[:, 1:]], dim=1)
        patch_mask = torch.ones(projected.shape[:2], dtype=attention_mask.dtype)
        patch_labels = torch.full(projected.shape[:2], IGNORE_INDEX, dtype=labels.dtype)
        return self.llm_backbone(
            input_ids=None,
            attention_mask=torch.cat([attention_mask[:, :1], patch_mask, attention_mask[:, 1:]], dim=1),
            inputs_embeds=inputs_embeds,
            labels=torch.cat([labels[:, :1], patch_labels, labels[:, 1:]], dim=1),
        )


def training_example(backbone, tokenizer):
    """OpenVLA's RLDSBatchTransform in miniature: prompt with the action as the answer; only action + EOS labelled."""
    actions = ActionTokenizer(tokenizer)
    action = np.linspace(-1, 1, 7)
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", openvla_action_prompt("pick up the cup"))
    builder.add_turn("gpt", actions(action))
    input_ids = torch.tensor([tokenizer(builder.get_prompt(), add_special_tokens=True).input_ids])
    labels = input_ids.clone()
    labels[:, : -(len(action) + 1)] = IGNORE_INDEX
    return input_ids, labels


@pytest.mark.parametrize("backbone_id", vla_backbone.list_backbones())
def test_upstream_client_trains_on_every_backbone_in_every_stage(backbone_id):
    backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer(backbone_id)
    vlm = ClientVLM(backbone)
    input_ids, labels = training_example(backbone, tokenizer)
    pixel_patches = torch.randn(1, 4, 48, generator=torch.Generator().manual_seed(0))
    assert backbone.half_precision_dtype == torch.bfloat16 and backbone.identifier == backbone_id

    for stage in STAGES:
        vlm.zero_grad(set_to_none=True)
        vlm.freeze_backbones(stage)
        output = vlm(input_ids, torch.ones_like(input_ids), pixel_patches, labels)
        assert output.logits.shape[1] == input_ids.shape[1] + 4 and torch.isfinite(output.loss)
        output.loss.backward()
        for name, parameter in vlm.named_parameters():
            if parameter.requires_grad:
                assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{stage}: {name} got no gradient"
            else:
                assert parameter.grad is None, f"{stage}: frozen {name} got a gradient"
        if stage == "last-layer-finetune":
            trained = {id(p) for m in backbone.last_layer_finetune_modules for p in m.parameters()}
            assert {id(p) for p in vlm.parameters() if p.requires_grad} == trained


def test_client_wrap_plan_claims_decoder_layers_and_projector():
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    vlm = ClientVLM(backbone)
    plan = wrap_plan(vlm, vlm.get_fsdp_wrapping_policy())
    layers = [n for n, m in vlm.named_modules() if isinstance(m, backbone.transformer_layer_cls)]
    assert plan == ["", *layers, "projector"]


def test_patches_sit_right_after_bos():
    backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    input_ids, _ = training_example(backbone, tokenizer)
    assert input_ids[0, 0].item() == tokenizer.bos_token_id == 1
