# %% [markdown]
# # 11 · The backbone inside a VLA
#
# Every earlier notebook looked at the language model on its own. A VLA uses it in one particular way: it embeds
# the prompt with `embed_input_ids`, pushes the projected image patches in right after the BOS token, hides those
# patches from the loss, and asks the model to predict a handful of *action tokens*, the last 256 ids of the trained
# vocabulary. This notebook builds that whole path around a tiny backbone (Llama-2's real tokenizer, a 64-wide
# model), with a toy vision encoder small enough to read in one glance, and checks every step against the library:
# the action tokenizer, the splice, the labels, the loss HF computes, the padding, and what breaks when a tokenizer
# has no BOS. On the way it measures why OpenVLA's trick of writing actions as text works on some tokenizers and
# not on others.
#
# **What you will learn here**
# - how a toy vision encoder and projector produce patch embeddings of width `backbone.embed_dim`;
# - OpenVLA's `ActionTokenizer`: 256 bins, ids 31744–31999 on Llama-2, `action_token_begin_idx` one below them, and
#   what its `vocab_size` really counts;
# - why action text comes back as the same ids on SentencePiece tokenizers (Llama-2, Mistral) but not on
#   byte-level BPE (phi-2, Qwen, OPT), and how MiniVLA's `use_extra` avoids the problem;
# - how the OpenVLA action prompt, the action tokens and the labels (-100 everywhere except actions and EOS) fit
#   together;
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
# Every tensor in this notebook is small, so PyTorch runs on one CPU thread (`setup()` sets it): several threads
# gain nothing on 64-wide matrices, and on a busy machine they spend their time waiting for each other. The widest
# tensors are the logits, one row of 32064 scores (the resized vocabulary) per position, so batches stay tiny.

# %%
import numpy as np
import torch
from torch import nn

import vla_backbone

assert torch.get_num_threads() == 1  # setup() set it
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
# tokenizer puts BOS (`<s>`, id 1) in front: the builder writes no BOS of its own, so it appears exactly once.

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
assert prompt_ids == [1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 2654, 18002, 29973, 13, 3744, 29901]
assert prompt_ids.count(tokenizer.bos_token_id) == 1

# %% [markdown]
# ## Actions become tokens
#
# Our action has seven numbers, like OpenVLA's (position and rotation deltas, then the gripper).
# `ActionTokenizer` is upstream's class, numpy throughout. It clips each number to [-1, 1], finds its bin among
# 256 (edges `np.linspace(-1, 1, 256)`; `np.digitize` numbers the bins 1 to 256), and writes bin `b` as token id
# `tokenizer.vocab_size - b`. `tokenizer.vocab_size` counts the trained vocabulary only, 32000 for Llama-2: the
# `<PAD>` the family added later (id 32000) is not counted, so actions take ids 31744 to 31999. Three methods:
# `token_ids(action)` gives the ids (our helper; upstream computes them inside `__call__`), calling the tokenizer
# gives the text OpenVLA writes as the answer, and `decode_token_ids_to_actions(ids)` goes back to numbers.

# %%
from vla_backbone.actions import ActionTokenizer

action_tokenizer = ActionTokenizer(tokenizer)
action = np.array([0.12, -0.4, 0.75, 0.0, -0.9, 0.33, 1.0])
action_ids = action_tokenizer.token_ids(action)
print("action ids:  ", action_ids.tolist())
print("bins:        ", (tokenizer.vocab_size - action_ids).tolist())
print("action text: ", repr(action_tokenizer(action)), tokenizer.convert_ids_to_tokens(action_ids.tolist()))
print("decoded:     ", action_tokenizer.decode_token_ids_to_actions(action_ids).round(4).tolist())

# %%
assert tokenizer.vocab_size == 32000 and len(tokenizer) == 32001 and tokenizer.pad_token_id == 32000
assert action_ids.tolist() == (32000 - np.digitize(action, np.linspace(-1, 1, 256))).tolist()
assert action_tokenizer(action) == tokenizer.decode(action_ids.tolist())
assert action_tokenizer.token_ids(np.array([1.7, -3.0])).tolist() == action_tokenizer.token_ids(np.array([1.0, -1.0])).tolist()
all_ids = action_tokenizer.token_ids(np.linspace(-1, 1, 10001))
assert (all_ids.min(), all_ids.max(), len(np.unique(all_ids))) == (31744, 31999, 256)

