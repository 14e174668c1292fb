"""What compat.py promises: the same behaviour and no deprecation noise on 4.57 and 5.x."""
import warnings

import pytest
import torch

import vla_backbone
from vla_backbone import compat


@pytest.fixture(scope="module")
def backbone():
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure", inference_mode=True)
    return backbone.eval()


def test_forward_with_every_argument_raises_no_deprecation_warning(backbone):
    ids = torch.tensor([[1, 20, 30, 40]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        first = backbone(input_ids=ids[:, :-1], attention_mask=torch.ones_like(ids[:, :-1]), use_cache=True,
                         output_attentions=False, output_hidden_states=True, return_dict=True)
        cache = compat.output_cache(first)
        backbone(input_ids=ids[:, -1:], attention_mask=torch.ones_like(ids), position_ids=torch.tensor([[3]]),
                 past_key_values=cache, use_cache=True, labels=ids[:, -1:])
    assert cache.get_seq_length() == 4


def test_forward_kwargs_drop_unset_and_rename_cache():
    class CalledCache(torch.nn.Module):
        def forward(self, input_ids=None, attention_mask=None, cache=None, return_dict=None): ...

    class CalledPastKeyValues(torch.nn.Module):
        def forward(self, input_ids=None, attention_mask=None, past_key_values=None, return_dict=None): ...

    for model, name in ((CalledCache(), "cache"), (CalledPastKeyValues(), "past_key_values")):
        kwargs = compat.forward_kwargs(model, input_ids=1, attention_mask=None, past_key_values="c", return_dict=None)
        assert kwargs == {"input_ids": 1, name: "c"}


def test_checkpointing_round_trip_without_warnings(backbone):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        compat.enable_checkpointing(backbone.llm, use_reentrant=True)
        assert compat.is_checkpointing(backbone.llm)
        compat.disable_checkpointing(backbone.llm)
        assert not compat.is_checkpointing(backbone.llm)


def test_checkpointing_registers_the_input_hook_only_on_v5():
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("opt-125m", inference_mode=True)
    assert not compat.has_input_grad_hook(backbone.llm)
    backbone.enable_gradient_checkpointing()
    assert compat.has_input_grad_hook(backbone.llm) == compat.CHECKPOINTING_REGISTERS_INPUT_HOOK == compat.IS_V5


def test_has_input_grad_hook_sees_a_replaced_embedding():
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("phi-2-3b")
    assert compat.has_input_grad_hook(backbone.llm)
    old = backbone.llm.get_input_embeddings()
    backbone.llm.set_input_embeddings(torch.nn.Embedding(old.num_embeddings, old.embedding_dim))
    assert not compat.has_input_grad_hook(backbone.llm)


def test_backbone_checkpointing_keeps_exactly_one_input_hook():
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    embedding = backbone.llm.get_input_embeddings()
    assert len(embedding._forward_hooks) == 1
    backbone.enable_gradient_checkpointing()
    assert len(embedding._forward_hooks) == 1 and compat.has_input_grad_hook(backbone.llm)
    for handle in compat.input_grad_hooks(backbone.llm):
        handle.remove()
    assert not embedding._forward_hooks, "every hook must be removable through the handles"


def test_checkpointing_restores_the_input_hook_when_the_library_does_not(monkeypatch):
    """A transformers that enables checkpointing without registering its own hook still leaves exactly one."""
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    model = backbone.llm
    name = "activation_checkpointing_enable" if hasattr(model, "activation_checkpointing_enable") else "gradient_checkpointing_enable"
    original = getattr(type(model), name)

    def enable_without_hook(self, *args, **kwargs):
        original(self, *args, **kwargs)
        for handle in compat.input_grad_hooks(self):
            handle.remove()

    monkeypatch.setattr(type(model), name, enable_without_hook)
    backbone.enable_gradient_checkpointing()
    assert compat.is_checkpointing(model)
    assert compat.has_input_grad_hook(model) and len(model.get_input_embeddings()._forward_hooks) == 1
