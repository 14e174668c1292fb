# %% [markdown]
# # 06 · `embed_input_ids` and `forward`
#
# A VLA never hands its language model a plain sentence. It turns the text into embeddings with
# `embed_input_ids`, splices the projected image patches in right after BOS, and calls `forward` with
# `inputs_embeds`, an attention mask and labels; at inference it decodes action tokens one at a time from a KV
# cache. These two methods are the whole data path between the VLM and the LLM. `HFCausalLLMBackbone` keeps them
# thin on purpose — one looks up the embedding table, the other passes ten arguments straight to the HuggingFace
# model — so this notebook takes each argument in turn and checks what it does against a computation written by
# hand.
#
# **What you will learn here**
# - that `embed_input_ids` is a row lookup in the embedding matrix, and `inputs_embeds` can replace `input_ids`;
# - a trap when porting to Gemma: who multiplies the embeddings by √`hidden_size` moved in transformers 5.4.0;
# - what `attention_mask` and `position_ids` do with right padding, and why the real positions are safe;
# - how `labels` become the loss: the shift by one, `-100`, and which positions can never contribute;
# - the KV cache: what `use_cache=True` returns, incremental decoding, and the `past_key_values` → `cache` rename;
# - hidden states, attention weights (and why SDPA gives none), and the `CausalLMOutputWithPast` that comes back.

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
# One backbone and one prompt serve the whole notebook: the tiny Llama-2 replica in training mode (as OpenVLA loads
# it) and the OpenVLA action question, which Llama-2's real tokenizer turns into 18 ids, BOS (1) first. Everything
# here is a forward pass, so autograd is switched off for the whole notebook.

# %%
import inspect

import torch
import torch.nn.functional as F
from torch.testing import assert_close

import vla_backbone
from vla_backbone import compat
from vla_backbone.notebook import expect_error

torch.set_grad_enabled(False)
backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
llm, config = backbone.llm, backbone.llm.config
PROMPT = "In: What action should the robot take to pick up the cup?\nOut:"
input_ids = tokenizer([PROMPT], return_tensors="pt").input_ids
n = input_ids.shape[1]
print("input_ids:", input_ids.tolist(), " layers:", config.num_hidden_layers, " hidden size:", backbone.embed_dim)
assert input_ids.tolist() == [[1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 18002, 29973, 13, 3744, 29901]]

# %% [markdown]
# ## `embed_input_ids`: a row lookup
#
# The smallest thing first. An embedding layer is a matrix with one row per token id; embedding a sequence means
# picking rows. The matrix has more rows than the tokenizer has tokens, because the backbone rounded the vocabulary
# up to a multiple of 64 after adding `<PAD>` (notebook 04): Llama-2's 32000 tokens plus `<PAD>` are 32001, in 32064
# rows of width 64.

# %%
weight = llm.get_input_embeddings().weight
by_hand = weight[input_ids]
print("embedding matrix:", tuple(weight.shape), " tokenizer:", len(tokenizer), "tokens  ->  embeddings:", tuple(by_hand.shape))
assert weight.shape == (32064, backbone.embed_dim) == (32064, 64) and len(tokenizer) == 32001
assert by_hand.shape == (1, n, backbone.embed_dim)

# %% [markdown]
# Now the library: `embed_input_ids` calls the model's input-embedding module, which is `model.embed_tokens`.
# Both agree with the lookup by hand.

# %%
embeddings = backbone.embed_input_ids(input_ids)
assert_close(embeddings, by_hand)
assert_close(embeddings, llm.get_input_embeddings()(input_ids))
assert llm.get_input_embeddings() is llm.model.embed_tokens

# %% [markdown]
# Calling the module rather than indexing the weight matters for one reason: hooks on the module fire. The
# training-mode backbone registered one on exactly this module (`enable_input_require_grads`, notebook 07); it marks
# the output as requiring grad. You can see it fire even here, with autograd off: the module's output is marked, the
# hand-made lookup is not.

# %%
assert compat.has_input_grad_hook(llm)
assert embeddings.requires_grad and not by_hand.requires_grad

# %% [markdown]
# ## `forward`: ten arguments, passed straight through
#
# The signature is upstream OpenVLA's, argument for argument:

# %%
ARGUMENTS = ["input_ids", "attention_mask", "position_ids", "past_key_values", "inputs_embeds", "labels",
             "use_cache", "output_attentions", "output_hidden_states", "return_dict"]
print(list(inspect.signature(backbone.forward).parameters))
assert list(inspect.signature(backbone.forward).parameters) == ARGUMENTS

# %% [markdown]
# The body is one call to `llm(...)` with the arguments filtered by `compat.forward_kwargs`, which does two things.
# Arguments left at `None` are dropped, so the model falls back on its own defaults, which is what `None` meant on
# transformers 4.40. And `past_key_values` is handed over under the name this transformers version uses: recent
# 5.x renamed the forward argument to `cache`. The backbone keeps the upstream name so that OpenVLA code calling it
# keeps working.

# %%
llm_arguments = inspect.signature(type(llm).forward).parameters
CACHE_NAME = "cache" if "cache" in llm_arguments else "past_key_values"
print(f"transformers {compat.TRANSFORMERS_VERSION}: the model's forward calls the cache {CACHE_NAME!r}")

passed = compat.forward_kwargs(llm, input_ids=input_ids, past_key_values="<a cache>", labels=None, use_cache=True)
print(sorted(passed))
assert set(passed) == {"input_ids", CACHE_NAME, "use_cache"} and passed[CACHE_NAME] == "<a cache>"

# %% [markdown]
# The reference run that later cells compare against: token ids in, one row of logits per position out, as wide
# as the resized vocabulary (32064 scores per position).

# %%
reference = backbone(input_ids=input_ids)
print(type(reference).__name__, tuple(reference.logits.shape))
assert reference.logits.shape == (1, n, weight.shape[0]) == (1, 18, 32064)

# %% [markdown]
# ### `inputs_embeds` instead of `input_ids`
#
# This is the VLM's path: it builds the embedding sequence itself (text embeddings with image patches spliced in)
# and calls `forward(input_ids=None, inputs_embeds=...)`. Given the plain text embeddings, the logits are the same
# as from the ids.

# %%
from_embeddings = backbone(input_ids=None, inputs_embeds=backbone.embed_input_ids(input_ids))
assert_close(from_embeddings.logits, reference.logits)

# %% [markdown]
# Exactly one of the two must be given. Both at once (or neither) is refused by the HuggingFace model with a
# `ValueError`; the backbone passes it on unchanged.

# %%
with expect_error(ValueError, match="exactly one of input_ids or inputs_embeds"):
    backbone(input_ids=input_ids, inputs_embeds=embeddings)
with expect_error(ValueError, match="exactly one of input_ids or inputs_embeds"):
    backbone()

# %% [markdown]
# ### Who scales the embeddings? A trap when porting to Gemma
#
# Every family in this package hands the embedding rows to the first decoder layer as they are. Gemma multiplies
# them by √`hidden_size` first, and where that multiplication happens moved in transformers 5.4.0:
#
# - up to 5.3 (including 4.40, which OpenVLA pinned, and 4.57) the embedding module is a plain `nn.Embedding`, and
#   `GemmaModel.forward` multiplies whatever `inputs_embeds` it receives;
# - from 5.4 on the module, `GemmaTextScaledWordEmbedding`, multiplies its own output, and `forward` passes
#   `inputs_embeds` on untouched.
#
# Text goes through `embed_input_ids` and reaches the first layer scaled exactly once on every version, so ids and
# `embed_input_ids(ids)` give the same logits, and the contract's check of that (notebook 12) passes either way.
# The projected image patches are another story: before 5.4 the model scaled them, from 5.4 on nothing does. A
# projector trained on one side of 5.4 hands a model on the other side patches √`hidden_size` times too large or
# too small: about 45 for Gemma-2B's width of 2048, and 8 for the width of 64 used here. The port has to scale them
# itself on one side, for instance multiply the projector's output by `hidden_size ** 0.5` from 5.4 on to match a
# projector trained before. The cell builds a one-layer Gemma with random weights from a config (nothing to
# download) and records what its first layer receives from ids and from "patches".

# %%
from packaging.version import Version
from transformers import GemmaConfig, GemmaForCausalLM