# %% [markdown]
# Two attributes read differently from what their names suggest. `action_tokenizer.vocab_size` is the number of
# bins, 256, not the tokenizer's vocabulary size. And `action_token_begin_idx` is 31743, one *below* the smallest
# action id: OpenVLA's training loop picks the action positions with `ids > action_token_begin_idx`. +1.0 is the
# only value in bin 256, id 31744; a begin index one higher would make that mask drop every fully open gripper.

# %%
top_bin = action_tokenizer.token_ids(np.array([1.0]))
print("vocab_size:", action_tokenizer.vocab_size, " action_token_begin_idx:", action_tokenizer.action_token_begin_idx,
      " id of +1.0:", top_bin.tolist())
assert action_tokenizer.vocab_size == action_tokenizer.n_bins == 256
assert action_tokenizer.action_token_begin_idx == 31743 == all_ids.min() - 1
assert (all_ids > action_tokenizer.action_token_begin_idx).all()
assert top_bin.tolist() == [31744] and not (top_bin > action_tokenizer.action_token_begin_idx + 1).any()

# %% [markdown]
# Decoding cannot give the exact value back, only the centre of its bin, so the error is at most half a bin
# width, 1/255. 256 edges make only 255 intervals: the 256th bin holds exactly +1.0 and decodes to the last
# centre, so ids 31744 and 31745 decode to the same value.

# %%
values = np.linspace(-1.0, 1.0, 20001)
decoded = action_tokenizer.decode_token_ids_to_actions(action_tokenizer.token_ids(values))
half_bin = (action_tokenizer.bins[1] - action_tokenizer.bins[0]) / 2
print(f"half a bin: {half_bin:.6f}   largest round-trip error: {np.abs(decoded - values).max():.6f}")

# %%
assert abs(half_bin - 1 / 255) < 1e-12
assert np.abs(decoded - values).max() <= half_bin + 1e-12
assert action_tokenizer.bin_centers.shape == (255,) and len(np.unique(decoded)) == 255
assert (32000 - action_tokenizer.token_ids(np.array([1.0, 0.9999]))).tolist() == [256, 255]
assert action_tokenizer.decode_token_ids_to_actions(np.array([31744])) == action_tokenizer.decode_token_ids_to_actions(np.array([31745]))

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
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, (low, high), title in zip(axes, [(-1.3, 1.3), (0.0, 0.05)], [TEXT["full"], TEXT["zoom"]]):
    xs = np.linspace(low, high, 2001)
    ax.plot(xs, action_tokenizer.decode_token_ids_to_actions(action_tokenizer.token_ids(xs)), drawstyle="steps-post")
    ax.plot(xs, xs, "--", color="gray", linewidth=0.8, label=TEXT["ideal"])
    ax.set(xlabel=TEXT["x"], ylabel=TEXT["y"], title=title)
    ax.legend(loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Input ids and labels
#
# OpenVLA writes the action as text, `action_tokenizer(action)`, makes it the answer turn of the prompt, tokenizes
# the whole training prompt in one call, and labels only its last `len(action) + 1` tokens: the seven action tokens
# and EOS. Everything before them, BOS included, is -100 (ignored by the loss). On Llama-2 the training ids are the
# inference prompt's ids, then `▁` (29871, the space after `Out:`, notebook 05), then the seven action ids, then EOS.

# %%
IGNORE = -100


def make_example(instruction: str, action: np.ndarray) -> tuple[list[int], list[int]]:
    """Input ids and labels for one (instruction, action) pair, without the image, as OpenVLA's dataset makes them."""
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", openvla_action_prompt(instruction))
    builder.add_turn("gpt", action_tokenizer(action))
    input_ids = tokenizer(builder.get_prompt(), add_special_tokens=True).input_ids
    labels = [IGNORE] * (len(input_ids) - (len(action) + 1)) + input_ids[-(len(action) + 1):]
    return input_ids, labels


input_ids, labels = make_example(instruction, action)
for token, label in zip(tokenizer.convert_ids_to_tokens(input_ids), labels):
    print(f"{token!r:14} {label}")

# %%
assert input_ids == prompt_ids + [29871] + action_ids.tolist() + [tokenizer.eos_token_id]
assert labels[0] == IGNORE and sum(label != IGNORE for label in labels) == 7 + 1
assert labels[-8:] == action_ids.tolist() + [tokenizer.eos_token_id]

# %% [markdown]
# Counting from the end is only right if the action text turns back into exactly the seven action ids. Whether it
# does depends on the tokenizer, and that is worth measuring.
#
# ## Does action text come back as the same ids?
#
# The recipe: draw 24 random 7-dimensional actions, write each as the answer turn with the backbone's own prompt
# builder, tokenize the whole prompt, and count the prompts that contain the action's seven ids in a row. The
# families' real tokenizers give (one backbone per tokenizer; inference mode, since only the tokenizer and the prompt
# builder matter here):

# %%
ROUND_TRIP_IDS = ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]
others = {backbone_id: vla_backbone.get_llm_backbone_and_tokenizer(backbone_id, inference_mode=True)
          for backbone_id in ROUND_TRIP_IDS[1:] + ["qwen25-0_5b-extra"]}
