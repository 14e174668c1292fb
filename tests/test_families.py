"""Every registered id, on its tiny replica: the full LLMBackbone contract."""
import functools
import inspect

import pytest
import torch

import vla_backbone
from vla_backbone import LLMBackbone, compat
from vla_backbone.contract import check_backbone_contract
from vla_backbone.families import FAMILIES, QWEN25_MODELS
from vla_backbone.fsdp import wrap_plan
from vla_backbone.hf_causal import SPECIAL_CASES
from vla_backbone.prompting import (
    LLaMa2ChatPromptBuilder,
    MistralInstructPromptBuilder,
    PhiPromptBuilder,
    PurePromptBuilder,
    QwenPromptBuilder,
    VicunaV15ChatPromptBuilder,
)
from vla_backbone.registry import backbone_class, checkpoint_path, hub_path

ALL_IDS = vla_backbone.list_backbones()
# One id per family is enough for the expensive checks; every id is still loaded once below.
ONE_PER_FAMILY = [next(iter(family.models)) for family in FAMILIES]

# REFERENCE §3: `*-pure` Pure, `*-chat` LLaMa2Chat, `vicuna*` VicunaV15, Mistral Pure / MistralInstruct, Phi, Qwen;
# OPT (this package's addition) Pure.
EXPECTED_BUILDER = {
    "llama2-7b-pure": PurePromptBuilder,
    "llama2-13b-pure": PurePromptBuilder,
    "llama2-7b-chat": LLaMa2ChatPromptBuilder,
    "llama2-13b-chat": LLaMa2ChatPromptBuilder,
    "vicuna-v15-7b": VicunaV15ChatPromptBuilder,
    "vicuna-v15-13b": VicunaV15ChatPromptBuilder,
    "mistral-v0.1-7b-pure": PurePromptBuilder,
    "mistral-v0.1-7b-instruct": MistralInstructPromptBuilder,
    "phi-2-3b": PhiPromptBuilder,
    **{f"qwen25-{size}": QwenPromptBuilder for size in ("0_5b-pure", "0_5b-extra", "1_5b-pure", "3b-pure", "7b-pure")},
    **{f"opt-{size}": PurePromptBuilder for size in ("125m", "350m", "1.3b", "2.7b", "6.7b")},
}

REFERENCE_IDS = {
    "llama2-7b-pure": "meta-llama/Llama-2-7b-hf",
    "llama2-13b-pure": "meta-llama/Llama-2-13b-hf",
    "llama2-7b-chat": "meta-llama/Llama-2-7b-chat-hf",
    "llama2-13b-chat": "meta-llama/Llama-2-13b-chat-hf",
    "vicuna-v15-7b": "lmsys/vicuna-7b-v1.5",
    "vicuna-v15-13b": "lmsys/vicuna-13b-v1.5",
    "mistral-v0.1-7b-pure": "mistralai/Mistral-7B-v0.1",
    "mistral-v0.1-7b-instruct": "mistralai/Mistral-7B-Instruct-v0.1",
    "phi-2-3b": "microsoft/phi-2",
    "qwen25-0_5b-pure": "Qwen/Qwen2.5-0.5B",
    "qwen25-0_5b-extra": "Qwen/Qwen2.5-0.5B",
    "qwen25-1_5b-pure": "Qwen/Qwen2.5-1.5B",
    "qwen25-3b-pure": "Qwen/Qwen2.5-3B",
    "qwen25-7b-pure": "Qwen/Qwen2.5-7B",
    "opt-125m": "facebook/opt-125m",
    "opt-350m": "facebook/opt-350m",
}


@functools.lru_cache(maxsize=None)
def load(backbone_id, inference_mode=False):
    return vla_backbone.get_llm_backbone_and_tokenizer(backbone_id, inference_mode=inference_mode)


def test_registry_has_every_reference_id():
    for backbone_id, repo in REFERENCE_IDS.items():
        assert hub_path(backbone_id) == repo
    assert set(REFERENCE_IDS) <= set(ALL_IDS)