gemma_config = GemmaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=32)
gemma = GemmaForCausalLM(gemma_config).eval()
first_layer_inputs = []
hook = gemma.model.layers[0].register_forward_pre_hook(
    lambda module, args, kwargs: first_layer_inputs.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
gemma_ids = torch.tensor([[2, 17, 42, 99]])
patches = torch.randn(1, 4, gemma_config.hidden_size)  # what a projector hands over: vectors of the LLM's width
gemma(input_ids=gemma_ids)
gemma(inputs_embeds=patches)
hook.remove()
from_ids, from_patches = first_layer_inputs
rows = gemma.get_input_embeddings().weight[gemma_ids]
embedding_cls = type(gemma.get_input_embeddings())
print(f"transformers {compat.TRANSFORMERS_VERSION}: embedding module {embedding_cls.__name__}; the first layer "
      f"receives ids' rows x{(from_ids / rows).mean():.2f} and patches x{(from_patches / patches).mean():.2f}")

# %% [markdown]
# Checked on the version installed here: text is scaled once, by √64 = 8; the module scales from 5.4.0 on, and
# then the patches arrive as they were given; before, the model scales them too. The ids and the embeddings path
# agree in both cases.

# %%
scale = gemma_config.hidden_size ** 0.5
assert scale == 8.0
assert_close(from_ids, rows * scale)
module_scales = embedding_cls is not torch.nn.Embedding
assert module_scales == (Version(compat.TRANSFORMERS_VERSION) >= Version("5.4.0"))
assert_close(from_patches, patches if module_scales else patches * scale)
assert_close(gemma(inputs_embeds=gemma.get_input_embeddings()(gemma_ids)).logits, gemma(input_ids=gemma_ids).logits)

# %% [markdown]
# ### `attention_mask` with right padding
#
# A batch needs rows of equal length. The backbone's tokenizer pads on the right with `<PAD>` and returns an
# attention mask with 0 on the padding. The short prompt's logits at its real positions must not change because of
# the padding after it.

# %%
SHORT = "In: put the cup"
batch = tokenizer([PROMPT, SHORT], return_tensors="pt", padding=True)
short_ids = tokenizer([SHORT], return_tensors="pt").input_ids
m = short_ids.shape[1]
print(batch.input_ids.tolist())
print(batch.attention_mask.tolist())
assert tokenizer.padding_side == "right"
assert (batch.input_ids[1, m:] == tokenizer.pad_token_id).all() and (batch.attention_mask[1, m:] == 0).all()

padded = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
alone = backbone(input_ids=short_ids)
assert_close(padded.logits[1, :m], alone.logits[0])
assert_close(padded.logits[0], reference.logits[0])

# %% [markdown]
# A closer look shows *why* right padding is safe: in a causal model a position only attends to itself and to
# earlier positions, and the pads all come later. Even without the mask the real positions are unchanged. The mask
# changes only the outputs at the pad positions themselves — outputs whose labels are `-100` anyway.

# %%
unmasked = backbone(input_ids=batch.input_ids)
assert_close(unmasked.logits[1, :m], alone.logits[0])
assert not torch.allclose(unmasked.logits[1, m:], padded.logits[1, m:])

# %% [markdown]
# ### `position_ids`
#
# Left out, positions count from 0: passing `arange(n)` explicitly changes nothing. Llama encodes positions with
# rotary embeddings (RoPE), and an attention score under RoPE depends only on the *distance* between two positions,
# so shifting every position by the same amount changes nothing either. Stretching the distances does.

# %%
positions = torch.arange(n)[None]
assert_close(backbone(input_ids=input_ids, position_ids=positions).logits, reference.logits)
assert_close(backbone(input_ids=input_ids, position_ids=positions + 100).logits, reference.logits, atol=1e-4, rtol=1e-4)
assert not torch.allclose(backbone(input_ids=input_ids, position_ids=2 * positions).logits, reference.logits, atol=1e-4)

# %% [markdown]
# **Try it:** in a new cell, load `opt-125m` with `get_llm_backbone_and_tokenizer` and repeat the shift by 100 on
# it. OPT learns one embedding per absolute position, so there the shift is no longer harmless.
#
# ## `labels` and the loss
#
# With `labels`, the model also returns the loss. Following OpenVLA, only the end of the sequence is graded: the
# first five labels are set to `-100`, the index cross-entropy ignores.

# %%
IGNORE_INDEX = -100
labels = input_ids.clone()
labels[:, :5] = IGNORE_INDEX
output = backbone(input_ids=input_ids, labels=labels)
print("labels:", labels.tolist(), " loss:", round(output.loss.item(), 4))

# %% [markdown]
# The logits at position *t* predict the token at *t + 1*. So the loss pairs `logits[:, :-1]` with `labels[:, 1:]`
# — HuggingFace shifts inside the model, which is why OpenVLA passes labels aligned with `input_ids`. Then it
# averages the negative log-probability of the right token over the positions whose label is not `-100`. By hand,
# step by step:

# %%
V = output.logits.shape[-1]
shift_logits, shift_labels = output.logits[:, :-1], labels[:, 1:]
graded = shift_labels != IGNORE_INDEX
log_probs = shift_logits.log_softmax(-1)[graded]
by_hand = -log_probs.gather(-1, shift_labels[graded][:, None]).mean()
assert_close(by_hand, output.loss)
assert_close(F.cross_entropy(shift_logits.reshape(-1, V), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX), output.loss)
print(f"{int(graded.sum())} graded positions of {n - 1}; loss by hand {by_hand.item():.4f} = library {output.loss.item():.4f}")

# %% [markdown]
# ### What `-100` really means
#
# A position labelled `-100` does not contribute at all. Scramble the logits that predict ignored labels and feed
# them to the model's own loss function (`llm.loss_function`, the one `forward` uses): the loss does not move.

# %%
noisy = output.logits.clone()
noisy[:, :4] += 10 * torch.randn_like(noisy[:, :4])
assert torch.all(labels[:, 1:5] == IGNORE_INDEX)
assert_close(llm.loss_function(logits=noisy, labels=labels, vocab_size=V), output.loss)

# %% [markdown]
# The shift also means two positions can never contribute, whatever their labels: `labels[:, 0]` (nothing
# predicts the first token; it is BOS, and OpenVLA labels it `-100` anyway) and the logits at the last position
# (there is no next token to predict). Change either; the loss stays.

# %%
changed = labels.clone()
changed[:, 0] = 42
last_scrambled = output.logits.clone()
last_scrambled[:, -1] = torch.randn(V)
assert_close(backbone(input_ids=input_ids, labels=changed).loss, output.loss)
assert_close(llm.loss_function(logits=last_scrambled, labels=labels, vocab_size=V), output.loss)

# %% [markdown]
# Per position, the picture is plain. Every position has a cross-entropy for its next token (grey bars show it
# where the label is the original token id), but only the green ones, whose labels are not `-100`, enter the mean.

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"loss_title": "Per-position loss: only green positions count (grey: label -100)",
           "loss_x": "predicted token (position t + 1)", "loss_y": "cross-entropy",
           "attn_title": "Attention weights, layer 1, head 1 (eager)",
           "attn_x": "key position (attended to)", "attn_y": "query position"},
    "zh": {"loss_title": "逐位置损失：只有绿色位置计入（灰色：标签为 -100）",
           "loss_x": "被预测的 token（位置 t + 1）", "loss_y": "交叉熵",
           "attn_title": "注意力权重：第 1 层、第 1 个头（eager）",
           "attn_x": "键的位置（被关注的 token）", "attn_y": "查询位置"},
}[LANG]