others["llama2-7b-pure"] = (backbone, tokenizer)


def training_prompt_ids(family_backbone, family_tokenizer, actions, sample):
    """The whole OpenVLA training prompt for `sample`, tokenized in one call."""
    family_builder = family_backbone.prompt_builder_fn("openvla")
    family_builder.add_turn("human", openvla_action_prompt(instruction))
    family_builder.add_turn("gpt", actions(sample))
    return family_tokenizer(family_builder.get_prompt()).input_ids


def survives(family_backbone, family_tokenizer, actions, sample):
    """Whether the action's seven ids come back, in a row, from the tokenized training prompt."""
    ids = actions.token_ids(sample).tolist()
    tokens = training_prompt_ids(family_backbone, family_tokenizer, actions, sample)
    return any(tokens[i : i + len(ids)] == ids for i in range(len(tokens)))


samples = np.random.default_rng(0).uniform(-1, 1, size=(24, 7))
round_trips = {}
for backbone_id in ROUND_TRIP_IDS:
    family_backbone, family_tokenizer = others[backbone_id]
    actions = ActionTokenizer(family_tokenizer)
    round_trips[backbone_id] = sum(survives(family_backbone, family_tokenizer, actions, sample) for sample in samples)
    print(f"{backbone_id:22s} {type(family_tokenizer).__name__:20s} action ids "
          f"{actions.action_token_begin_idx + 1}..{actions.action_token_end_idx - 1}: "
          f"{round_trips[backbone_id]:2d}/{len(samples)} come back")

# %% [markdown]
# Every action comes back on Llama-2 and Mistral; on phi-2, Qwen-2.5 and OPT some do not. The counts for those three
# depend on the draw, and another seed gives other numbers. What does not depend on it: Llama-2 and Mistral bring
# back every possible action (the next cell shows why), while the byte-level tokenizers have actions that cannot
# come back (the cell after shows one).

# %%
assert round_trips["llama2-7b-pure"] == round_trips["mistral-v0.1-7b-pure"] == len(samples)
assert all(round_trips[backbone_id] < len(samples) for backbone_id in ("phi-2-3b", "qwen25-0_5b-pure", "opt-125m"))

# %% [markdown]
# **Why SentencePiece keeps them.** Llama-2's and Mistral's last 256 tokens are each one character of a script the
# models rarely saw (CJK, Hangul, Malayalam, ...), and neither vocabulary has a piece made of two or more of those
# characters, or of `▁` and one of them. SentencePiece can only emit pieces that are in the vocabulary, so a run of
# action characters has nothing to merge into: each character comes back as itself.

