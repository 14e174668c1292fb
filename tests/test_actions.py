"""ActionTokenizer matches OpenVLA's numpy implementation (digitize into 256 bins, vocab_size - bin)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vla_backbone
from vla_backbone.actions import ActionTokenizer


class Vocab:
    vocab_size = 32000

    def decode(self, ids):
        return " ".join(map(str, ids))


def upstream_encode(actions, vocab_size, bins=256, low=-1.0, high=1.0):
    edges = np.linspace(low, high, bins)
    return vocab_size - np.digitize(np.clip(actions, low, high), edges)


def upstream_decode(ids, vocab_size, bins=256, low=-1.0, high=1.0):
    edges = np.linspace(low, high, bins)
    centers = (edges[:-1] + edges[1:]) / 2.0
    return centers[np.clip(vocab_size - ids - 1, a_min=0, a_max=centers.shape[0] - 1)]


# Values away from the float32/float64 rounding band around each bin edge, where the two precisions may disagree.
finite = st.floats(min_value=-3, max_value=3, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=7))
def test_matches_upstream(values):
    actions = np.array(values, dtype=np.float32)
    edges = np.linspace(-1, 1, 256)
    if np.min(np.abs(actions[:, None].astype(np.float64) - edges[None, :])) < 1e-6:
        return
    tokenizer = ActionTokenizer(Vocab())
    ids = tokenizer.encode(torch.from_numpy(actions))
    np.testing.assert_array_equal(ids.numpy(), upstream_encode(actions, 32000))
    np.testing.assert_allclose(tokenizer.decode(ids).numpy(), upstream_decode(ids.numpy(), 32000), rtol=0, atol=1e-6)


def test_round_trip_within_one_bin_and_ids_in_the_tail():
    tokenizer = ActionTokenizer(Vocab())
    actions = torch.linspace(-1, 1, 1001)
    ids = tokenizer.encode(actions)
    assert ids.min() >= tokenizer.action_token_begin_idx == 32000 - 256 and ids.max() <= 31999
    assert (tokenizer.decode(ids) - actions).abs().max() <= 2 / 255 + 1e-6


@pytest.mark.parametrize("backbone_id", ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"])
def test_action_text_round_trips_to_the_action_ids(backbone_id):
    _, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer(backbone_id)
    actions = ActionTokenizer(tokenizer)
    generator = torch.Generator().manual_seed(0)
    for sample in torch.rand(50, 7, generator=generator) * 2 - 1:
        ids = actions.encode(sample)
        assert ids.min() >= tokenizer.vocab_size - 256
        assert actions(sample) == tokenizer.decode(ids.tolist())
        assert tokenizer(actions(sample), add_special_tokens=False).input_ids == ids.tolist()