every_position = F.cross_entropy(shift_logits[0], input_ids[0, 1:], reduction="none")
counted = F.cross_entropy(shift_logits[0], shift_labels[0], ignore_index=IGNORE_INDEX, reduction="none")
assert torch.all(counted[~graded[0]] == 0)
assert_close(counted[graded[0]], every_position[graded[0]])
assert_close(counted[graded[0]].mean(), output.loss)


def short(token, width=10):
    token = token.replace("\n", "\\n")
    return token if len(token) <= width else token[: width - 1] + "…"


tokens = [short(t) for t in tokenizer.convert_ids_to_tokens(input_ids[0].tolist())]
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.bar(range(1, n), every_position, color=["tab:green" if g else "lightgrey" for g in graded[0]])
ax.set_xticks(range(1, n), tokens[1:], rotation=30, ha="right", fontsize=8)
ax.set_xlabel(TEXT["loss_x"])
ax.set_ylabel(TEXT["loss_y"])
ax.set_title(TEXT["loss_title"], fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## `use_cache` and `past_key_values`: the KV cache
#
# Generating one token at a time would repeat the whole prefix at every step. The KV cache keeps every layer's keys
# and values, so each step only runs the newest token. The backbone was loaded in training mode, where
# `config.use_cache` is `False` (notebook 02), so a plain call returns no cache; `use_cache=True` asks for one.
#
# Read the cache with `compat.output_cache(output)`: recent transformers 5.x renamed the output field (and the
# forward argument) from `past_key_values` to `cache`. On this machine:

# %%
no_cache = backbone(input_ids=input_ids)
with_cache = backbone(input_ids=input_ids, use_cache=True)
cache = compat.output_cache(with_cache)
print(f"forward argument: {CACHE_NAME!r}, output field: {CACHE_NAME!r}, cache: {type(cache).__name__} "
      f"holding {cache.get_seq_length()} positions")
assert config.use_cache is False and compat.output_cache(no_cache) is None
assert CACHE_NAME in type(with_cache).__dataclass_fields__
assert cache.get_seq_length() == n

# %% [markdown]
# Incremental decoding: run the prompt without its last three tokens, then feed those tokens one at a time, each
# time with the cache from the step before (under the upstream name `past_key_values`; compat renames it). Each
# step must predict what the full forward pass predicted at that position, and the cache grows by exactly one
# position per step. The cache object is updated in place: each step returns the same object.

# %%
prefix = input_ids[:, :-3]
step = backbone(input_ids=prefix, use_cache=True)
cache = compat.output_cache(step)
lengths = [cache.get_seq_length()]
for t in range(prefix.shape[1], n):
    step = backbone(input_ids=input_ids[:, t : t + 1], past_key_values=cache, use_cache=True)
    assert compat.output_cache(step) is cache
    assert_close(step.logits[0, -1], reference.logits[0, t])
    lengths.append(cache.get_seq_length())
print("cache length after each step:", lengths)
assert lengths == list(range(n - 3, n + 1))

# %% [markdown]
# `generate` is this loop plus a choice of token. With the greedy settings the backbone puts on the generation
# config (notebook 02), five new tokens from a hand-written cached loop match `llm.generate` exactly.

# %%
cache_out = backbone(input_ids=input_ids, use_cache=True)
sequence, cache = input_ids, compat.output_cache(cache_out)
next_token = cache_out.logits[:, -1].argmax(-1, keepdim=True)
for _ in range(5):
    sequence = torch.cat([sequence, next_token], dim=1)
    cache_out = backbone(input_ids=next_token, past_key_values=cache, use_cache=True)
    next_token = cache_out.logits[:, -1].argmax(-1, keepdim=True)
generated = llm.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=5)
print("by hand: ", sequence[0, n:].tolist(), "\ngenerate:", generated[0, n:].tolist())
assert torch.equal(sequence, generated)