# %%
for backbone_id in ("llama2-7b-pure", "mistral-v0.1-7b-pure"):
    family_tokenizer = others[backbone_id][1]
    tail = set(family_tokenizer.convert_ids_to_tokens(list(range(31744, 32000))))
    joined = [piece for piece in family_tokenizer.get_vocab()
              if len(piece) >= 2 and any(c in tail for c in piece) and all(c in tail or c == "▁" for c in piece)]
    print(f"{backbone_id:22s} single characters: {all(len(piece) == 1 for piece in tail)}, "
          f"pieces joining them: {len(joined)}")
    assert all(len(piece) == 1 for piece in tail) and not joined

# %% [markdown]
# **Why byte-level BPE does not.** GPT-2-style tokenizers (phi-2, Qwen, OPT) first cut the text into words at spaces
# and punctuation, then merge bytes inside each word. Their last 256 tokens are ordinary pieces of words, many
# without a leading space (shown as `Ġ`). Such a piece glues onto its neighbour, and the tokenizer segments the joined
# word from scratch. On phi-2, bin 102 is the piece `======`: an action with two neighbouring values in that bin is
# written `======` + `======`, and the tokenizer reads `============`, which is one token of its own. Seven actions go
# in, six tokens come out, and labelling "the last eight tokens" would grade the wrong positions.

# %%
phi, phi_tokenizer = others["phi-2-3b"]
phi_actions = ActionTokenizer(phi_tokenizer)
merging = np.array([0.0, -0.2, -0.2, 0.0, 0.0, 0.0, 1.0])
written = phi_actions.token_ids(merging).tolist()
read_back = training_prompt_ids(phi, phi_tokenizer, phi_actions, merging)[-8:]
print("written:", written, phi_tokenizer.convert_ids_to_tokens(written))
print("read:   ", read_back, phi_tokenizer.convert_ids_to_tokens(read_back))

# %%
assert phi_tokenizer.convert_ids_to_tokens(written[1:3]) == ["======", "======"]
assert phi_tokenizer.convert_ids_to_tokens(read_back[1]) == "============" and written[1] not in read_back
# Seven in, six out: the two pieces became one, the other five came back as written (then phi-2's "\n" and EOS).
assert len(written) == 7 and read_back[:6] == [written[0], read_back[1], *written[3:]]
assert not survives(phi, phi_tokenizer, phi_actions, merging)

# %% [markdown]
# **phi-2 has a second trap.** Its trained vocabulary ends with `<|endoftext|>` (id 50256), which is also its BOS
# and its EOS. Bin 1 (values from -1.0 to just under -0.992, and everything that clipping brings up to -1.0) is
# written as `vocab_size - 1`, that very token: an action dimension in that bin puts EOS in the middle of the answer,
# and generation stops there. This is upstream's formula, kept as it is (OpenVLA never trained a phi-2 VLA); of the five families,
# only phi-2 has a special token among its action ids. A phi-2 port needs action tokens of its own, as MiniVLA added
# for Qwen (next).

# %%
lowest = phi_actions.token_ids(np.array([-1.0])).tolist()
print("phi-2: -1.0 ->", lowest, phi_tokenizer.convert_ids_to_tokens(lowest), "| EOS id:", phi_tokenizer.eos_token_id)
for backbone_id in ROUND_TRIP_IDS:
    family_tokenizer = others[backbone_id][1]
    family_actions = ActionTokenizer(family_tokenizer)
    bin_ids = range(family_actions.action_token_begin_idx + 1, family_actions.action_token_end_idx)
    clash = sorted(set(bin_ids) & set(family_tokenizer.all_special_ids))
    print(f"{backbone_id:22s} special tokens among the 256 action ids: {family_tokenizer.convert_ids_to_tokens(clash)}")
    assert bool(clash) == (backbone_id == "phi-2-3b")
assert lowest == [phi_tokenizer.eos_token_id] == [50256]

# %% [markdown]
# **MiniVLA's answer: `use_extra`.** MiniVLA, the Qwen-2.5 descendant of OpenVLA, adds 256 tokens `<|extra_0|>` …
# `<|extra_255|>` to Qwen's tokenizer (backbone `qwen25-0_5b-extra`) and builds its action tokenizer with
# `use_extra=True`, which counts the bins down from `len(tokenizer)` instead of the trained vocabulary: bin `b`
# becomes id `len(tokenizer) - b`, one of the added tokens. Added tokens are cut out of the text before any merge
# runs, so they never merge with a neighbour, and every action comes back.