def test_abstract_members_are_exactly_upstreams():
    assert LLMBackbone.__abstractmethods__ == {
        "get_fsdp_wrapping_policy",
        "enable_gradient_checkpointing",
        "forward",
        "embed_input_ids",
        "prompt_builder_fn",
        "transformer_layer_cls",
        "half_precision_dtype",
        "last_layer_finetune_modules",
    }
    forward_args = list(inspect.signature(LLMBackbone.forward).parameters)[1:]
    assert forward_args == [
        "input_ids", "attention_mask", "position_ids", "past_key_values", "inputs_embeds", "labels",
        "use_cache", "output_attentions", "output_hidden_states", "return_dict",
    ]
    with pytest.raises(TypeError, match="abstract"):
        LLMBackbone("x")


def test_hf_causal_signature_is_upstreams():
    params = inspect.signature(vla_backbone.HFCausalLLMBackbone.__init__).parameters
    assert list(params)[1:] == [
        "llm_backbone_id", "llm_family", "llm_cls", "hf_hub_path", "llm_max_length", "hf_token",
        "inference_mode", "use_flash_attention_2",
    ]
    assert params["llm_max_length"].default == 2048 and params["use_flash_attention_2"].default is False


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.family)
def test_every_family_is_concrete(family):
    assert not family.__abstractmethods__


def test_special_cases_are_phi_and_every_qwen_id():
    # OpenVLA's phi-2 and MiniVLA's Qwen-2.5 ids (REFERENCE §2, §3), written out rather than read from the registry.
    assert SPECIAL_CASES == {"phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra", "qwen25-1_5b-pure",
                             "qwen25-3b-pure", "qwen25-7b-pure"}
    assert SPECIAL_CASES - {"phi-2-3b"} == set(QWEN25_MODELS)


@pytest.mark.parametrize("backbone_id", ALL_IDS)
def test_every_id_loads_with_its_contract(backbone_id):
    backbone, tokenizer = load(backbone_id)
    family = backbone_class(backbone_id)
    assert isinstance(backbone, family) and backbone.identifier == backbone_id
    assert tokenizer is backbone.get_tokenizer()
    assert backbone.llm_family == family.family and backbone.llm_max_length == 2048 and not backbone.inference_mode
    assert backbone.embed_dim == backbone.llm.config.hidden_size == 64
    assert backbone.pad_token_id is not None and backbone.pad_token_id == tokenizer.pad_token_id
    assert backbone.llm.config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.padding_side == "right" and tokenizer.model_max_length == 2048
    assert backbone.llm.dtype == torch.float32 and backbone.half_precision_dtype == torch.bfloat16
    assert backbone.llm.config.use_cache is False
    rows = backbone.llm.get_input_embeddings().weight.shape[0]
    assert rows % 64 == 0 and rows >= len(tokenizer)
    # The input-grad hook survives the resize (upstream on 4.40 lost it).
    assert compat.has_input_grad_hook(backbone.llm)
    gen = backbone.llm.generation_config
    assert (gen.do_sample, gen.temperature, gen.top_p) == (False, 1.0, 1.0)
    assert backbone.prompt_builder_fn is EXPECTED_BUILDER[backbone_id]
    embeddings, last_layer, head = backbone.last_layer_finetune_modules
    layers = [m for m in backbone.llm.modules() if isinstance(m, backbone.transformer_layer_cls)]
    assert embeddings is backbone.llm.get_input_embeddings() and head is backbone.llm.get_output_embeddings()
    assert last_layer is layers[-1] and len(layers) == 2
    if backbone_id in SPECIAL_CASES:
        assert tokenizer("Test 123").input_ids[0] != tokenizer.bos_token_id or tokenizer.bos_token_id is None
    check_backbone_contract(backbone)


def test_contract_says_what_is_wrong():
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("opt-125m")
    backbone.tokenizer.padding_side = "left"
    with pytest.raises(AssertionError, match="pads on the left, OpenVLA pads right"):
        check_backbone_contract(backbone)


