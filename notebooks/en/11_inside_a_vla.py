# %% [markdown]
# # 11 · The backbone inside a VLA
#
# Every earlier notebook looked at the language model on its own. A VLA uses it in one particular way: it embeds
# the prompt with `embed_input_ids`, pushes the projected image patches in right after the BOS token, hides those
# patches from the loss, and asks the model to predict a handful of *action tokens*, the last 256 ids of the
# vocabulary. This notebook builds that whole path around a tiny backbone, with a toy vision encoder small enough
# to read in one glance, and checks every step against the library: the splice, the labels, the loss HF computes,
# the padding, the action bins, and what breaks when a tokenizer has no BOS.
#
# **What you will learn here**
# - how a toy vision encoder and projector produce patch embeddings of width `backbone.embed_dim`;
# - how the OpenVLA action prompt, the action tokens and the labels (-100 everywhere except actions and EOS) fit together;
# - where the patches go (`[emb[:, :1], patches, emb[:, 1:]]`) and what that does to the attention mask and labels;
# - that HF shifts the labels inside the model, checked against a cross-entropy written by hand;
# - how right padding keeps BOS in column 0 for every row of a batch;
# - that a few optimisation steps on the projector and the last-layer modules already teach the model one action;
# - why phi-2 and Qwen skip the BOS check, and what they do instead.

# %%
# Set-up, the same in every notebook: on Colab install the package; everywhere print versions and seed.
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "vla-backbone[notebooks] @ git+https://github.com/vla-backbone/vla-backbone-notebooks"], check=True)
from vla_backbone.notebook import setup
setup()

# %%
LANG = "en"  # the language of this notebook's prose and plot labels
from vla_backbone.notebook import use_language
use_language(LANG)

# %% [markdown]
# ## A toy vision encoder and a projector
#
# In a real VLA the vision side is a large pretrained vision transformer, but all the language model ever sees of
# it is a sequence of vectors, one per image patch, each as wide as the model's embeddings. A single `Conv2d` with
# kernel and stride 8 is enough to play that part: it cuts a 3×32×32 image into a 4×4 grid of 8×8 patches and
# turns each into a 32-dimensional feature. The projector, a small two-layer MLP, maps those features to
# `backbone.embed_dim`.
#
# Every tensor in this notebook is tiny, so PyTorch runs on one CPU thread (`setup()` sets it): several threads
# gain nothing on 64-wide matrices, and on a busy machine they spend their time waiting for each other.

# %%
import torch
from torch import nn

import vla_backbone

backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")


