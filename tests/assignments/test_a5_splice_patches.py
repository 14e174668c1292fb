"""Grader for A5 · splice image patches into the language model's input (notebooks/*/assignments/A5_splice_patches).

    .venv/bin/python -m pytest tests/assignments/test_a5_splice_patches.py --notebook path/to/A5_splice_patches.ipynb
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
    say = notebook.say
    assert isinstance(labels, torch.Tensor), say(f"return a tensor, got {type(labels).__name__}",
                                                 f"请返回张量，实际为 {type(labels).__name__}")
    assert labels.shape == ids.shape and labels.dtype == ids.dtype, say(
        f"labels {tuple(labels.shape)} {labels.dtype}; expected {tuple(ids.shape)} {ids.dtype}",
        f"标签是 {tuple(labels.shape)} {labels.dtype}；应为 {tuple(ids.shape)} {ids.dtype}")
    assert torch.equal(ids, original), say("action_labels changed input_ids in place; work on a copy",
                                           "action_labels 原地修改了 input_ids；请在副本上操作")
    assert (labels[:-kept] == -100).all(), say(
        f"with {num_action_tokens} action tokens, all but the last {kept} positions must be -100",
        f"有 {num_action_tokens} 个动作 token 时，除最后 {kept} 个位置外都必须是 -100")
    assert torch.equal(labels[-kept:], ids[-kept:]), say(f"the last {kept} positions (actions and EOS) must keep their ids",
                                                         f"最后 {kept} 个位置（动作和 EOS）必须保留各自的 id")


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
    say = notebook.say
    assert isinstance(out, tuple) and len(out) == 3, say("return a tuple (embeds, mask, labels)",
                                                         "请返回元组 (embeds, mask, labels)")
    new_embeds, new_mask, new_labels = out
    assert new_embeds.shape == (B, P + T, D), say(f"embeds {tuple(new_embeds.shape)}, expected {(B, P + T, D)}",
                                                  f"embeds 是 {tuple(new_embeds.shape)}，应为 {(B, P + T, D)}")
    assert torch.equal(new_embeds[:, 0], embeds[:, 0]), say("position 0 must stay the BOS embedding",
                                                            "位置 0 必须仍然是 BOS 的嵌入")
    assert torch.equal(new_embeds[:, 1 : 1 + P], patch), say("positions 1..P must be the patches, in order",
                                                             "位置 1..P 必须按顺序放 patch")
    assert torch.equal(new_embeds[:, 1 + P :], embeds[:, 1:]), say("after the patches comes the rest of the text",
                                                                   "patch 之后是其余的文本")
    assert new_mask.shape == (B, P + T), say(f"mask {tuple(new_mask.shape)}, expected {(B, P + T)}",
                                             f"掩码是 {tuple(new_mask.shape)}，应为 {(B, P + T)}")
    assert new_mask.dtype == mask_dtype, say(f"the mask became {new_mask.dtype}; keep the input mask's dtype ({mask_dtype})",
                                             f"掩码变成了 {new_mask.dtype}；请保持输入掩码的 dtype（{mask_dtype}）")
    assert new_mask[:, 0].tolist() == mask[:, 0].tolist(), say("BOS keeps its mask value", "BOS 保留原来的掩码值")
    assert new_mask[:, 1 : 1 + P].bool().all(), say("every patch position must be attended to", "每个 patch 位置都必须参与注意力")
    assert torch.equal(new_mask[:, 1 + P :], mask[:, 1:]), say("the text (and its padding) keeps its mask",
                                                               "文本（及其填充）保留原来的掩码")
    assert new_labels.shape == (B, P + T), say(f"labels {tuple(new_labels.shape)}, expected {(B, P + T)}",
                                               f"标签是 {tuple(new_labels.shape)}，应为 {(B, P + T)}")
    assert new_labels.dtype == labels.dtype, say(f"labels became {new_labels.dtype}; keep {labels.dtype}",
                                                 f"标签变成了 {new_labels.dtype}；请保持 {labels.dtype}")
    assert (new_labels[:, 1 : 1 + P] == -100).all(), say("every patch position must be labelled -100",
                                                         "每个 patch 位置的标签都必须是 -100")
    assert torch.equal(new_labels[:, :1], labels[:, :1]) and torch.equal(new_labels[:, 1 + P :], labels[:, 1:]), \
        say("the text keeps its labels", "文本保留原来的标签")


def test_splice_without_labels(notebook):
    embeds, patch, mask, _ = _inputs()
    out = notebook["splice_patches"](embeds, patch, mask)
    say = notebook.say
    assert out[2] is None, say("with labels=None (or left out), the returned labels must be None",
                               "labels=None（或不传）时，返回的标签必须是 None")
    out = notebook["splice_patches"](embeds, patch, mask, None)
    assert out[2] is None and out[0].shape[1] == embeds.shape[1] + patch.shape[1], say(
        "labels=None must still splice the embeddings", "labels=None 时仍然要拼接嵌入")


def test_splice_one_patch_and_batch_of_one(notebook):
    embeds, patch, mask, labels = _inputs(batch=1, patches=1)
    new_embeds, new_mask, new_labels = notebook["splice_patches"](embeds, patch, mask, labels)
    assert new_embeds.shape == (1, embeds.shape[1] + 1, embeds.shape[2]), notebook.say("one patch adds one position",
                                                                                        "一个 patch 增加一个位置")
    assert torch.equal(new_embeds[0, 1], patch[0, 0]) and new_labels[0, 1] == -100 and bool(new_mask[0, 1]), notebook.say(
        "the one patch goes right after BOS, attended to and labelled -100", "唯一的 patch 紧跟在 BOS 之后，参与注意力，标签为 -100")


def test_splice_does_not_modify_inputs(notebook):
    embeds, patch, mask, labels = _inputs()
    copies = [t.clone() for t in (embeds, patch, mask, labels)]
    notebook["splice_patches"](embeds, patch, mask, labels)
    names = ("input_embeds", "patch_embeds", "attention_mask", "labels")
    for name, before, after in zip(names, copies, (embeds, patch, mask, labels), strict=True):
        assert torch.equal(before, after), notebook.say(f"splice_patches changed {name} in place",
                                                        f"splice_patches 原地修改了 {name}")


def test_gradient_reaches_the_patches(notebook):
    embeds, patch, mask, labels = _inputs()
    patch.requires_grad_(True)
    new_embeds, _, _ = notebook["splice_patches"](embeds, patch, mask, labels)
    (new_embeds * torch.arange(new_embeds.numel()).reshape(new_embeds.shape)).sum().backward()
    assert patch.grad is not None and patch.grad.abs().sum() > 0, notebook.say(
        "no gradient reached patch_embeds: do not detach or copy them", "梯度没有传到 patch_embeds：不要 detach 或复制它们")


@pytest.mark.parametrize("bad", ["width", "batch"])
def test_mismatched_shapes_raise_a_clear_error(notebook, bad):
    embeds, patch, mask, labels = _inputs()
    wrong = torch.randn(3, 5, 6) if bad == "width" else torch.randn(2, 5, 8)
    sizes = ("8", "6") if bad == "width" else ("3", "2")
    with pytest.raises(ValueError) as info:
        notebook["splice_patches"](embeds, wrong, mask, labels)
    message = str(info.value)
    assert all(size in message for size in sizes), notebook.say(
        f"the ValueError should name both sizes ({' and '.join(sizes)}): {message!r}",
        f"ValueError 的消息应写出两个尺寸（{' 和 '.join(sizes)}）：{message!r}")


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
    assert int(keep.sum()) == 16, notebook.say(f"{int(keep.sum())} labelled positions; expected 16 (7 actions and EOS, twice)",
                                               f"有 {int(keep.sum())} 个带标签的位置；应为 16 个（两条样本各 7 个动作加 EOS）")
    torch.testing.assert_close(output.loss, F.cross_entropy(output.logits[:, :-1][keep], new_labels[:, 1:][keep]))
