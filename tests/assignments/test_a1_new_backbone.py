"""Grader for A1 · a backbone for GPT-2 (notebooks/*/assignments/A1_new_backbone).

    pytest tests/assignments/test_a1_new_backbone.py --notebook path/to/A1_new_backbone.py
"""
import inspect

import pytest
import torch

ASSIGNMENT = "A1_new_backbone"
ACTION_PROMPT = "What action should the robot take to pick up the red cup?"


def test_notebook_runs_top_to_bottom(notebook):
    notebook.assert_ran_to_the_end()


def _gpt2(notebook):
    """The student's class, the offline checkpoint and one loaded backbone (built once per notebook)."""
    cls = notebook["GPT2LLMBackbone"]
    path = notebook["TINY_GPT2"]

    def build():
        try:
            return cls("gpt2-124m", hf_hub_path=path)
        except NotImplementedError:
            raise
        except Exception as exc:
            pytest.fail(f"A1: GPT2LLMBackbone('gpt2-124m', hf_hub_path=TINY_GPT2) raised {type(exc).__name__}: {exc}",
                        pytrace=False)

    return cls, path, notebook.cached("backbone", build)


def _prompt_ids(backbone, answer=None):
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", ACTION_PROMPT)
    if answer is not None:
        builder.add_turn("gpt", answer)
    return backbone.get_tokenizer()(builder.get_prompt(), add_special_tokens=True).input_ids


def test_registry(notebook):
    models = notebook["GPT2_MODELS"]
    assert isinstance(models, dict) and models, "GPT2_MODELS must be a non-empty dict: backbone id -> hub repo"
    assert models.get("gpt2-124m") == "openai-community/gpt2", (
        f"GPT2_MODELS['gpt2-124m'] is {models.get('gpt2-124m')!r}; the 124M model lives at 'openai-community/gpt2'"
    )
    expected = {"gpt2-355m": "openai-community/gpt2-medium", "gpt2-774m": "openai-community/gpt2-large",
                "gpt2-1.5b": "openai-community/gpt2-xl"}
    for backbone_id, repo in models.items():
        assert backbone_id.startswith("gpt2"), f"'{backbone_id}' in GPT2_MODELS does not look like a GPT-2 id"
        if backbone_id in expected:
            assert repo == expected[backbone_id], f"GPT2_MODELS['{backbone_id}'] should be '{expected[backbone_id]}'"


def test_class_is_a_complete_family(notebook):
    from vla_backbone.families._common import FamilyBackbone

    cls = notebook["GPT2LLMBackbone"]
    assert inspect.isclass(cls) and issubclass(cls, FamilyBackbone), "GPT2LLMBackbone must subclass FamilyBackbone"
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    assert not missing, f"GPT2LLMBackbone still has abstract members, so it cannot be built: {', '.join(missing)}"
    assert cls.family == "gpt2", f"family is {cls.family!r}, expected 'gpt2'"
    assert cls.models is notebook["GPT2_MODELS"] or cls.models == notebook["GPT2_MODELS"], "models must be GPT2_MODELS"


def test_model_and_layer_classes(notebook):
    gpt2 = _gpt2(notebook)
    from transformers import GPT2LMHeadModel
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    _, _, backbone = gpt2
    assert isinstance(backbone.llm, GPT2LMHeadModel), f"llm is {type(backbone.llm).__name__}; llm_cls_path must name GPT2LMHeadModel"
    assert backbone.transformer_layer_cls is GPT2Block, (
        f"transformer_layer_cls is {backbone.transformer_layer_cls}; decoder_layer_path must name GPT2Block "
        "(transformers.models.gpt2.modeling_gpt2.GPT2Block)"
    )
    assert backbone.embed_dim == 64, f"embed_dim is {backbone.embed_dim}; the tiny replica's hidden size is 64"
    assert backbone.half_precision_dtype is torch.bfloat16, "half_precision_dtype should stay bfloat16"


def test_pad_token_and_resize(notebook):
    gpt2 = _gpt2(notebook)
    _, _, backbone = gpt2
    tokenizer = backbone.get_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert backbone.pad_token_id is not None, "the tokenizer has no PAD token: set pad_token (e.g. '<|pad|>')"
    assert backbone.pad_token_id != eos, "PAD must be a token of its own, not <|endoftext|> (EOS)"
    rows = backbone.llm.get_input_embeddings().weight.shape[0]
    assert rows >= len(tokenizer) and rows % 64 == 0, f"{rows} embedding rows for {len(tokenizer)} tokens; expected a multiple of 64"
    assert backbone.llm.config.pad_token_id == backbone.pad_token_id, "the model config's pad_token_id must match the tokenizer's"