class ToyVisionEncoder(nn.Module):
    """3x32x32 image -> 16 patch features of width 32."""

    def __init__(self, patch: int = 8, width: int = 32) -> None:
        super().__init__()
        self.patchify = nn.Conv2d(3, width, kernel_size=patch, stride=patch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.patchify(images).flatten(2).transpose(1, 2)


torch.manual_seed(0)
vision = ToyVisionEncoder()
projector = nn.Sequential(nn.Linear(32, backbone.embed_dim), nn.GELU(), nn.Linear(backbone.embed_dim, backbone.embed_dim))
image = torch.rand(1, 3, 32, 32)

features = vision(image)
patches = projector(features)
print("features:", tuple(features.shape), " projected patches:", tuple(patches.shape))

# %% [markdown]
# Sixteen patches, each exactly as wide as a token embedding of this backbone (64 for the tiny replica): that
# width is all the projector needs to know about the language model.

# %%
NUM_PATCHES = 16
assert features.shape == (1, NUM_PATCHES, 32)
assert patches.shape == (1, NUM_PATCHES, backbone.embed_dim) and backbone.embed_dim == 64
assert backbone.embed_input_ids(torch.tensor([[1]])).shape[-1] == patches.shape[-1]

# %% [markdown]
# ## The action prompt
#
# The backbone names its own prompt format through `prompt_builder_fn`; for `llama2-7b-pure` that is the plain
# `In: ... Out:` template. The human turn is OpenVLA's fixed question around the instruction, lower-cased. The
# tokenizer puts BOS (`<s>`) in front: the builder writes no BOS of its own, so it appears exactly once.

# %%
from vla_backbone.prompting import openvla_action_prompt

instruction = "Pick up the red cup"
builder = backbone.prompt_builder_fn("openvla")
builder.add_turn("human", openvla_action_prompt(instruction))
prompt = builder.get_prompt()
prompt_ids = tokenizer(prompt).input_ids
print(repr(prompt))
print(prompt_ids)
print(tokenizer.convert_ids_to_tokens(prompt_ids))

# %%
assert prompt == "In: What action should the robot take to pick up the red cup?\nOut:"
assert prompt_ids[0] == tokenizer.bos_token_id and prompt_ids.count(tokenizer.bos_token_id) == 1

# %% [markdown]
# ## Actions become tokens
#
# Our action has seven numbers, like OpenVLA's (position and rotation deltas, then the gripper).
# `ActionTokenizer` clips each to [-1, 1], finds its bin among 256 (edges `torch.linspace(-1, 1, 256)`), and
# writes bin `b` as token id `vocab_size - b`. `vocab_size` is the trained vocabulary only, 1024 here: the
# `<PAD>` the family added later (id 1024) is not counted, so actions take ids 768 to 1023.

# %%
from vla_backbone.actions import ActionTokenizer

action_tokenizer = ActionTokenizer(tokenizer)
action = torch.tensor([0.12, -0.4, 0.75, 0.0, -0.9, 0.33, 1.0])
action_ids = action_tokenizer.encode(action)
print("action ids:", action_ids.tolist())
print("bins:      ", action_tokenizer.bin_index(action).tolist())
print("decoded:   ", [round(v, 4) for v in action_tokenizer.decode(action_ids).tolist()])

# %%
assert tokenizer.vocab_size == 1024 and len(tokenizer) == 1025 and tokenizer.pad_token_id == 1024
assert action_tokenizer.action_token_begin_idx == 768
assert torch.equal(action_ids, tokenizer.vocab_size - action_tokenizer.bin_index(action))
assert ((action_ids >= 768) & (action_ids < 1024)).all()
assert torch.equal(action_tokenizer.encode(torch.tensor([1.7, -3.0])), action_tokenizer.encode(torch.tensor([1.0, -1.0])))

# %% [markdown]
# Decoding cannot give the exact value back, only the centre of its bin, so the error is at most half a bin
# width, 1/255. 256 edges make only 255 intervals: the 256th bin holds exactly +1.0 and decodes to the last
# centre, so ids 768 and 769 decode to the same value.

# %%
values = torch.linspace(-1.0, 1.0, 20001)
decoded = action_tokenizer.decode(action_tokenizer.encode(values))
half_bin = (action_tokenizer.bins[1] - action_tokenizer.bins[0]).item() / 2
print(f"half a bin: {half_bin:.6f}   largest round-trip error: {(decoded - values).abs().max():.6f}")

# %%
assert abs(half_bin - 1 / 255) < 1e-7
assert (decoded - values).abs().max() <= half_bin + 1e-6
assert action_tokenizer.bin_centers.numel() == 255 and decoded.unique().numel() == 255
assert action_tokenizer.bin_index(torch.tensor([1.0, 0.9999])).tolist() == [256, 255]
assert action_tokenizer.decode(torch.tensor([768])) == action_tokenizer.decode(torch.tensor([769]))

# %% [markdown]
# A staircase shows it at a glance: continuous action in, decoded action out. Outside [-1, 1] the stairs stop
# (clipping); the zoom on the right shows the individual steps, 2/255 wide.

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"x": "continuous action", "y": "decoded action (bin centre)", "full": "256 bins over [-1, 1]",
           "zoom": "zoom: a few bins", "ideal": "identity"},
    "zh": {"x": "连续动作值", "y": "解码后的动作值（区间中心）", "full": "[-1, 1] 上的 256 个区间",
           "zoom": "放大：几个区间", "ideal": "恒等线"},
}[LANG]
sweep = torch.linspace(-1.3, 1.3, 5001)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, (low, high), title in zip(axes, [(-1.3, 1.3), (0.0, 0.05)], [TEXT["full"], TEXT["zoom"]]):
    xs = sweep if low < -1 else torch.linspace(low, high, 2001)
    ax.plot(xs, action_tokenizer.decode(action_tokenizer.encode(xs)), drawstyle="steps-post")
    ax.plot(xs, xs, "--", color="gray", linewidth=0.8, label=TEXT["ideal"])
    ax.set(xlabel=TEXT["x"], ylabel=TEXT["y"], title=title)
    ax.legend(loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Input ids and labels
#
# The training sequence is the prompt, then the action ids, then EOS. The labels copy the ids where the model
# should learn something and put -100 (ignored by the loss) everywhere else: only the seven action tokens and EOS
# carry labels. The prompt, including BOS, is -100.
#
# We append the action ids directly. OpenVLA instead writes them as text (`action_tokenizer(action)`), tokenizes
# the whole prompt again and labels its last `len(action) + 1` tokens. That only works when the text turns back
# into exactly the same ids. The tiny replicas register their 256 tail tokens so that it does, and the count below
# checks it on 50 random actions; on a tokenizer of your own, check it before trusting the text path.

# %%
IGNORE = -100


def make_example(instruction: str, action: torch.Tensor) -> tuple[list[int], list[int]]:
    """Input ids and labels for one (instruction, action) pair, without the image."""
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", openvla_action_prompt(instruction))
    prompt_ids = tokenizer(builder.get_prompt()).input_ids
    target = action_tokenizer.encode(action).tolist() + [tokenizer.eos_token_id]
    return prompt_ids + target, [IGNORE] * len(prompt_ids) + target


input_ids, labels = make_example(instruction, action)
for token, label in zip(tokenizer.convert_ids_to_tokens(input_ids), labels):
    print(f"{token!r:48} {label}")

# %%
assert input_ids[: len(prompt_ids)] == prompt_ids and input_ids[-1] == tokenizer.eos_token_id
assert labels[0] == IGNORE and sum(label != IGNORE for label in labels) == 7 + 1
assert labels[-8:] == action_ids.tolist() + [tokenizer.eos_token_id]

torch.manual_seed(0)
samples = torch.rand(50, 7) * 2 - 1
same = 0
for sample in samples:
    text_builder = backbone.prompt_builder_fn("openvla")
    text_builder.add_turn("human", openvla_action_prompt(instruction))
    text_builder.add_turn("gpt", action_tokenizer(sample))
    same += tokenizer(text_builder.get_prompt()).input_ids[-8:-1] == action_tokenizer.encode(sample).tolist()
print(f"text round trip gives the same action ids for {same} of {len(samples)} random actions")
assert same == len(samples)

# %% [markdown]
# **Try it.** Pick an instruction and an action and look at the ids and labels the VLM would train on. Long
# instructions only add prompt tokens (all -100); the number of labelled positions is always 8.

# %%
from vla_backbone.notebook import explore

ACTIONS = {
    "reach forward, gripper open": [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    "lift, gripper closed": [0.0, 0.0, 0.8, 0.0, 0.0, 0.0, -1.0],
    "out of range (clipped)": [1.5, -2.0, 0.0, 0.0, 0.0, 0.0, 1.0],
}


def show_example(instruction: str, action: str) -> int:
    values = torch.tensor(ACTIONS[action])
    ids, labels = make_example(instruction, values)
    decoded = action_tokenizer.decode(action_tokenizer.encode(values))
    print(f"{len(ids)} tokens, {sum(label != IGNORE for label in labels)} labelled")
    print("labelled ids:", [label for label in labels if label != IGNORE])
    print("decoded action:", [round(v, 3) for v in decoded.tolist()])
    return sum(label != IGNORE for label in labels)


labelled = explore(show_example, instruction=["Pick up the red cup", "Open the top drawer and put the sponge inside"], action=list(ACTIONS))
assert labelled == 8


# %% [markdown]
# ## Splicing the patches in right after BOS
#
# The VLM embeds the text with `backbone.embed_input_ids` and cuts the sequence after the first position:
# `[emb[:, :1], patches, emb[:, 1:]]`. The attention mask gets a True for every patch, since the model must attend
# to them, and the labels get -100 for every patch, since nobody asks the model to predict pixels. BOS keeps its
# -100 at position 0. The one function below does all three, for a batch.

# %%
def splice(embeddings, attention_mask, labels, patches):
    """Insert `patches` after position 0 (BOS) in the embeddings, the attention mask and the labels."""
    batch, num_patches = patches.shape[:2]
    patch_mask = torch.full((batch, num_patches), True, dtype=attention_mask.dtype)
    patch_labels = torch.full((batch, num_patches), IGNORE, dtype=labels.dtype)
    return (
        torch.cat([embeddings[:, :1], patches, embeddings[:, 1:]], dim=1),
        torch.cat([attention_mask[:, :1], patch_mask, attention_mask[:, 1:]], dim=1),
        torch.cat([labels[:, :1], patch_labels, labels[:, 1:]], dim=1),
    )


ids_t = torch.tensor([input_ids])
embeddings = backbone.embed_input_ids(ids_t)
inputs_embeds, attention_mask, vlm_labels = splice(embeddings, torch.ones_like(ids_t), torch.tensor([labels]), patches)
print("text:", tuple(embeddings.shape), "-> with patches:", tuple(inputs_embeds.shape))

# %% [markdown]
# Position 0 is still BOS, positions 1 to 16 are the patches, and everything after is the text shifted right by 16.

# %%
T = len(input_ids)
assert inputs_embeds.shape == (1, T + NUM_PATCHES, backbone.embed_dim)
torch.testing.assert_close(inputs_embeds[:, 0], backbone.embed_input_ids(torch.tensor([[tokenizer.bos_token_id]]))[:, 0])
torch.testing.assert_close(inputs_embeds[:, 1 : 1 + NUM_PATCHES], patches)
torch.testing.assert_close(inputs_embeds[:, 1 + NUM_PATCHES :], embeddings[:, 1:])
assert attention_mask.shape == vlm_labels.shape == (1, T + NUM_PATCHES) and attention_mask.all()
assert (vlm_labels[:, : 1 + NUM_PATCHES] == IGNORE).all()
assert vlm_labels[0, 1 + NUM_PATCHES :].tolist() == labels[1:]

# %% [markdown]
# ## The forward pass, as the VLM calls it
#
# The VLM passes no ids at all, only the spliced embeddings: `backbone(input_ids=None, inputs_embeds=...,
# attention_mask=..., labels=...)`. The labels sit at the same positions as the inputs; the model shifts them
# itself, so that the logits at position *t* are scored against the label at *t + 1*. We check that by writing the
# shifted cross-entropy ourselves.

# %%
import torch.nn.functional as F

output = backbone(input_ids=None, inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=vlm_labels)


def shifted_cross_entropy(logits, labels):
    """Mean cross-entropy of logits[:, t] against labels[:, t + 1], skipping -100."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)


by_hand = shifted_cross_entropy(output.logits, vlm_labels)
unshifted = F.cross_entropy(output.logits.flatten(0, 1), vlm_labels.flatten(), ignore_index=IGNORE)
print(f"HF loss {output.loss.item():.5f}   shifted by hand {by_hand.item():.5f}   not shifted {unshifted.item():.5f}")

# %%
assert output.logits.shape == (1, T + NUM_PATCHES, backbone.llm.config.vocab_size)
assert torch.isfinite(output.loss)
torch.testing.assert_close(output.loss, by_hand)
assert not torch.allclose(output.loss, unshifted)

# %% [markdown]
# The first scored logits sit at the last prompt token (the `:` of `Out:`): they predict the first action token.
# The logits at BOS, at the patches and at the rest of the prompt are never scored.

# %%
scored = (vlm_labels[0, 1:] != IGNORE).nonzero().flatten()
last_prompt_position = NUM_PATCHES + len(prompt_ids) - 1
print("positions whose logits are scored:", scored.tolist(), " last prompt token at", last_prompt_position)
assert scored.tolist() == list(range(last_prompt_position, last_prompt_position + 8))
assert tokenizer.convert_ids_to_tokens(input_ids[last_prompt_position - NUM_PATCHES]).endswith(":")


# %% [markdown]
# ## Right-padded batches
#
# Instructions differ in length, so a batch needs padding. The collator pads **on the right**: ids with
# `backbone.pad_token_id`, labels with -100, attention mask with 0. Right padding is what makes the splice work for
# a whole batch at once: every row still starts with BOS, so position 1 is "right after BOS" in every row. With
# left padding, column 0 would be PAD in the shorter row and its patches would land after a PAD.

# %%
def collate(examples):
    """Right-pad (input_ids, labels) pairs into tensors, as OpenVLA's collator does."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.tensor([ids + [backbone.pad_token_id] * (width - len(ids)) for ids, _ in examples])
    labels = torch.tensor([labels + [IGNORE] * (width - len(labels)) for _, labels in examples])
    return ids, (ids != backbone.pad_token_id).long(), labels


short = make_example("pick up the cup", torch.tensor([0.1, 0.2, -0.3, 0.0, 0.0, 0.0, 1.0]))
long = make_example("open the top drawer and put the sponge inside", torch.tensor([-0.5, 0.4, 0.2, 0.1, 0.0, -0.1, -1.0]))
batch_ids, batch_mask, batch_labels = collate([short, long])
images = torch.rand(2, 3, 32, 32)
batch_embeds, batch_attention, batch_vlm_labels = splice(
    backbone.embed_input_ids(batch_ids), batch_mask, batch_labels, projector(vision(images))
)
print("lengths:", len(short[0]), len(long[0]), "-> padded ids", tuple(batch_ids.shape), "-> spliced", tuple(batch_embeds.shape))
print("mask of the short row after splicing:", batch_attention[0].tolist())

# %%
pad = len(long[0]) - len(short[0])
assert pad > 0 and backbone.pad_token_id == 1024
assert (batch_ids[:, 0] == tokenizer.bos_token_id).all()
assert batch_ids[0, -pad:].eq(backbone.pad_token_id).all() and (batch_labels[0, -pad:] == IGNORE).all()
assert batch_attention[0].tolist() == [1] * (len(short[0]) + NUM_PATCHES) + [0] * pad
assert (batch_vlm_labels[:, 1 : 1 + NUM_PATCHES] == IGNORE).all()
left_padded_short_row = [backbone.pad_token_id] * pad + short[0]
assert left_padded_short_row[0] == backbone.pad_token_id != tokenizer.bos_token_id

# %% [markdown]
# The padded batch gives the short row the same logits it gets alone (causal attention never looks right, and the
# mask hides the pads), and the batch loss is still the shifted cross-entropy, averaged over the 16 labelled
# tokens of both rows.

# %%
with torch.no_grad():
    batch_out = backbone(input_ids=None, inputs_embeds=batch_embeds, attention_mask=batch_attention, labels=batch_vlm_labels)
    alone = backbone(input_ids=None, inputs_embeds=batch_embeds[:1, : len(short[0]) + NUM_PATCHES])
real = len(short[0]) + NUM_PATCHES
torch.testing.assert_close(batch_out.logits[0, :real], alone.logits[0], atol=1e-5, rtol=1e-4)
torch.testing.assert_close(batch_out.loss, shifted_cross_entropy(batch_out.logits, batch_vlm_labels))
assert (batch_vlm_labels != IGNORE).sum() == 16
print(f"batch loss {batch_out.loss.item():.4f}; the short row's logits match its unpadded forward pass")

# %% [markdown]
# ## A few steps of training
#
# Now the smallest possible VLA training run: one (image, instruction, action) example, 20 AdamW steps. The
# language model is frozen except `last_layer_finetune_modules` (input embeddings, last decoder layer, LM head), as
# in OpenVLA's `last-layer-finetune` stage; unlike that stage we also train the projector, so the image features
# can adapt too. The vision encoder stays frozen.

# %%
backbone.requires_grad_(False)
for module in backbone.last_layer_finetune_modules:
    module.requires_grad_(True)
vision.requires_grad_(False)
trainable = [p for p in backbone.parameters() if p.requires_grad] + list(projector.parameters())
frozen_layer = backbone.llm.model.layers[0]
print(f"trainable parameters: {sum(p.numel() for p in trainable):,} of {sum(p.numel() for p in backbone.parameters()) + sum(p.numel() for p in projector.parameters()):,}")
assert not any(p.requires_grad for p in frozen_layer.parameters())
assert all(p.requires_grad for p in backbone.llm.model.layers[-1].parameters())

# %% [markdown]
# Greedy decoding, written out: start from the spliced prompt (BOS, patches, prompt text), take the arg-max token,
# append its embedding, repeat seven times. The decoded ids go back through `ActionTokenizer.decode`.

# %%
target_ids = action_ids.tolist()


@torch.no_grad()
def greedy_action_ids(image, prompt_ids, steps=7):
    text = backbone.embed_input_ids(torch.tensor([prompt_ids]))
    sequence = torch.cat([text[:, :1], projector(vision(image)), text[:, 1:]], dim=1)
    generated = []
    for _ in range(steps):
        next_id = backbone(input_ids=None, inputs_embeds=sequence).logits[:, -1].argmax(-1)
        generated.append(next_id.item())
        sequence = torch.cat([sequence, backbone.embed_input_ids(next_id[:, None])], dim=1)
    return generated


def action_error(ids):
    return (action_tokenizer.decode(torch.tensor(ids)) - action_tokenizer.decode(torch.tensor(target_ids))).abs().mean().item()


before = greedy_action_ids(image, prompt_ids)
print("target:", target_ids)
print("before:", before, f"mean action error {action_error(before):.3f}")

# %%
torch.manual_seed(0)
optimizer = torch.optim.AdamW(trainable, lr=1e-2)
ids_t, labels_t = torch.tensor([input_ids]), torch.tensor([labels])
losses = []
for step in range(20):
    embeds, mask, step_labels = splice(backbone.embed_input_ids(ids_t), torch.ones_like(ids_t), labels_t, projector(vision(image)))
    loss = backbone(input_ids=None, inputs_embeds=embeds, attention_mask=mask, labels=step_labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
after = greedy_action_ids(image, prompt_ids)
print("losses:", [round(v, 2) for v in losses])
print("after: ", after, f"mean action error {action_error(after):.3f}")
print("correct action tokens:", sum(a == b for a, b in zip(before, target_ids)), "->", sum(a == b for a, b in zip(after, target_ids)))

# %%
TEXT = {"en": {"step": "step", "loss": "loss (action tokens + EOS)", "title": "20 AdamW steps on one example"},
        "zh": {"step": "步数", "loss": "损失（动作 token + EOS）", "title": "在一个样本上做 20 步 AdamW"}}[LANG]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(losses, marker="o", markersize=3)
ax.set(xlabel=TEXT["step"], ylabel=TEXT["loss"], title=TEXT["title"])
plt.tight_layout()
plt.show()

# %% [markdown]
# The loss falls by more than half, and the greedily decoded actions move towards the target: more correct action
# tokens and a smaller error in action space.

# %%
assert losses[-1] < 0.5 * losses[0]
assert sum(a == b for a, b in zip(after, target_ids)) > sum(a == b for a, b in zip(before, target_ids))
assert action_error(after) < action_error(before)
assert not any(p.grad is not None for p in frozen_layer.parameters())

# %% [markdown]
# **Try it.** Change `lr=1e-2` to `3e-2`, or the number of steps to 40, and run the notebook again from the top
# (re-running only the training cell continues from the weights it left behind). Then freeze the projector too
# (drop it from `trainable`): the last-layer modules must now do all the work with the patches as they are.
#
# ## Tokenizers without BOS: phi-2 and Qwen
#
# The splice assumes that position 0 holds BOS. `check_bos` enforces it when a backbone loads: the tokenizer must
# prepend BOS with special tokens, and only then. Two families fail it by design and are listed in
# `SPECIAL_CASES`, so the check is skipped for them:
# - **phi-2**: its only special token `<|endoftext|>` serves as BOS, EOS and UNK, and its tokenizer adds nothing;
# - **Qwen-2.5** (the MiniVLA ids): there is no BOS token at all.

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error

qwen, qwen_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("qwen25-0_5b-pure")
phi, phi_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("phi-2-3b")
print("qwen bos_token_id:", qwen_tokenizer.bos_token_id, "  phi bos_token:", repr(phi_tokenizer.bos_token), "=", phi_tokenizer.bos_token_id)
for name, tok in [("qwen", qwen_tokenizer), ("phi", phi_tokenizer)]:
    with expect_error(TokenizerBOSError, match="does not prepend BOS"):
        check_bos(tok, f"my-{name}")

# %%
assert {"phi-2-3b", "qwen25-0_5b-pure", "qwen25-7b-pure"} <= SPECIAL_CASES
assert qwen_tokenizer.bos_token_id is None
assert phi_tokenizer.bos_token == phi_tokenizer.eos_token == "<|endoftext|>"

# %% [markdown]
# What would go wrong without a fix: tokenize the plain `In: ... Out:` prompt with Qwen's tokenizer and the first
# id is already a word, `In`. A splice at position 1 would put the image *after* that word.

# %%
plain_ids = qwen_tokenizer(prompt).input_ids
print(plain_ids[:6], qwen_tokenizer.convert_ids_to_tokens(plain_ids[:6]))
assert qwen_tokenizer.convert_ids_to_tokens(plain_ids[0]) == "In"
assert plain_ids == qwen_tokenizer(prompt, add_special_tokens=False).input_ids

# %% [markdown]
# The fix lives in the prompt builders, which write the first token themselves. `PhiPromptBuilder` starts the text
# with `<|endoftext|>`, phi-2's BOS, so the patches go right after it, exactly as with Llama-2.

# %%
phi_builder = phi.prompt_builder_fn("openvla")
phi_builder.add_turn("human", openvla_action_prompt(instruction))
phi_ids = phi_tokenizer(phi_builder.get_prompt()).input_ids
print(repr(phi_builder.get_prompt()))
print(phi_ids[:5], phi_tokenizer.convert_ids_to_tokens(phi_ids[:5]))
assert phi_builder.get_prompt().startswith("<|endoftext|>Input: ")
assert phi_ids[0] == phi_tokenizer.bos_token_id and phi_ids[1] != phi_tokenizer.bos_token_id

# %% [markdown]
# Qwen has no BOS to write. A Qwen-based VLA such as MiniVLA lists its ids in `SPECIAL_CASES` so the backbone
# loads, and relies on its prompt builder for the first token: `QwenPromptBuilder` opens every prompt with the
# system turn, so the first id is `<|im_start|>` and a splice at position 1 lands between `<|im_start|>` and the
# role name `system`. Here are the ids (on the tiny replica, whose small vocabulary splits `system` into pieces):

# %%
qwen_builder = qwen.prompt_builder_fn("openvla")
qwen_builder.add_turn("human", openvla_action_prompt(instruction))
qwen_ids = qwen_tokenizer(qwen_builder.get_prompt()).input_ids
im_start = qwen_tokenizer.convert_tokens_to_ids("<|im_start|>")
print(qwen_ids[:8], qwen_tokenizer.convert_ids_to_tokens(qwen_ids[:8]))
qwen_embeds, _, _ = splice(qwen.embed_input_ids(torch.tensor([qwen_ids])), torch.ones(1, len(qwen_ids), dtype=torch.long),
                           torch.full((1, len(qwen_ids)), IGNORE), torch.zeros(1, NUM_PATCHES, qwen.embed_dim))
assert qwen_ids[0] == im_start and qwen_builder.get_prompt().startswith("<|im_start|>system\n")
torch.testing.assert_close(qwen_embeds[:, 0], qwen.embed_input_ids(torch.tensor([[im_start]]))[:, 0])

# %% [markdown]
# So the check is skipped, not satisfied: for these ids the guarantee "a fixed token sits in front of the image"
# comes from the prompt builder, and nothing at load time verifies it. Feed such a backbone a prompt that did not
# come from its builder and the patches follow a word again.
#
# ## Summary
# - The vision side reaches the language model as `NUM_PATCHES` vectors of width `backbone.embed_dim`, spliced in
#   as `[emb[:, :1], patches, emb[:, 1:]]`; the attention mask is True and the labels are -100 for every patch.
# - Only the action tokens (`vocab_size - bin`, 256 bins over [-1, 1]) and EOS carry labels; decoding returns bin
#   centres, at most half a bin (1/255) away.
# - `backbone(input_ids=None, inputs_embeds=..., attention_mask=..., labels=...)` shifts the labels inside the model;
#   collators pad on the right so BOS stays in column 0.
# - Training the projector and `last_layer_finetune_modules` for 20 steps already pulls the greedy action towards
#   the target.
# - phi-2 and Qwen skip the BOS check (`SPECIAL_CASES`); their prompt builders write the first token instead.
#
# ## Exercises
# 1. Move the splice: put the patches at position 0 (before BOS) and at the end of the prompt. Does the loss of the
#    untrained model change? After 20 steps, which placement reaches the target action first?
# 2. Write `make_example` for `phi-2-3b` and `qwen25-0_5b-pure` and repeat the training run. Where do the patches go
#    in each, and is `ActionTokenizer(tokenizer).action_token_begin_idx` the same as for Llama-2?
# 3. Train on two examples with different images and different actions in one padded batch. Does greedy decoding
#    tell the two images apart after 40 steps? What happens if both images are the same?
# 4. Replace the linear patchifier by one that returns 64 patches (kernel 4). Which lines of this notebook have to
#    change, and which stay the same because they read `NUM_PATCHES` or `patches.shape`?