def test_contract_refuses_a_max_length_past_the_models_positions():
    """A tokenizer allowed 4096 tokens feeds a model with 2048 positions an index it does not have."""
    from vla_backbone.families.opt import OPTLLMBackbone

    backbone = OPTLLMBackbone("opt-125m", hf_hub_path=str(checkpoint_path("opt-125m")), llm_max_length=4096)
    with pytest.raises(AssertionError, match="llm_max_length is 4096, but the model has 2048 positions"):
        check_backbone_contract(backbone)


def test_contract_refuses_a_prompt_builder_whose_eos_is_not_a_token():
    """A builder copied from another family ends answers with a string this tokenizer splits into pieces."""
    from vla_backbone.families.phi import PhiLLMBackbone
    from vla_backbone.prompting import PurePromptBuilder

    class PhiWithLlamaPrompts(PhiLLMBackbone):
        @property
        def prompt_builder_fn(self):
            return PurePromptBuilder

    backbone = PhiWithLlamaPrompts("phi-2-3b", hf_hub_path=str(checkpoint_path("phi-2-3b")))
    with pytest.raises(AssertionError, match=r"ends each answer with '</s>', which the tokenizer reads as \['</', 's', '>'\]"):
        check_backbone_contract(backbone)


def test_contract_checks_that_checkpointing_turns_on_and_leaves_the_backbone_as_it_was():
    from vla_backbone import compat
    from vla_backbone.families.opt import OPTLLMBackbone

    class NoCheckpointing(OPTLLMBackbone):
        def enable_gradient_checkpointing(self) -> None:
            pass

    backbone = NoCheckpointing("opt-125m", hf_hub_path=str(checkpoint_path("opt-125m")))
    with pytest.raises(AssertionError, match=r"enable_gradient_checkpointing\(\) left checkpointing off"):
        check_backbone_contract(backbone)

    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("opt-125m")
    check_backbone_contract(backbone)
    assert not compat.is_checkpointing(backbone.llm) and compat.has_input_grad_hook(backbone.llm)
    backbone.enable_gradient_checkpointing()
    check_backbone_contract(backbone)
    assert compat.is_checkpointing(backbone.llm)


def test_contract_refuses_an_embedding_lookup_that_skips_the_module():
    """Indexing the weight gives the same values, but the input-grad hook on the module never fires."""
    from vla_backbone.families.opt import OPTLLMBackbone

    class IndexingEmbeddings(OPTLLMBackbone):
        def embed_input_ids(self, input_ids):
            return self.llm.get_input_embeddings().weight[input_ids]

    backbone = IndexingEmbeddings("opt-125m", hf_hub_path=str(checkpoint_path("opt-125m")))
    with pytest.raises(AssertionError, match="embed_input_ids must call the input embedding module"):
        check_backbone_contract(backbone)


def test_a_mistyped_member_is_reported_as_itself():
    """nn.Module reports an AttributeError raised inside a property as the property missing; a porter needs the real
    name. transformers 5 renamed GPT-NeoX's `embed_out`, so upstream-style code can hit exactly this."""
    from vla_backbone.families.opt import OPTLLMBackbone

    class WrongLayerPath(OPTLLMBackbone):
        decoder_layer_path = "transformers.models.opt.modeling_opt.OPTBlock"

    with pytest.raises(ImportError, match="modeling_opt has no OPTBlock"):
        WrongLayerPath("opt-125m", hf_hub_path=str(checkpoint_path("opt-125m")))

    class WrongHeadName(OPTLLMBackbone):
        @property
        def last_layer_finetune_modules(self):
            return (self.llm.get_input_embeddings(), self.llm.model.decoder.layers[-1], self.llm.embed_out)

    backbone = WrongHeadName("opt-125m", hf_hub_path=str(checkpoint_path("opt-125m")))
    with pytest.raises(AttributeError, match="has no attribute 'embed_out'"):
        check_backbone_contract(backbone)