# %%
extra, extra_tokenizer = others["qwen25-0_5b-extra"]
extra_actions = ActionTokenizer(extra_tokenizer, use_extra=True)
ends = extra_actions.token_ids(np.array([1.0, -1.0])).tolist()
extra_round_trips = sum(survives(extra, extra_tokenizer, extra_actions, sample) for sample in samples)
print(f"len(tokenizer) = {len(extra_tokenizer)}; +1.0 -> {ends[0]} {extra_tokenizer.convert_ids_to_tokens(ends[0])}, "
      f"-1.0 -> {ends[1]} {extra_tokenizer.convert_ids_to_tokens(ends[1])}; {extra_round_trips}/{len(samples)} come back")

# %%
assert len(extra_tokenizer) == extra_actions.action_token_end_idx == 151921
assert ends == [151665, 151920] and extra_tokenizer.convert_ids_to_tokens(ends) == ["<|extra_0|>", "<|extra_255|>"]
assert extra_actions.action_token_begin_idx == 151664
assert extra_round_trips == len(samples)

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
    values = np.array(ACTIONS[action])
    ids, labels = make_example(instruction, values)
    decoded = action_tokenizer.decode_token_ids_to_actions(action_tokenizer.token_ids(values))
    print(f"{len(ids)} tokens, {sum(label != IGNORE for label in labels)} labelled")
    print("labelled ids:", [label for label in labels if label != IGNORE])
    print("decoded action:", decoded.round(3).tolist())
    return sum(label != IGNORE for label in labels)


labelled = explore(show_example, instruction=["Pick up the red cup", "Open the top drawer and put the sponge inside"], action=list(ACTIONS))
assert labelled == 8
assert all(sum(label != IGNORE for label in make_example(instruction, values)[1]) == 8
           for instruction in ("Pick up the red cup", "Open the top drawer and put the sponge inside")
           for values in map(np.array, ACTIONS.values()))


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
# shifted cross-entropy ourselves. The logits have one column per row of the resized embedding matrix, 32064.

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
assert output.logits.shape == (1, T + NUM_PATCHES, 32064) and backbone.llm.config.vocab_size == 32064
assert torch.isfinite(output.loss)
torch.testing.assert_close(output.loss, by_hand)
assert not torch.allclose(output.loss, unshifted)

# %% [markdown]
# The first scored logits sit at the `▁` after `Out:`: they predict the first action token. The logits at BOS, at
# the patches and at the rest of the prompt are never scored.

# %%
scored = (vlm_labels[0, 1:] != IGNORE).nonzero().flatten()
space_position = NUM_PATCHES + len(prompt_ids)
print("positions whose logits are scored:", scored.tolist(), " the ▁ after Out: at", space_position)
assert scored.tolist() == list(range(space_position, space_position + 8))
assert input_ids[space_position - NUM_PATCHES] == 29871


# %% [markdown]
# ## Right-padded batches
#
# Instructions differ in length, so a batch needs padding. The collator pads **on the right**: ids with
# `backbone.pad_token_id` (`<PAD>`, 32000), labels with -100, attention mask with 0. Right padding is what makes the
# splice work for a whole batch at once: every row still starts with BOS, so position 1 is "right after BOS" in
# every row. With left padding, column 0 would be PAD in the shorter row and its patches would land after a PAD.