@pytest.mark.parametrize("answer", [None, "move left"])
def test_bos_rule_for_every_id(notebook, answer):
    gpt2 = _gpt2(notebook)
    cls, path, _ = gpt2
    for backbone_id in notebook["GPT2_MODELS"]:
        try:
            backbone = cls(backbone_id, hf_hub_path=path)
        except NotImplementedError:
            raise
        except Exception as exc:
            pytest.fail(f"A1: building '{backbone_id}' raised {type(exc).__name__}: {exc}. Every registered id must "
                        "load (and pass or skip the BOS check by your decision).", pytrace=False)
        tokenizer = backbone.get_tokenizer()
        bos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        ids = _prompt_ids(backbone, answer)
        assert ids[0] == bos, (
            f"'{backbone_id}': the prompt starts with token {ids[0]} ({tokenizer.convert_ids_to_tokens(ids[0])!r}); "
            "the VLM splices patches after position 0, which must be <|endoftext|>"
        )
        assert ids[1] != bos, f"'{backbone_id}': <|endoftext|> twice at the start (template and tokenizer both add it)"
        assert ids.count(bos) == (1 if answer is None else 2), (
            f"'{backbone_id}': <|endoftext|> appears {ids.count(bos)} times; expected once at the start"
            + (" and once as EOS after the answer" if answer else "")
        )
        if answer is not None:
            assert ids[-1] == bos, f"'{backbone_id}': the training prompt must end with <|endoftext|> as EOS"


def test_other_families_keep_their_bos_check(notebook):
    _gpt2(notebook)  # a backbone may register its ids when it is built
    from vla_backbone import hf_causal

    added = set(hf_causal.SPECIAL_CASES) - notebook.package_special_cases
    stray = sorted(added - set(notebook["GPT2_MODELS"]))
    assert not stray, f"only GPT-2 ids may join SPECIAL_CASES; these do not belong there: {stray}"


def test_last_layer_finetune_modules(notebook):
    gpt2 = _gpt2(notebook)
    _, _, backbone = gpt2
    modules = tuple(backbone.last_layer_finetune_modules)
    llm = backbone.llm
    assert len(modules) == 3, f"expected 3 modules (input embeddings, last block, LM head), got {len(modules)}"
    assert modules[0] is llm.get_input_embeddings(), "the first module must be the input embeddings (transformer.wte)"
    assert modules[1] is llm.transformer.h[-1], "the second module must be the last GPT2Block (transformer.h[-1])"
    assert modules[2] is llm.get_output_embeddings(), "the third module must be the LM head (lm_head)"


def test_fsdp_wraps_each_block(notebook):
    gpt2 = _gpt2(notebook)
    from vla_backbone.fsdp import wrap_plan

    _, _, backbone = gpt2
    plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
    assert plan == ["", "llm.transformer.h.0", "llm.transformer.h.1"], f"FSDP would wrap {plan}; expected each GPT2Block"


def test_training_step_with_checkpointing(notebook):
    gpt2 = _gpt2(notebook)
    cls, path, _ = gpt2
    torch.manual_seed(0)
    backbone = cls("gpt2-124m", hf_hub_path=path)
    backbone.requires_grad_(False)
    for module in backbone.last_layer_finetune_modules:
        module.requires_grad_(True)
    backbone.enable_gradient_checkpointing()
    backbone.llm.train()
    ids = torch.tensor([_prompt_ids(backbone, "move left")] * 2)
    loss = backbone(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
    assert torch.isfinite(loss), f"the loss is {loss}"
    loss.backward()
    grad = backbone.llm.transformer.h[-1].mlp.c_fc.weight.grad
    assert grad is not None and grad.abs().sum() > 0, "the last block received no gradient"
    assert backbone.llm.transformer.h[0].mlp.c_fc.weight.grad is None, "the frozen first block received a gradient"


def test_unknown_id_is_rejected(notebook):
    gpt2 = _gpt2(notebook)
    from vla_backbone.errors import UnknownBackboneError

    cls, path, _ = gpt2
    with pytest.raises(UnknownBackboneError):
        cls("llama2-7b-pure", hf_hub_path=path)
