"""Grader for A5 · splice image patches into the language model's input (notebooks/*/assignments/A5_splice_patches).

    pytest tests/assignments/test_a5_splice_patches.py --notebook path/to/A5_splice_patches.py
"""
import pytest
import torch

ASSIGNMENT = "A5_splice_patches"


def test_notebook_runs_top_to_bottom(notebook):
    notebook.assert_ran_to_the_end()


# --- Task 1: action_labels -------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_action_tokens", [0, 1, 7])
def test_action_labels(notebook, num_action_tokens):
    ids = torch.arange(100, 120)
    original = ids.clone()
    labels = notebook["action_labels"](ids, num_action_tokens)
    kept = num_action_tokens + 1
    assert isinstance(labels, torch.Tensor), f"return a tensor, got {type(labels).__name__}"
    assert labels.shape == ids.shape and labels.dtype == ids.dtype, f"labels {tuple(labels.shape)} {labels.dtype}; expected {tuple(ids.shape)} {ids.dtype}"
    assert torch.equal(ids, original), "action_labels changed input_ids in place; work on a copy"
    assert (labels[:-kept] == -100).all(), f"with {num_action_tokens} action tokens, all but the last {kept} positions must be -100"
    assert torch.equal(labels[-kept:], ids[-kept:]), f"the last {kept} positions (actions and EOS) must keep their ids"


# --- Task 2: splice_patches ------------------------------------------------------------------------------------