# %% [markdown]
# ## `output_hidden_states`
#
# With `output_hidden_states=True` the output holds `num_hidden_layers + 1` tensors: the input embeddings, then
# one per decoder layer. The last one is taken *after* the final normalisation, so the LM head alone turns it into
# the logits.

# %%
hidden_out = backbone(input_ids=input_ids, output_hidden_states=True)
hidden_states = hidden_out.hidden_states
print(len(hidden_states), "tensors of shape", tuple(hidden_states[0].shape))
assert len(hidden_states) == config.num_hidden_layers + 1
assert_close(hidden_states[0], embeddings)
assert_close(llm.lm_head(hidden_states[-1]), hidden_out.logits)

# %% [markdown]
# To see the final norm at work, catch the last decoder layer's raw output with a forward hook (the hook returns
# nothing, so it only watches) and normalise it by hand:

# %%
captured = {}


def keep_output(module, args, output):
    captured["last_layer"] = output[0] if isinstance(output, tuple) else output


handle = llm.model.layers[-1].register_forward_hook(keep_output)
backbone(input_ids=input_ids)
handle.remove()
assert_close(llm.model.norm(captured["last_layer"]), hidden_states[-1])
assert not torch.allclose(captured["last_layer"], hidden_states[-1])

# %% [markdown]
# ## `output_attentions`
#
# The tiny replicas, like the real models, use PyTorch's fused attention (`sdpa`) by default. A fused kernel never
# materialises the attention matrix, so there are no weights to return: with `output_attentions=True`,
# transformers logs a warning and returns no weights (an empty tuple on 5.24, `None` on 4.57).