# %%
def collate(examples):
    """Right-pad (input_ids, labels) pairs into tensors, as OpenVLA's collator does."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.tensor([ids + [backbone.pad_token_id] * (width - len(ids)) for ids, _ in examples])
    labels = torch.tensor([labels + [IGNORE] * (width - len(labels)) for _, labels in examples])
    return ids, (ids != backbone.pad_token_id).long(), labels


short = make_example("pick up the cup", np.array([0.1, 0.2, -0.3, 0.0, 0.0, 0.0, 1.0]))
long = make_example("open the top drawer and put the sponge inside", np.array([-0.5, 0.4, 0.2, 0.1, 0.0, -0.1, -1.0]))
batch_ids, batch_mask, batch_labels = collate([short, long])
images = torch.rand(2, 3, 32, 32)
batch_embeds, batch_attention, batch_vlm_labels = splice(
    backbone.embed_input_ids(batch_ids), batch_mask, batch_labels, projector(vision(images))
)
print("lengths:", len(short[0]), len(long[0]), "-> padded ids", tuple(batch_ids.shape), "-> spliced", tuple(batch_embeds.shape))
print("mask of the short row after splicing:", batch_attention[0].tolist())

# %%
pad = len(long[0]) - len(short[0])
assert pad > 0 and backbone.pad_token_id == tokenizer.pad_token_id == 32000
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
# Now the smallest possible VLA training run: one (image, instruction, action) example, 40 AdamW steps. The
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
# Greedy decoding, written out: start from the spliced inference prompt (BOS, patches, prompt text, and the `▁` that
# upstream's `predict_action` appends), take the arg-max token, append its embedding, repeat seven times. The
# decoded ids go back through `decode_token_ids_to_actions`.

# %%
target_ids = action_ids.tolist()
inference_ids = prompt_ids + [29871]
assert inference_ids == input_ids[: len(inference_ids)]


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
    decode = action_tokenizer.decode_token_ids_to_actions
    return float(np.abs(decode(np.array(ids)) - decode(np.array(target_ids))).mean())


before = greedy_action_ids(image, inference_ids)
print("target:", target_ids)
print("before:", before, f"mean action error {action_error(before):.3f}")

# %%
torch.manual_seed(0)
optimizer = torch.optim.AdamW(trainable, lr=1e-2)
ids_t, labels_t = torch.tensor([input_ids]), torch.tensor([labels])
losses = []
for step in range(40):
    embeds, mask, step_labels = splice(backbone.embed_input_ids(ids_t), torch.ones_like(ids_t), labels_t, projector(vision(image)))
    loss = backbone(input_ids=None, inputs_embeds=embeds, attention_mask=mask, labels=step_labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
after = greedy_action_ids(image, inference_ids)
print("losses:", [round(v, 2) for v in losses])
print("after: ", after, f"mean action error {action_error(after):.3f}")
print("correct action tokens:", sum(a == b for a, b in zip(before, target_ids)), "->", sum(a == b for a, b in zip(after, target_ids)))

# %%
TEXT = {"en": {"step": "step", "loss": "loss (action tokens + EOS)", "title": "40 AdamW steps on one example"},
        "zh": {"step": "步数", "loss": "损失（动作 token + EOS）", "title": "在一个样本上做 40 步 AdamW"}}[LANG]
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
# **Try it.** Change `lr=1e-2` to `3e-2`, or the number of steps to 20, and run the notebook again from the top
# (re-running only the training cell continues from the weights it left behind). Then freeze the projector too
# (drop it from `trainable`): the last-layer modules must now do all the work with the patches as they are.
#
# ## Tokenizers without BOS: phi-2 and Qwen
#
# The splice assumes that position 0 holds BOS. `check_bos` enforces it when a backbone loads: the tokenizer must
# prepend BOS with special tokens, and only then. Two families fail it by design and are listed in
# `SPECIAL_CASES`, so the check is skipped for them:
# - **phi-2**: its only special token `<|endoftext|>` (id 50256) serves as BOS, EOS and UNK, and its tokenizer adds
#   nothing;
# - **Qwen-2.5** (the MiniVLA ids): there is no BOS token at all.

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error

qwen, qwen_tokenizer = others["qwen25-0_5b-pure"]
print("qwen bos_token_id:", qwen_tokenizer.bos_token_id, "  phi bos_token:", repr(phi_tokenizer.bos_token), "=", phi_tokenizer.bos_token_id)
for name, tok in [("qwen", qwen_tokenizer), ("phi", phi_tokenizer)]:
    with expect_error(TokenizerBOSError, match="does not prepend BOS"):
        check_bos(tok, f"my-{name}")

# %%
assert {"phi-2-3b", "qwen25-0_5b-pure", "qwen25-7b-pure"} <= SPECIAL_CASES
assert qwen_tokenizer.bos_token_id is None
assert phi_tokenizer.bos_token == phi_tokenizer.eos_token == "<|endoftext|>" and phi_tokenizer.bos_token_id == 50256

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
# system turn, so the first id is `<|im_start|>` (151644) and a splice at position 1 lands between `<|im_start|>`
# and the role name `system` (one token, 8948):

# %%
qwen_builder = qwen.prompt_builder_fn("openvla")
qwen_builder.add_turn("human", openvla_action_prompt(instruction))
qwen_ids = qwen_tokenizer(qwen_builder.get_prompt()).input_ids
im_start = qwen_tokenizer.convert_tokens_to_ids("<|im_start|>")
print(qwen_ids[:6], qwen_tokenizer.convert_ids_to_tokens(qwen_ids[:6]))
qwen_embeds, _, _ = splice(qwen.embed_input_ids(torch.tensor([qwen_ids])), torch.ones(1, len(qwen_ids), dtype=torch.long),
                           torch.full((1, len(qwen_ids)), IGNORE), torch.zeros(1, NUM_PATCHES, qwen.embed_dim))
assert qwen_ids[:2] == [im_start, 8948] == [151644, 8948] and qwen_builder.get_prompt().startswith("<|im_start|>system\n")
torch.testing.assert_close(qwen_embeds[:, 0], qwen.embed_input_ids(torch.tensor([[im_start]]))[:, 0])

# %% [markdown]
# So the check is skipped, not satisfied: for these ids the guarantee "a fixed token sits in front of the image"
# comes from the prompt builder, and nothing at load time verifies it. Feed such a backbone a prompt that did not
# come from its builder and the patches follow a word again.
#
# ## Summary
# - The vision side reaches the language model as `NUM_PATCHES` vectors of width `backbone.embed_dim`, spliced in
#   as `[emb[:, :1], patches, emb[:, 1:]]`; the attention mask is True and the labels are -100 for every patch.
# - `ActionTokenizer` writes bin `b` (1..256 over [-1, 1]) as id `tokenizer.vocab_size - b`: 31744–31999 on
#   Llama-2. Its `vocab_size` is the number of bins (256), and `action_token_begin_idx` (31743) sits one below the
#   smallest action id so that `ids > action_token_begin_idx` keeps the top bin. Decoding returns bin centres, at
#   most half a bin (1/255) away.
# - Action text tokenized inside the prompt comes back as the same ids on SentencePiece tokenizers (Llama-2,
#   Mistral: single characters that nothing joins), but not always on byte-level BPE (phi-2, Qwen, OPT: pieces glue
#   onto their neighbours and are re-segmented). MiniVLA's `use_extra=True` puts the bins on 256 added
#   `<|extra_i|>` tokens, which never merge.
# - Only the action tokens and EOS carry labels; `backbone(input_ids=None, inputs_embeds=..., attention_mask=...,
#   labels=...)` shifts the labels inside the model; collators pad on the right so BOS stays in column 0.
# - Training the projector and `last_layer_finetune_modules` for 40 steps already pulls the greedy action towards
#   the target.
# - phi-2 and Qwen skip the BOS check (`SPECIAL_CASES`); their prompt builders write the first token instead.
#
# ## Exercises
# 1. Move the splice: put the patches at position 0 (before BOS) and at the end of the prompt. Does the loss of the
#    untrained model change? After 40 steps, which placement reaches the target action first?
# 2. Write `make_example` for `phi-2-3b` and `qwen25-0_5b-pure` without going through text: build `input_ids` from
#    the prompt ids and `token_ids(action)` directly. Where do the patches go in each, and what is
#    `ActionTokenizer(tokenizer).action_token_begin_idx` for each tokenizer?
# 3. Find, for OPT, a pair of neighbouring action tokens that the tokenizer joins into a single token (loop over
#    pairs of ids above `action_token_begin_idx`). Which of the 24 random actions above contain such a pair?
# 4. Train on two examples with different images and different actions in one padded batch. Does greedy decoding
#    tell the two images apart after 80 steps? What happens if both images are the same?