@pytest.mark.parametrize("backbone_id", ONE_PER_FAMILY)
def test_forward_embed_and_loss(backbone_id):
    backbone, tokenizer = load(backbone_id)
    batch = tokenizer(["pick up the cup", "open the drawer now please"], return_tensors="pt", padding=True)
    assert (batch.attention_mask[:, -1] == 0).any(), "right padding pads at the end"
    ids = batch.input_ids
    embeds = backbone.embed_input_ids(ids)
    torch.testing.assert_close(embeds, backbone.llm.get_input_embeddings().weight[ids])
    labels = ids.masked_fill(batch.attention_mask == 0, -100)
    out = backbone(input_ids=ids, attention_mask=batch.attention_mask, labels=labels)
    via_embeds = backbone(inputs_embeds=embeds, attention_mask=batch.attention_mask, labels=labels)
    torch.testing.assert_close(out.logits, via_embeds.logits)
    shifted = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, out.logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, shifted)
    extras = backbone(input_ids=ids, use_cache=True, output_hidden_states=True, output_attentions=False, return_dict=True)
    assert len(extras.hidden_states) == 3 and compat.output_cache(extras) is not None


@pytest.mark.parametrize("backbone_id", ONE_PER_FAMILY)
def test_kv_cache_matches_full_forward(backbone_id):
    backbone, tokenizer = load(backbone_id, inference_mode=True)
    assert backbone.llm.config.use_cache is True and not compat.has_input_grad_hook(backbone.llm)
    # `_from_config` leaves the model in train mode (dropout on, e.g. OPT's 0.1), as upstream; the VLM calls eval().
    backbone.eval()
    ids = tokenizer(["the robot will pick up the red cup"], return_tensors="pt").input_ids
    with torch.no_grad():
        full = backbone(input_ids=ids).logits[:, -1]
        prefix = backbone(input_ids=ids[:, :-1], use_cache=True)
        # With a cache, the mask covers past and new positions (OPT derives its positions from it).
        mask = torch.ones_like(ids)
        step = backbone(input_ids=ids[:, -1:], attention_mask=mask, past_key_values=compat.output_cache(prefix), use_cache=True)
    torch.testing.assert_close(step.logits[:, -1], full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backbone_id", ONE_PER_FAMILY)
def test_checkpointing_policy_and_plan(backbone_id, recwarn):
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer(backbone_id)
    backbone.enable_gradient_checkpointing()
    assert compat.is_checkpointing(backbone.llm)
    assert not [w for w in recwarn if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    policy = backbone.get_fsdp_wrapping_policy()
    plan = wrap_plan(backbone, policy)
    layers = [(n, m) for n, m in backbone.named_modules() if isinstance(m, backbone.transformer_layer_cls)]
    assert plan == ["", *(n for n, _ in layers)]
    # Upstream differences, row 4: non-reentrant, where transformers 4.40's default was reentrant.
    assert all(m._gradient_checkpointing_func.keywords == {"use_reentrant": False} for _, m in layers)


def test_new_embedding_rows_get_the_ordinary_initialisation_as_in_4_40():
    """Upstream differences, row 13: transformers 4.40 (OpenVLA's) drew rows added by a resize from N(0,
    initializer_range); newer versions default to mean_resizing=True, which makes every new row the mean embedding."""
    backbone, _ = load("llama2-7b-pure")
    weight = backbone.llm.get_input_embeddings().weight.detach()
    new_rows, old_mean = weight[32000:], weight[:32000].mean(dim=0)
    assert backbone.llm.config.initializer_range == 0.02
    assert abs(new_rows.mean()) < 0.002 and abs(new_rows.std() - 0.02) < 0.002
    assert (new_rows - old_mean).norm(dim=1).min() > 0.05  # mean_resizing puts every new row within 1e-4 of the mean


def test_inference_mode_has_architecture_without_pretrained_weights():
    trained, _ = load("llama2-7b-pure")
    fresh, _ = load("llama2-7b-pure", inference_mode=True)
    assert type(fresh.llm) is type(trained.llm)
    assert fresh.llm.config.hidden_size == trained.llm.config.hidden_size
    assert not torch.equal(fresh.llm.model.layers[0].mlp.up_proj.weight, trained.llm.model.layers[0].mlp.up_proj.weight)


# REFERENCE §9: after upstream's init -- PAD token and id, embedding rows before -> after the multiple-of-64 resize.
AFTER_INIT = {
    "llama2-7b-pure": ("<PAD>", 32000, 32000, 32064),
    "vicuna-v15-7b": ("<PAD>", 32000, 32000, 32064),
    "mistral-v0.1-7b-pure": ("<PAD>", 32000, 32000, 32064),
    "phi-2-3b": ("<|pad|>", 50295, 51200, 50304),
    "qwen25-0_5b-pure": ("<|endoftext|>", 151643, 151936, 151680),
    "qwen25-0_5b-extra": ("<|endoftext|>", 151643, 151936, 151936),
    "opt-125m": ("<pad>", 1, 50272, 50304),
}


@pytest.mark.parametrize("backbone_id", list(AFTER_INIT))
def test_pad_and_resize_are_the_real_figures(backbone_id):
    pad_token, pad_id, rows_before, rows_after = AFTER_INIT[backbone_id]
    backbone, tokenizer = load(backbone_id)
    assert (tokenizer.pad_token, tokenizer.pad_token_id, backbone.pad_token_id) == (pad_token, pad_id, pad_id)
    from vla_backbone.tiny import TINY_SPECS

    assert TINY_SPECS[backbone.llm_family].hub_config["vocab_size"] == rows_before
    assert backbone.llm.get_input_embeddings().weight.shape[0] == rows_after
    assert backbone.llm.get_output_embeddings().weight.shape[0] == rows_after


def test_qwen_extra_adds_256_tokens_reusing_checkpoint_rows():
    _, pure_tok = load("qwen25-0_5b-pure")
    extra, extra_tok = load("qwen25-0_5b-extra")
    assert len(pure_tok) == 151665 and len(extra_tok) == 151921
    assert extra_tok.convert_tokens_to_ids(["<|extra_0|>", "<|extra_255|>"]) == [151665, 151920]
    # 151921 tokens round up to 151936 rows: exactly the checkpoint's, so the extra tokens reuse rows it already had.
    assert extra.llm.get_input_embeddings().weight.shape[0] == 151936 == extra.llm.config.vocab_size


LLAMA2_MULTI_TURN = "In: What action should the robot take to pick up the cup?\nOut: ok</s>In: again"


@pytest.mark.parametrize("backbone_id", ["llama2-7b-pure", "llama2-7b-chat", "vicuna-v15-7b"])
def test_llama2_ids_are_the_4x_ids_checkpoints_were_trained_on(backbone_id):
    """REFERENCE §9: 4.40.1 and 4.57 end with [..., 3431, 2, 512, 29901, 1449]; plain 5.x gives 797 for "In"."""
    _, tokenizer = load(backbone_id)
    assert tokenizer(LLAMA2_MULTI_TURN).input_ids[-6:] == [29901, 3431, 2, 512, 29901, 1449]
    assert tokenizer("In: What action should the robot take to pick up the cup?\nOut:").input_ids == [
        1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 18002, 29973, 13, 3744, 29901
    ]


# Measured with transformers 4.40.1 (the version OpenVLA pins) on the shipped tokenizer files, 2026-11-30: texts where
# 5.x, even with legacy=True, gives other ids (REFERENCE §9 says legacy=True restores the 4.x ids; it does so for
# the multi-turn prompt above, not for these).
IDS_4_40_1 = {
    "llama2": {"Out: ok</s> In: again": [1, 4451, 29901, 3431, 2, 29871, 512, 29901, 1449], " </s>": [1, 259, 2],
               "a  leading": [1, 263, 29871, 8236], " leading space": [1, 29871, 8236, 2913]},
    "mistral": {"Out: ok</s> In: again": [1, 4655, 28747, 3614, 2, 28705, 560, 28747, 1076], " </s>": [1, 259, 2],
                "a  leading": [1, 264, 28705, 5374], " leading space": [1, 28705, 5374, 2764]},
}


@pytest.mark.parametrize("backbone_id", ["llama2-7b-pure", "vicuna-v15-7b", "mistral-v0.1-7b-pure"])
@pytest.mark.parametrize("tokenizer_json", [True, False], ids=["tokenizer.json", "tokenizer.model-only"])
def test_ids_match_transformers_4_40_1_where_legacy_true_does_not(backbone_id, tokenizer_json, tmp_path):
    import shutil
    from pathlib import Path

    source = Path(checkpoint_path(backbone_id))
    if tokenizer_json:
        _, tokenizer = load(backbone_id)
    else:
        for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(source / name, tmp_path / name)
        tokenizer = backbone_class(backbone_id).load_tokenizer(str(tmp_path))
    expected = IDS_4_40_1[backbone_class(backbone_id).family]
    assert {text: tokenizer(text).input_ids for text in expected} == expected


def whitespace_and_special_token_texts(specials: list[str], count: int = 300) -> list[str]:
    """Seeded texts that mix words, runs of whitespace and special tokens written in the text, in any order."""
    import random

    rng = random.Random(0)
    pieces = ["In:", "Out:", "What", "action", "pick", "up", "cup?", "ok", "again", "USER:", "ASSISTANT:", "[INST]",
              "[/INST]", "Input:", "Output:", "123", "你好", "é", "\n", "\t", *specials]
    texts = [" leading space", "  x", *(f" {special}" for special in specials), *(f"{special}  x" for special in specials)]
    while len(texts) < count:
        texts.append("".join(rng.choice(pieces) + rng.choice(["", " ", " ", "  ", "\n"]) for _ in range(rng.randint(1, 10))))
    return texts


@pytest.mark.parametrize("backbone_id", ["llama2-7b-pure", "vicuna-v15-7b", "mistral-v0.1-7b-pure", "phi-2-3b"])
def test_tokenizer_gives_the_ids_of_the_checkpoints_tokenizer_json(backbone_id):
    """transformers 4.x used a checkpoint's tokenizer.json as it is, so its ids are the ones the checkpoints were
    trained on; the file, read by the tokenizers library alone, is the ground truth. transformers 5 rebuilds Llama-2's
    tokenizer from its class and, even with legacy=True, splits whitespace next to special tokens differently
    (" </s>": 29871, 2 instead of 259, 2); the family therefore hands it the file's tokenizer."""
    from tokenizers import Tokenizer

    backbone, tokenizer = load(backbone_id)
    reference = Tokenizer.from_file(str(checkpoint_path(backbone_id)) + "/tokenizer.json")
    specials = [token for token in (tokenizer.bos_token, tokenizer.eos_token) if token]
    texts = whitespace_and_special_token_texts(specials)
    differing = [text for text in texts if tokenizer(text).input_ids != reference.encode(text).ids]
    assert not differing, f"{len(differing)}/{len(texts)} texts differ, e.g. {differing[:3]}"


@pytest.mark.parametrize("backbone_id", ["llama2-7b-pure", "mistral-v0.1-7b-pure"])
def test_sentencepiece_checkpoint_without_tokenizer_json_gets_the_ids_4x_converted(backbone_id, tmp_path):
    """Vicuna v1.5 may ship only tokenizer.model (with `"legacy": false`, as Llama-2's config says); 4.40 converted
    it with the same LlamaConverter that wrote the Llama-2 and Mistral tokenizer.json files here, so the file's ids
    are the reference. 5.x alone ranks "▁▁" first among the merges ("a  leading" -> 263, 259, 25369, not 263, 29871,
    8236) and drops a space at the start (" leading" -> 8236, not 29871, 8236)."""
    import shutil
    from pathlib import Path

    from tokenizers import Tokenizer

    source = Path(checkpoint_path(backbone_id))
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, tmp_path / name)
    tokenizer = backbone_class(backbone_id).load_tokenizer(str(tmp_path))
    reference = Tokenizer.from_file(str(source / "tokenizer.json"))
    texts = [" leading space", "a  b   c", LLAMA2_MULTI_TURN, *whitespace_and_special_token_texts(["<s>", "</s>"])]
    differing = [text for text in texts if tokenizer(text).input_ids != reference.encode(text).ids]
    assert not differing, f"{len(differing)}/{len(texts)} texts differ, e.g. {differing[:3]}"
    assert tokenizer.decode(reference.encode(LLAMA2_MULTI_TURN).ids, skip_special_tokens=True) == reference.decode(
        reference.encode(LLAMA2_MULTI_TURN).ids)


@pytest.mark.parametrize("backbone_id", ONE_PER_FAMILY)
def test_upstream_vlm_single_token_words(backbone_id):
    """PrismaticVLM.__init__ asserts these are one token each (REFERENCE §11)."""
    _, tokenizer = load(backbone_id)
    words = ["True", "False", "Yes", "No", *map(chr, range(ord("A"), ord("Z") + 1))]
    for word in words:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word


def test_loading_is_deterministic():
    first, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("mistral-v0.1-7b-pure")
    second, _ = vla_backbone.get_llm_backbone_and_tokenizer("mistral-v0.1-7b-pure")
    ids = tokenizer(["pick up the cup"], return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(first(input_ids=ids).logits, second(input_ids=ids).logits, rtol=0, atol=0)


def test_llama2_tokenizer_is_what_openvla_predict_action_requires():
    """OpenVLA.predict_action asserts isinstance(tokenizer, LlamaTokenizerFast); on 5.x that name is LlamaTokenizer."""
    from transformers import LlamaTokenizerFast

    _, tokenizer = load("llama2-7b-pure")
    assert isinstance(tokenizer, LlamaTokenizerFast)
    # predict_action appends 29871 (the empty "▁" piece) when the inference prompt does not end with it.
    assert tokenizer.convert_ids_to_tokens(29871) == "▁"


def test_qwen_loads_without_a_false_mistral_regex_warning(capfd):
    vla_backbone.get_llm_backbone_and_tokenizer("qwen25-0_5b-pure")
    assert "incorrect regex pattern" not in capfd.readouterr().err


def test_opt_350m_embed_dim_is_the_embedding_width_not_the_hidden_size(tmp_path):
    """facebook/opt-350m embeds tokens 512 wide and projects them to its hidden size of 1024 (``project_in``); a VLM
    projector sized by ``embed_dim`` must produce 512. A toy checkpoint of that shape (32 and 64) shows it."""
    import shutil

    from transformers import AutoConfig, OPTForCausalLM

    from vla_backbone.tiny import tiny_checkpoint

    replica = tiny_checkpoint("opt")
    config = AutoConfig.from_pretrained(replica)
    assert config.word_embed_proj_dim == config.hidden_size == 64  # opt-125m's shape: no projection
    config.word_embed_proj_dim = 32
    torch.manual_seed(0)
    OPTForCausalLM(config).save_pretrained(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (replica / name).exists():
            shutil.copy(replica / name, tmp_path / name)

    backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("opt-350m", source=str(tmp_path))
    assert backbone.llm.config.hidden_size == 64 and backbone.embed_dim == 32
    check_backbone_contract(backbone)
    ids = tokenizer(["pick up the cup"], return_tensors="pt").input_ids
    text = backbone.embed_input_ids(ids)
    patches = torch.nn.Linear(1024, backbone.embed_dim)(torch.randn(1, 4, 1024))
    spliced = torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)
    logits = backbone(inputs_embeds=spliced).logits
    assert logits.shape[:2] == spliced.shape[:2]


def test_generation_pads_with_the_tokenizers_pad_not_the_checkpoints(tmp_path):
    """Llama-2-7b-hf's generation_config.json says pad_token_id 0 (``<unk>``, REFERENCE §9); batched ``generate``
    must pad with the PAD the backbone added (32000), as training did. Upstream left the checkpoint's value."""
    import json
    import shutil

    from vla_backbone.tiny import tiny_checkpoint

    shutil.copytree(tiny_checkpoint("llama2"), tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "pad_token_id": 0}))
    backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure", source=str(tmp_path / "ckpt"))
    assert backbone.llm.generation_config.pad_token_id == tokenizer.pad_token_id == 32000