# %%
from vla_backbone.notebook import transformers_log

with transformers_log() as logged:
    sdpa_out = backbone(input_ids=input_ids, output_attentions=True)
print(f"attn_implementation={config._attn_implementation!r}  attentions={sdpa_out.attentions!r}")
print("transformers log:", logged)
assert config._attn_implementation == "sdpa" and sdpa_out.attentions == (() if compat.IS_V5 else None)
assert any("does not support `output_attentions=True`" in message for message in logged)

# %% [markdown]
# The fix is the plain ("eager") implementation, which computes the softmax matrix explicitly. It can be chosen when
# loading (`attn_implementation="eager"` in `from_pretrained`) or switched on a loaded model with
# `set_attn_implementation`, which keeps the weights. The logits do not change; now there is one
# `(batch, heads, query, key)` tensor per layer, every row sums to 1, and nothing attends to the future.

# %%
llm.set_attn_implementation("eager")
eager_out = backbone(input_ids=input_ids, output_attentions=True)
llm.set_attn_implementation("sdpa")

attentions = eager_out.attentions
print(len(attentions), "tensors of shape", tuple(attentions[0].shape))
assert_close(eager_out.logits, reference.logits)
assert len(attentions) == config.num_hidden_layers
assert attentions[0].shape == (1, config.num_attention_heads, n, n)
assert_close(attentions[0].sum(-1), torch.ones(1, config.num_attention_heads, n))
assert torch.all(attentions[0][0, 0].triu(diagonal=1) == 0)
assert config._attn_implementation == "sdpa"

# %% [markdown]
# The map of one head shows the triangle: each query row spreads its weight over itself and the keys before it.
# The replica's weights are random, so do not look for meaning in how the weight is spread.

# %%
fig, ax = plt.subplots(figsize=(5.5, 4.8))
image = ax.imshow(attentions[0][0, 0], cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(n), tokens, rotation=45, ha="right", fontsize=8)
ax.set_yticks(range(n), tokens, fontsize=8)
ax.set_xlabel(TEXT["attn_x"])
ax.set_ylabel(TEXT["attn_y"])
ax.set_title(TEXT["attn_title"], fontsize=10)
fig.colorbar(image, ax=ax, fraction=0.046)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## `return_dict` and `CausalLMOutputWithPast`
#
# What comes back is a `CausalLMOutputWithPast`: a dataclass with five fields — `loss`, `logits`, the cache,
# `hidden_states`, `attentions` — that also behaves like an ordered dict and a tuple of the fields that are set.
# Fields left at `None` disappear from `keys()` and from indexing, so `output[0]` is the loss when there is one and
# the logits otherwise.

# %%
from transformers.modeling_outputs import CausalLMOutputWithPast

fields = list(CausalLMOutputWithPast.__dataclass_fields__)
print(type(output).__name__, fields, "set:", list(output.keys()))
assert isinstance(output, CausalLMOutputWithPast)
assert fields == ["loss", "logits", CACHE_NAME, "hidden_states", "attentions"]
assert list(output.keys()) == ["loss", "logits"]
assert output[0] is output.loss and output[1] is output.logits and reference[0] is reference.logits

# %% [markdown]
# `return_dict=False` returns the plain tuple instead (what very old code expected):

# %%
as_tuple = backbone(input_ids=input_ids, labels=labels, return_dict=False)
print(type(as_tuple).__name__, len(as_tuple))
assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
assert_close(as_tuple[0], output.loss)
assert_close(as_tuple[1], output.logits)

