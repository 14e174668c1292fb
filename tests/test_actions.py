"""ActionTokenizer is upstream's (REFERENCE §10), on the real tokenizers; action text round-trips where REFERENCE §9
says it does."""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vla_backbone
from vla_backbone.actions import ActionTokenizer
from vla_backbone.prompting import openvla_action_prompt


class Vocab:
    vocab_size = 32000

    def __len__(self):
        return 32001

    def decode(self, ids):
        return " ".join(map(str, ids))

    def batch_decode(self, rows):
        return [self.decode(row) for row in rows]


def upstream_call_ids(action, vocab_size, n_bins=256, low=-1, high=1):
    """Upstream's __call__ up to the decode, transcribed: clip, digitize, vocab_size - bin."""
    bins = np.linspace(low, high, n_bins)
    action = np.clip(action, a_min=float(low), a_max=float(high))
    return vocab_size - np.digitize(action, bins)


def upstream_decode(ids, vocab_size, n_bins=256, low=-1, high=1):
    bins = np.linspace(low, high, n_bins)
    centers = (bins[:-1] + bins[1:]) / 2.0
    return centers[np.clip(vocab_size - ids - 1, a_min=0, a_max=centers.shape[0] - 1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-3, max_value=3, allow_nan=False), min_size=1, max_size=7))
def test_matches_upstream_numpy(values):
    actions = np.array(values)
    tokenizer = ActionTokenizer(Vocab())
    ids = tokenizer.token_ids(actions)
    np.testing.assert_array_equal(ids, upstream_call_ids(actions, 32000))
    assert tokenizer(actions) == " ".join(map(str, ids))
    np.testing.assert_array_equal(tokenizer.decode_token_ids_to_actions(ids), upstream_decode(ids, 32000))


def test_upstream_attributes():
    tokenizer = ActionTokenizer(Vocab())
    assert tokenizer.vocab_size == tokenizer.n_bins == 256  # upstream: the number of bins, not the tokenizer's size
    assert tokenizer.action_token_begin_idx == 32000 - 257 == 31743
    assert tokenizer.bins.shape == (256,) and tokenizer.bin_centers.shape == (255,)
    assert tokenizer(np.array([[1.0, -1.0], [0.0, 0.5]])) == ["31744 31999", "31872 31808"]


def test_max_action_survives_upstreams_training_mask():
    """OpenVLA's training loop keeps predictions where `ids > action_token_begin_idx`; the top bin must pass."""
    tokenizer = ActionTokenizer(Vocab())
    ids = tokenizer.token_ids(np.array([1.0, 5.0, -1.0, -5.0]))
    assert ids.tolist() == [31744, 31744, 31999, 31999]
    assert (ids > tokenizer.action_token_begin_idx).all()


def test_real_llama2_action_ids_are_31744_to_31999():
    _, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    actions = ActionTokenizer(tokenizer)
    ids = actions.token_ids(np.linspace(-1, 1, 10001))
    assert (ids.min(), ids.max(), len(np.unique(ids))) == (31744, 31999, 256)
    assert actions.action_token_begin_idx == 31743


def survives_in_prompt(backbone, tokenizer, actions, sample) -> bool:
    """Write the action as the answer turn, tokenize the whole training prompt: are the action's ids in it?"""
    ids = actions.token_ids(sample).tolist()
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", openvla_action_prompt("pick up the cup"))
    builder.add_turn("gpt", actions(sample))
    tokens = tokenizer(builder.get_prompt()).input_ids
    return any(tokens[i : i + len(ids)] == ids for i in range(len(tokens)))


# REFERENCE §9: the same ids come back on SentencePiece tokenizers (Llama-2, Mistral) and on Qwen's added
# <|extra_i|> tokens; byte-level BPE (phi-2, Qwen's vocabulary tail, OPT) merges neighbouring pieces.
@pytest.mark.parametrize(
    "backbone_id, use_extra, all_survive",
    [
        ("llama2-7b-pure", False, True),
        ("mistral-v0.1-7b-pure", False, True),
        ("qwen25-0_5b-extra", True, True),
        ("phi-2-3b", False, False),
        ("qwen25-0_5b-pure", False, False),
        ("opt-125m", False, False),
    ],
)
def test_action_text_round_trip(backbone_id, use_extra, all_survive):
    backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer(backbone_id)
    actions = ActionTokenizer(tokenizer, use_extra=use_extra)
    samples = np.random.default_rng(0).uniform(-1, 1, size=(24, 7))
    survived = [survives_in_prompt(backbone, tokenizer, actions, sample) for sample in samples]
    assert all(survived) == all_survive, f"{sum(survived)}/24 survived"


def test_use_extra_puts_the_bins_on_the_added_extra_tokens():
    _, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("qwen25-0_5b-extra")
    actions = ActionTokenizer(tokenizer, use_extra=True)
    ids = actions.token_ids(np.array([1.0, -1.0]))
    assert actions.action_token_end_idx == len(tokenizer) == 151921
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == ["<|extra_0|>", "<|extra_255|>"]


@pytest.mark.parametrize("backbone_id, clash", [
    ("llama2-7b-pure", "the trained vocabulary"),  # the bins would take <PAD> (32000) and 255 ordinary tokens
    ("qwen25-0_5b-pure", "special tokens ['<|endoftext|>'"),  # Qwen's own added tokens: EOS = PAD, <|im_end|>, ...
])
def test_use_extra_without_added_action_tokens_is_a_clear_error(backbone_id, clash):
    _, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer(backbone_id)
    with pytest.raises(ValueError, match=re.escape(clash)) as info:
        ActionTokenizer(tokenizer, use_extra=True)
    assert "qwen25-0_5b-extra" in str(info.value) and "use_extra=False" in str(info.value)


def test_too_small_vocabulary_is_a_clear_error():
    class Tiny(Vocab):
        vocab_size = 100

    with pytest.raises(ValueError, match="cannot hold 256 action bins"):
        ActionTokenizer(Tiny())


def test_phi2_action_text_is_what_plain_decode_gives_and_draws_no_warning(capfd):
    """The decode arguments only silence 5.x's warning about a clean-up it skips anyway: the text is unchanged."""
    _, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("phi-2-3b")
    actions = ActionTokenizer(tokenizer)
    sample = np.random.default_rng(1).uniform(-1, 1, size=7)
    capfd.readouterr()
    text = actions(sample)
    assert "Ignoring clean_up_tokenization_spaces" not in capfd.readouterr().err
    assert text == tokenizer.decode(list(actions.token_ids(sample)))