def _inputs(batch=3, text=9, patches=5, width=8, mask_dtype=torch.long, seed=0):
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(batch, text, width, generator=generator)
    patch = torch.randn(batch, patches, width, generator=generator)
    lengths = torch.tensor([text, text - 3, text - 5][:batch])
    mask = (torch.arange(text)[None] < lengths[:, None]).to(mask_dtype)
    labels = torch.randint(0, 50, (batch, text), generator=generator)
    labels[:, : text // 2] = -100
    labels[mask == 0] = -100
    return embeds, patch, mask, labels


@pytest.mark.parametrize("mask_dtype", [torch.long, torch.bool, torch.int32])
def test_splice_layout(notebook, mask_dtype):
    embeds, patch, mask, labels = _inputs(mask_dtype=mask_dtype)
    B, T, D = embeds.shape
    P = patch.shape[1]
    out = notebook["splice_patches"](embeds, patch, mask, labels)
    assert isinstance(out, tuple) and len(out) == 3, "return a tuple (embeds, mask, labels)"
    new_embeds, new_mask, new_labels = out
    assert new_embeds.shape == (B, P + T, D), f"embeds {tuple(new_embeds.shape)}, expected {(B, P + T, D)}"
    assert torch.equal(new_embeds[:, 0], embeds[:, 0]), "position 0 must stay the BOS embedding"
    assert torch.equal(new_embeds[:, 1 : 1 + P], patch), "positions 1..P must be the patches, in order"
    assert torch.equal(new_embeds[:, 1 + P :], embeds[:, 1:]), "after the patches comes the rest of the text"
    assert new_mask.shape == (B, P + T), f"mask {tuple(new_mask.shape)}, expected {(B, P + T)}"
    assert new_mask.dtype == mask_dtype, f"the mask became {new_mask.dtype}; keep the input mask's dtype ({mask_dtype})"
    assert new_mask[:, 0].tolist() == mask[:, 0].tolist(), "BOS keeps its mask value"
    assert new_mask[:, 1 : 1 + P].bool().all(), "every patch position must be attended to"
    assert torch.equal(new_mask[:, 1 + P :], mask[:, 1:]), "the text (and its padding) keeps its mask"
    assert new_labels.shape == (B, P + T), f"labels {tuple(new_labels.shape)}, expected {(B, P + T)}"
    assert new_labels.dtype == labels.dtype, f"labels became {new_labels.dtype}; keep {labels.dtype}"
    assert (new_labels[:, 1 : 1 + P] == -100).all(), "every patch position must be labelled -100"
    assert torch.equal(new_labels[:, :1], labels[:, :1]) and torch.equal(new_labels[:, 1 + P :], labels[:, 1:]), \
        "the text keeps its labels"


def test_splice_without_labels(notebook):
    embeds, patch, mask, _ = _inputs()
    out = notebook["splice_patches"](embeds, patch, mask)
    assert out[2] is None, "with labels=None (or left out), the returned labels must be None"
    out = notebook["splice_patches"](embeds, patch, mask, None)
    assert out[2] is None and out[0].shape[1] == embeds.shape[1] + patch.shape[1], "labels=None must still splice the embeddings"


def test_splice_one_patch_and_batch_of_one(notebook):
    embeds, patch, mask, labels = _inputs(batch=1, patches=1)
    new_embeds, new_mask, new_labels = notebook["splice_patches"](embeds, patch, mask, labels)
    assert new_embeds.shape == (1, embeds.shape[1] + 1, embeds.shape[2]), "one patch adds one position"
    assert torch.equal(new_embeds[0, 1], patch[0, 0]) and new_labels[0, 1] == -100 and bool(new_mask[0, 1])


def test_splice_does_not_modify_inputs(notebook):
    embeds, patch, mask, labels = _inputs()
    copies = [t.clone() for t in (embeds, patch, mask, labels)]
    notebook["splice_patches"](embeds, patch, mask, labels)
    names = ("input_embeds", "patch_embeds", "attention_mask", "labels")
    for name, before, after in zip(names, copies, (embeds, patch, mask, labels), strict=True):
        assert torch.equal(before, after), f"splice_patches changed {name} in place"


def test_gradient_reaches_the_patches(notebook):
    embeds, patch, mask, labels = _inputs()
    patch.requires_grad_(True)
    new_embeds, _, _ = notebook["splice_patches"](embeds, patch, mask, labels)
    (new_embeds * torch.arange(new_embeds.numel()).reshape(new_embeds.shape)).sum().backward()
    assert patch.grad is not None and patch.grad.abs().sum() > 0, "no gradient reached patch_embeds: do not detach or copy them"


@pytest.mark.parametrize("bad", ["width", "batch"])
def test_mismatched_shapes_raise_a_clear_error(notebook, bad):
    embeds, patch, mask, labels = _inputs()
    wrong = torch.randn(3, 5, 6) if bad == "width" else torch.randn(2, 5, 8)
    sizes = ("8", "6") if bad == "width" else ("3", "2")
    with pytest.raises(ValueError) as info:
        notebook["splice_patches"](embeds, wrong, mask, labels)
    message = str(info.value)
    assert all(size in message for size in sizes), f"the ValueError should name both sizes ({' and '.join(sizes)}): {message!r}"


def test_backbone_loss_counts_actions_only(notebook):
    """End to end on the tiny backbone: the spliced batch trains on action tokens and EOS only."""
    import torch.nn.functional as F

    backbone, tokenizer = notebook["backbone"], notebook["tokenizer"]
    example_ids, action_labels, splice = notebook["example_ids"], notebook["action_labels"], notebook["splice_patches"]
    examples = [example_ids("wipe the table", [0.0] * 7), example_ids("close the door", [0.3, 0.1, 0.0, 0.0, 0.0, 0.0, -1.0])]
    length = max(len(e) for e, _ in examples)
    ids = torch.full((2, length), tokenizer.pad_token_id)
    mask = torch.zeros(2, length, dtype=torch.long)
    labels = torch.full((2, length), -100)
    for row, (example, n) in enumerate(examples):
        ids[row, : len(example)], mask[row, : len(example)] = torch.tensor(example), 1
        labels[row, : len(example)] = action_labels(torch.tensor(example), n)
    torch.manual_seed(0)
    patches = torch.randn(2, 4, backbone.embed_dim)
    embeds, new_mask, new_labels = splice(backbone.embed_input_ids(ids), patches, mask, labels)
    with torch.no_grad():
        output = backbone(input_ids=None, inputs_embeds=embeds, attention_mask=new_mask, labels=new_labels)
    keep = new_labels[:, 1:] != -100
    assert int(keep.sum()) == 16, f"{int(keep.sum())} labelled positions; expected 16 (7 actions and EOS, twice)"
    torch.testing.assert_close(output.loss, F.cross_entropy(output.logits[:, :-1][keep], new_labels[:, 1:][keep]))