# %% [markdown]
# ## Try it: every family
#
# The same identities hold for every family's backbone. `check_family` loads one and checks the embedding lookup,
# `inputs_embeds`, the loss by hand, incremental decoding and the number of hidden states, then prints a line. In
# JupyterLab pick a family from the drop-down; as a script it checks the first. Either way the cell then checks the
# other four.

# %%
from vla_backbone.notebook import explore


def check_family(backbone_id):
    family_backbone, family_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer(backbone_id)
    ids = family_tokenizer([PROMPT], return_tensors="pt").input_ids
    table = family_backbone.llm.get_input_embeddings().weight
    assert_close(family_backbone.embed_input_ids(ids), table[ids])

    targets = ids.clone()
    targets[:, :5] = IGNORE_INDEX
    out = family_backbone(input_ids=ids, labels=targets, output_hidden_states=True)
    via_embeddings = family_backbone(input_ids=None, inputs_embeds=family_backbone.embed_input_ids(ids))
    assert_close(via_embeddings.logits, out.logits)
    flat = F.cross_entropy(out.logits[0, :-1], targets[0, 1:], ignore_index=IGNORE_INDEX)
    assert_close(flat, out.loss)

    first = family_backbone(input_ids=ids[:, :-1], use_cache=True)
    last = family_backbone(input_ids=ids[:, -1:], past_key_values=compat.output_cache(first), use_cache=True)
    assert_close(last.logits[0, -1], out.logits[0, -1])
    layers = family_backbone.llm.config.num_hidden_layers
    assert len(out.hidden_states) == layers + 1
    print(f"{backbone_id}: {type(family_backbone.llm).__name__}, {ids.shape[1]} tokens, {layers} layers, "
          f"{type(compat.output_cache(last)).__name__}, loss {out.loss.item():.3f} — all identities hold")
    return out.loss.item()


first_loss = explore(
    check_family,
    backbone_id=["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"],
)
assert abs(first_loss - output.loss.item()) < 1e-5
for other_id in ["mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]:
    check_family(other_id)

# %% [markdown]
# ## Summary
# - `embed_input_ids(ids)` is `llm.get_input_embeddings()(ids)`, a row lookup `weight[ids]`; feeding those
#   embeddings as `inputs_embeds` gives the same logits as the ids, which is how the VLM adds image patches.
#   Passing both (or neither) is a `ValueError`.
# - Gemma scales embeddings by √`hidden_size`: before transformers 5.4.0 the model scales any `inputs_embeds`
#   (projected patches too), from 5.4.0 on only the embedding module does. Text is unaffected; a projector trained
#   on one side of 5.4.0 is off by that factor on the other.
# - `forward` passes its ten arguments through; `compat.forward_kwargs` drops unset ones and renames
#   `past_key_values` to `cache` where transformers renamed it. Read caches with `compat.output_cache`.
# - With right padding the real positions are unaffected (causality alone guarantees it; the mask fixes the pad
#   positions). Llama's RoPE positions only matter through their differences.
# - The loss is the mean cross-entropy of `logits[:, :-1]` against `labels[:, 1:]` over labels that are not
#   `-100`; ignored positions, `labels[:, 0]` and the last logits contribute nothing.
# - `use_cache=True` returns a cache that grows by one position per step and reproduces the full pass;
#   `output_hidden_states` gives layers + 1 tensors, the last after the final norm; attention weights need eager
#   attention.
#
# ## Exercises
# 1. Splice two "image patch" vectors (`torch.randn(1, 2, backbone.embed_dim)`) into the embeddings right after BOS,
#    extend the attention mask and labels (`-100` for the patches), and run `forward`. Check that the logits at BOS
#    do not change and that the loss equals a cross-entropy you compute by hand over the text labels only.
# 2. Pad on the *left* instead (`tokenizer.padding_side = "left"`). With the attention mask, do the logits at the
#    real positions still match the unpadded run on Llama? On OPT? Explain with what you saw about `position_ids`.
# 3. Write a function `greedy_with_cache(backbone, ids, steps)` that stops early at EOS, and check it against
#    `llm.generate(..., max_new_tokens=steps)` on two families.
# 4. Give the last five labels of a batch row `-100` and compute the loss of a two-row batch by hand. Is it the mean
#    of the two rows' losses, or the mean over all graded tokens? Check against `output.loss`.
