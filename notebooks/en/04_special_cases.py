# %% [markdown]
# # 04 · Special cases: phi-2, Qwen, PAD tokens and the multiple-of-64 resize
#
# Notebook 03 ended with two families that fail the BOS check on purpose and a set, `SPECIAL_CASES`, that lets
# them through. This notebook shows what they do instead, and then turns to the other token every batch needs:
# PAD. Llama-2 and Mistral ship without one, so the family adds it and grows the embedding matrix, not by one row
# but up to the next multiple of 64. That is why an OpenVLA checkpoint built on Llama-2 has 32064 output logits
# for a 32000-token vocabulary, a number people regularly ask about (openvla issue #267).
#
# **What you will learn here**
# - how phi-2 gets a BOS its tokenizer never adds (`<|endoftext|>` is BOS, EOS and UNK at once);
# - why Qwen needs no BOS and no new PAD, and which ids `SPECIAL_CASES` exempts;
# - which families add a PAD token, which id it gets, and how many embedding rows follow (32000 + 1 -> 32064);
# - how the new rows are initialised, why the PAD row never reaches the loss, and what the rows beyond the
#   tokenizer are;
# - that the input-grad hook survives the resize on today's transformers (upstream on 4.40 lost it).

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
# ## 1. phi-2: one token for BOS, EOS and UNK, and a BOS written by hand
#
# phi-2's tokenizer knows a single special token, `<|endoftext|>`, and uses it as BOS, EOS and UNK. It adds
# nothing when asked for special tokens, so the two encodings of notebook 03's probe are identical.

# %%
import torch
from vla_backbone.registry import get_llm_backbone_and_tokenizer

phi, phi_tok = get_llm_backbone_and_tokenizer("phi-2-3b")
print("bos:", phi_tok.bos_token, phi_tok.bos_token_id, " eos:", phi_tok.eos_token, phi_tok.eos_token_id,
      " unk:", phi_tok.unk_token)
print(phi_tok("Test 123").input_ids, phi_tok("Test 123", add_special_tokens=False).input_ids)

# %%
assert phi_tok.bos_token == phi_tok.eos_token == phi_tok.unk_token == "<|endoftext|>"
assert phi_tok.bos_token_id == phi_tok.eos_token_id == 0
assert phi_tok("Test 123").input_ids == phi_tok("Test 123", add_special_tokens=False).input_ids

# %% [markdown]
# So `PhiPromptBuilder` writes `<|endoftext|>` itself, in front of the first human turn, and keeps it when the
# prompt is finished (the other builders strip a leading `<s>` instead, because their tokenizer adds one). The
# tokenizer reads the written text back as the special token, so position 0 holds the BOS id after all.

# %%
from vla_backbone.prompting import PhiPromptBuilder, openvla_action_prompt

builder = PhiPromptBuilder("openvla")
builder.add_turn("human", openvla_action_prompt("pick up the cup"))
phi_prompt = builder.get_prompt()
phi_ids = phi_tok(phi_prompt).input_ids
print(repr(phi_prompt))
print(phi_ids)

# %%
bos = phi_tok.bos_token_id
assert phi_prompt.startswith("<|endoftext|>Input: ")
assert phi_ids[0] == bos and phi_ids.count(bos) == 1

# %% [markdown]
# After the model's answer, the same id appears a second time, now as EOS: the gpt turn ends with
# `\n<|endoftext|>`. One id, two roles, told apart only by position.

# %%
builder.add_turn("gpt", "1 2 3")
conversation_ids = phi_tok(builder.get_prompt()).input_ids
print(conversation_ids)
assert [i for i, t in enumerate(conversation_ids) if t == bos] == [0, len(conversation_ids) - 1]

# %% [markdown]
# The BOS check itself would reject this tokenizer; the backbone above loaded anyway because `"phi-2-3b"` is in
# `SPECIAL_CASES`, so the constructor skips the check for it.

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error

assert "phi-2-3b" in SPECIAL_CASES
with expect_error(TokenizerBOSError, match="does not prepend BOS"):
    check_bos(phi_tok, "phi-2-3b")

# %% [markdown]
# One more consequence of sharing a single token: phi-2's PAD must be a *new* token (`<|pad|>`, section 3). A
# common shortcut sets PAD = EOS, and code that hides padding from the loss by masking every position whose id
# equals `pad_token_id` would then also hide the real EOS (and, for phi-2, the BOS). The model would never learn
# to stop. With a distinct PAD only the padding is masked:

# %%
padded = phi_tok([builder.get_prompt()], padding="max_length", max_length=len(conversation_ids) + 3,
                 return_tensors="pt").input_ids[0]
masked_with_own_pad = (padded == phi_tok.pad_token_id).nonzero().flatten().tolist()
masked_if_pad_were_eos = (padded == phi_tok.eos_token_id).nonzero().flatten().tolist()
print("pad =", phi_tok.pad_token, phi_tok.pad_token_id, "-> masked positions", masked_with_own_pad)
print("pad = eos would mask", masked_if_pad_were_eos)
assert phi_tok.pad_token == "<|pad|>" and phi_tok.pad_token_id != phi_tok.eos_token_id
assert masked_with_own_pad == [len(conversation_ids), len(conversation_ids) + 1, len(conversation_ids) + 2]
assert masked_if_pad_were_eos == [0, len(conversation_ids) - 1]

# %% [markdown]
# **Try it:** change the instruction or the answer above and re-run; the BOS stays at position 0 and occurs once
# per prompt.

# %% [markdown]
# ## 2. Qwen: no BOS token at all
#
# Qwen-2.5 (added by MiniVLA) has no BOS token: `bos_token` is `None`. Its prompts use the ChatML markers
# `<|im_start|>` and `<|im_end|>`, and `<|endoftext|>` serves as EOS and, already, as PAD. Each marker is a
# single token.

# %%
qwen, qwen_tok = get_llm_backbone_and_tokenizer("qwen25-0_5b-pure")
print("bos:", qwen_tok.bos_token, qwen_tok.bos_token_id, " eos:", qwen_tok.eos_token, " pad:", qwen_tok.pad_token)
markers = {m: qwen_tok(m, add_special_tokens=False).input_ids for m in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}
print(markers)

# %%
assert qwen_tok.bos_token is None and qwen_tok.bos_token_id is None
assert all(ids == [qwen_tok.convert_tokens_to_ids(m)] for m, ids in markers.items())
assert qwen_tok.pad_token == qwen_tok.eos_token == "<|endoftext|>"

# %% [markdown]
# Every Qwen prompt starts with `<|im_start|>`, so the token that the VLM's splice keeps in front of the image is
# the same fixed marker in every example: the property the BOS check protects, reached without a BOS.

# %%
from vla_backbone.prompting import QwenPromptBuilder

qwen_builder = QwenPromptBuilder("openvla")
qwen_builder.add_turn("human", openvla_action_prompt("pick up the cup"))
qwen_ids = qwen_tok(qwen_builder.get_prompt()).input_ids
print(qwen_tok.convert_ids_to_tokens(qwen_ids[:4]), "...")
assert qwen_ids[0] == qwen_tok.convert_tokens_to_ids("<|im_start|>")

# %% [markdown]
# `SPECIAL_CASES` is therefore phi-2 plus every Qwen-2.5 id in the registry, nothing else.

# %%
from vla_backbone.families import QWEN25_MODELS

print(sorted(SPECIAL_CASES))
assert SPECIAL_CASES == {"phi-2-3b"} | set(QWEN25_MODELS)

# %% [markdown]
# ## 3. PAD tokens and the multiple-of-64 resize
#
# Batches are padded on the right with `pad_token_id`, so every backbone needs a PAD token. The tokenizers as
# they come from each checkpoint (loaded here straight from the replica files, before the family touches them):

# %%
from transformers import AutoTokenizer
from vla_backbone.registry import backbone_class, checkpoint_path

IDS = ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra", "opt-125m"]
shipped = {i: AutoTokenizer.from_pretrained(checkpoint_path(i)) for i in IDS}
for backbone_id, tokenizer in shipped.items():
    print(f"{backbone_id:22s} pad = {tokenizer.pad_token!s:15s} len = {len(tokenizer)}")

# %%
assert shipped["llama2-7b-pure"].pad_token is None and shipped["mistral-v0.1-7b-pure"].pad_token is None
assert shipped["phi-2-3b"].pad_token is None
assert shipped["qwen25-0_5b-pure"].pad_token == "<|endoftext|>" and shipped["opt-125m"].pad_token == "<pad>"
assert all(len(tokenizer) == 1024 for tokenizer in shipped.values())


# %% [markdown]
# For Llama-2 and Mistral the family adds `<PAD>`; for phi-2, `<|pad|>`. A new token gets the next free id, which
# is the old length of the tokenizer. Then the family sets `config.pad_token_id` and calls
# `resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)`. The number of rows is the token count rounded
# up to a multiple of 64. As a function:

# %%
def embedding_rows(num_tokens: int, multiple: int = 64) -> int:
    """Rows after `resize_token_embeddings(num_tokens, pad_to_multiple_of=multiple)`."""
    return -(-num_tokens // multiple) * multiple


real_llama2_vocab = 32000
real_pad_id = real_llama2_vocab
print("real Llama-2: pad id", real_pad_id, "->", embedding_rows(real_llama2_vocab + 1), "rows")
print("tiny replica: pad id", 1024, "->", embedding_rows(1024 + 1), "rows")
assert embedding_rows(real_llama2_vocab + 1) == 32064
assert embedding_rows(1024 + 1) == 1088

# %% [markdown]
# Now the same function against the loaded backbones. For each: the PAD token and id, `config.pad_token_id`, the
# tokenizer length, and the rows of the input embedding and of the LM head.

# %%
loaded = {"phi-2-3b": (phi, phi_tok), "qwen25-0_5b-pure": (qwen, qwen_tok)}
backbones = {i: loaded[i] if i in loaded else get_llm_backbone_and_tokenizer(i) for i in IDS}
print(f"{'backbone id':22s} {'pad token':14s} {'pad id':>6s} {'config':>6s} {'len(tok)':>8s} {'emb rows':>8s} "
      f"{'head rows':>9s}")
for backbone_id, (backbone, tokenizer) in backbones.items():
    llm = backbone.llm
    print(f"{backbone_id:22s} {tokenizer.pad_token:14s} {tokenizer.pad_token_id:6d} {llm.config.pad_token_id:6d} "
          f"{len(tokenizer):8d} {llm.get_input_embeddings().weight.shape[0]:8d} "
          f"{llm.get_output_embeddings().weight.shape[0]:9d}")

# %% [markdown]
# Llama-2, Mistral and phi-2 get PAD id 1024 and 1088 rows, the tiny version of 32000 -> 32064. OPT keeps its own
# `<pad>` (id 1) and Qwen its `<|endoftext|>`: nothing is added and 1024 rows stay 1024, already a multiple of 64.
# `qwen25-0_5b-extra` adds 256 action tokens `<|extra_0|>` ... `<|extra_255|>`: 1024 + 256 = 1280 rows, again a
# multiple of 64, so no padding rows. In every case the rows equal `embedding_rows(len(tokenizer))`.

# %%
for backbone_id, (backbone, tokenizer) in backbones.items():
    rows = backbone.llm.get_input_embeddings().weight.shape[0]
    assert rows == backbone.llm.get_output_embeddings().weight.shape[0] == embedding_rows(len(tokenizer))
    assert rows % 64 == 0 and backbone.llm.config.pad_token_id == tokenizer.pad_token_id == backbone.pad_token_id
expected_pad = {"llama2-7b-pure": ("<PAD>", 1024), "mistral-v0.1-7b-pure": ("<PAD>", 1024),
                "phi-2-3b": ("<|pad|>", 1024), "qwen25-0_5b-pure": ("<|endoftext|>", 0),
                "qwen25-0_5b-extra": ("<|endoftext|>", 0), "opt-125m": ("<pad>", 1)}
assert {i: (t.pad_token, t.pad_token_id) for i, (_, t) in backbones.items()} == expected_pad
extra_tok = backbones["qwen25-0_5b-extra"][1]
assert len(extra_tok) == 1280
assert extra_tok("<|extra_0|><|extra_255|>", add_special_tokens=False).input_ids == [1024, 1279]

# %% [markdown]
# The same story as a picture: the vocabulary the checkpoint shipped with, the tokens the family added, and the
# rows that only exist to reach the multiple of 64.

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"title": "Embedding rows after the family's resize", "shipped": "shipped vocabulary",
           "added": "added tokens (PAD, extra)", "padding": "rows up to a multiple of 64", "rows": "rows"},
    "zh": {"title": "各家族 resize 之后的嵌入矩阵行数", "shipped": "checkpoint 自带的词表",
           "added": "新增 token（PAD、extra）", "padding": "补齐到 64 倍数的行", "rows": "行数"},
}[LANG]
shipped_len = [len(shipped[i]) for i in IDS]
added = [len(backbones[i][1]) - len(shipped[i]) for i in IDS]
padding_rows = [backbones[i][0].llm.get_input_embeddings().weight.shape[0] - len(backbones[i][1]) for i in IDS]
fig, ax = plt.subplots(figsize=(8, 3))
ax.barh(IDS, shipped_len, color="#1f77b4", label=TEXT["shipped"])
ax.barh(IDS, added, left=shipped_len, color="#2ca02c", label=TEXT["added"])
ax.barh(IDS, padding_rows, left=[s + a for s, a in zip(shipped_len, added)], color="#ff7f0e", label=TEXT["padding"])
totals = [v + a + p for v, a, p in zip(shipped_len, added, padding_rows)]
for row, (v, a, p) in enumerate(zip(shipped_len, added, padding_rows)):
    ax.text(totals[row] + 4, row, f"{v} + {a} + {p} = {totals[row]}", va="center", fontsize=8)
ax.set_xlim(900, 1420)
ax.invert_yaxis()
ax.set_xlabel(TEXT["rows"])
ax.set_title(TEXT["title"])
ax.legend(loc="upper right", fontsize=8)
plt.show()
assert padding_rows == [63, 63, 63, 0, 0, 0] and added == [1, 1, 1, 0, 256, 0]
assert totals == [1088, 1088, 1088, 1024, 1280, 1024]

# %% [markdown]
# ### Why a multiple of 64?
#
# The embedding matrix is also the shape of the LM head's matmul, run on every position of every batch. GPU
# matrix-multiply kernels (tensor cores in fp16/bf16) work on tiles, and they run at full speed when the matrix
# dimensions are multiples of the tile size; an odd size such as 32001 leaves a ragged last tile and can push the
# library onto a slower kernel. Rounding up to 64 makes the vocabulary dimension a clean multiple. nanoGPT does
# the same with GPT-2's vocabulary, 50257 -> 50304. This is a GPU effect; measuring it on this CPU would tell us
# nothing, so we only count what it costs: 63 padding rows out of 32064, about 0.2 % of the embedding
# parameters (hidden size 4096 for Llama-2-7B).

# %%
llama2_hidden = 4096
padding_rows_real = embedding_rows(32001) - 32001
print(f"{padding_rows_real} padding rows, {2 * padding_rows_real * llama2_hidden:,} parameters in embedding + "
      f"LM head, {padding_rows_real / 32064:.2%} of the rows")
assert embedding_rows(50257) == 50304
assert padding_rows_real == 63 and padding_rows_real / 32064 < 0.002

# %% [markdown]
# ### The library agrees
#
# Our function is a model of `resize_token_embeddings`; here is the library itself, on a fresh copy of the
# Llama replica asked for 32001 tokens, with `mean_resizing=False` as the package passes it (section 4). The
# same call also shows that the input-grad hook survives: we register it with `enable_input_require_grads()`
# first, as the backbone constructor does, and look again after the resize.

# %%
from transformers import LlamaForCausalLM
from vla_backbone import compat

fresh = LlamaForCausalLM.from_pretrained(checkpoint_path("llama2-7b-pure"))
shipped_rows = fresh.get_input_embeddings().weight.detach().clone()
fresh.enable_input_require_grads()
module_before, hook_before = fresh.get_input_embeddings(), compat.has_input_grad_hook(fresh)
fresh.resize_token_embeddings(32001, pad_to_multiple_of=64, mean_resizing=False)
module_after, hook_after = fresh.get_input_embeddings(), compat.has_input_grad_hook(fresh)
print("rows:", tuple(module_after.weight.shape), "head:", tuple(fresh.get_output_embeddings().weight.shape),
      "config.vocab_size:", fresh.config.vocab_size)
print("input-grad hook before:", hook_before, " after:", hook_after, " same module:", module_before is module_after)

# %% [markdown]
# 32064 rows in both matrices, and the hook is still there. On transformers 4.57 and 5.x the resize copies the
# new weights into the *existing* embedding module, so hooks registered on it stay. On 4.40, the version upstream
# OpenVLA pins, the resize installed a new module and the hook was lost (a known upstream behaviour; this suite
# does not install 4.40, so we cannot show it here).
# What the hook buys: with every weight frozen, the embedding output still requires grad.

# %%
assert module_after.weight.shape[0] == fresh.get_output_embeddings().weight.shape[0] == fresh.config.vocab_size == 32064
assert hook_before and hook_after and module_before is module_after
fresh.requires_grad_(False)
assert fresh.get_input_embeddings()(torch.tensor([[1, 2, 3]])).requires_grad
del fresh, module_before, module_after

# %% [markdown]
# The backbones above went through the same order (hook first, then the resize inside the family's
# constructor), and they all still carry it:

# %%
assert all(compat.has_input_grad_hook(backbone.llm) for backbone, _ in backbones.values())

# %% [markdown]
# ## 4. What is in the new rows
#
# Take the Llama-2 replica: rows 0-1023 are the checkpoint's, row 1024 is `<PAD>`, rows 1025-1087 are padding.
# The old rows are copied unchanged. The new rows get the model's ordinary initialisation, a normal distribution
# with mean 0 and standard deviation `config.initializer_range` (0.02), which is what transformers 4.40 (the
# version OpenVLA and MiniVLA trained with) did. Newer transformers default to `mean_resizing=True` instead; the
# package passes `mean_resizing=False` to keep the upstream behaviour, and seeds the random generator so that
# every load gives the same new rows.

# %%
llama, llama_tok = backbones["llama2-7b-pure"]
new_matrix = llama.llm.get_input_embeddings().weight.detach()
new_rows = new_matrix[1024:]
print(f"new rows: mean {new_rows.mean():.5f}, std {new_rows.std():.4f}; "
      f"initializer_range = {llama.llm.config.initializer_range}")
reloaded_llama, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure")

# %%
torch.testing.assert_close(new_matrix[:1024], shipped_rows)
assert abs(new_rows.mean()) < 0.002 and abs(new_rows.std() - llama.llm.config.initializer_range) < 0.002
torch.testing.assert_close(reloaded_llama.llm.get_input_embeddings().weight, llama.llm.get_input_embeddings().weight,
                           rtol=0, atol=0)
del reloaded_llama

# %% [markdown]
# For contrast, transformers' own default on a fresh copy of the replica. `mean_resizing=True` draws the new rows
# from a normal distribution centred on the mean of the old rows, with the old covariance scaled down by 1e-9, so
# in practice every new row *is* the mean embedding (transformers prints a note about it).

# %%
from vla_backbone.notebook import transformers_log

mean_resized = LlamaForCausalLM.from_pretrained(checkpoint_path("llama2-7b-pure"))
with transformers_log() as note:
    mean_resized.resize_token_embeddings(1025, pad_to_multiple_of=64, mean_resizing=True)
print("transformers log:", note)
old_mean = shipped_rows.mean(dim=0)
mean_rows = mean_resized.get_input_embeddings().weight.detach()[1024:]
print("old rows: mean distance from their mean", f"{(shipped_rows - old_mean).norm(dim=1).mean():.4f}")
print("mean_resizing rows: max distance       ", f"{(mean_rows - old_mean).norm(dim=1).max():.2e}")
torch.testing.assert_close(mean_rows, old_mean.expand(64, -1), rtol=0, atol=1e-4)
del mean_resized

# %% [markdown]
# Rows 1025-1087 belong to no token: the tokenizer has 1025 entries, so it can never produce those ids, and
# they decode to nothing. They still exist in the LM head, so the model outputs a logit for each of them.

# %%
print("len(tokenizer):", len(llama_tok), " largest id in the vocabulary:", max(llama_tok.get_vocab().values()))
print("id 1050 ->", llama_tok.convert_ids_to_tokens(1050), repr(llama_tok.decode([1050])))
assert max(llama_tok.get_vocab().values()) == len(llama_tok) - 1 == 1024
assert llama_tok.convert_ids_to_tokens(1050) is None and llama_tok.decode([1050]) == ""

# %% [markdown]
# ### The PAD row and the loss
#
# In a padded batch the labels of padding positions are -100, and the attention mask hides the padding from every
# other position. So the PAD *input* row can hold anything: the loss does not move, and the row gets no gradient.
# The *output* side is different. Every row of the LM head, PAD and the unused rows included, produces a logit
# at every position and sits in the softmax denominator. Since these ids are never a label, the gradient of the
# loss with respect to their logits is proportional to their (positive) probability, so training only ever
# pushes them down.

# %%
texts = ["In: pick up the cup\nOut: 1 2 3</s>", "In: open the drawer\nOut:"]
batch = llama_tok(texts, padding=True, return_tensors="pt")
labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
print(batch.input_ids)


def loss_and_logits():
    out = llama(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
    return out.loss, out.logits


embeddings = llama.llm.get_input_embeddings().weight
loss_before, _ = loss_and_logits()
with torch.no_grad():
    saved_pad_row = embeddings[llama_tok.pad_token_id].clone()
    embeddings[llama_tok.pad_token_id] += 100.0
loss_changed_pad, _ = loss_and_logits()
with torch.no_grad():
    embeddings[llama_tok.pad_token_id] = saved_pad_row
print(f"loss {loss_before.item():.6f}, with the PAD row moved by 100: {loss_changed_pad.item():.6f}")

# %%
assert (batch.input_ids == llama_tok.pad_token_id).sum() > 0
torch.testing.assert_close(loss_changed_pad, loss_before, rtol=0, atol=0)

llama.llm.zero_grad(set_to_none=True)
loss, logits = loss_and_logits()
logits.retain_grad()
loss.backward()
input_grad = embeddings.grad
head_grad = llama.llm.get_output_embeddings().weight.grad
print("input-embedding grad, rows >= 1024:", input_grad[1024:].abs().max().item())
print("LM-head grad norm, PAD row:", f"{head_grad[1024].norm():.2e}", " unused rows:", f"{head_grad[1025:].norm():.2e}")
assert input_grad[1024:].abs().max() == 0 and input_grad[:1024].abs().max() > 0
assert head_grad[1024].norm() > 0 and head_grad[1025:].norm() > 0
assert (logits.grad[..., 1024:] >= 0).all() and (logits.grad[..., 1024:] > 0).any()
llama.llm.zero_grad(set_to_none=True)

# %% [markdown]
# **Try it:** move the PAD row by another amount, or change `texts`, and re-run: the loss stays put as long as
# padding is labelled -100. Then label one padding position with the PAD id (1024) instead and watch it move.

# %% [markdown]
# ## Try it
#
# Pick a vocabulary size and a multiple; the cell prints the rows `resize_token_embeddings` would give and how
# many of them are padding. Try Llama-2 with its PAD (32001), GPT-2 (50257), or the `-extra` replica (1280) with
# a multiple of 8 or 128.

# %%
from vla_backbone.notebook import explore


def resize_report(num_tokens: int, multiple: int) -> int:
    rows = embedding_rows(num_tokens, multiple)
    print(f"{num_tokens} tokens, multiple of {multiple}: {rows} rows, {rows - num_tokens} padding rows")
    return rows


first = explore(resize_report, num_tokens=[32001, 32000, 50257, 1025, 1280], multiple=[64, 8, 128])
assert first == 32064

# %% [markdown]
# ## Summary
# - phi-2: `<|endoftext|>` is BOS = EOS = UNK and the tokenizer adds no BOS, so `PhiPromptBuilder` writes it at
#   the start of the first human turn: exactly one BOS, at position 0. Its PAD is a new `<|pad|>`, so masking
#   padding never masks EOS.
# - Qwen has no BOS (`bos_token_id` is `None`); prompts start with `<|im_start|>`, and `<|endoftext|>` is
#   already PAD. `SPECIAL_CASES` = phi-2 + every Qwen-2.5 id.
# - Llama-2 and Mistral get `<PAD>` (id = old vocabulary size), phi-2 `<|pad|>`; OPT and Qwen keep theirs. The
#   embedding grows to a multiple of 64: 32000 + 1 -> 32064 on real Llama-2, 1024 + 1 -> 1088 on the replica;
#   `-extra` has 1024 + 256 = 1280.
# - New rows get the model's ordinary (seeded) initialisation, as on transformers 4.40; newer transformers'
#   `mean_resizing` would put them at the mean embedding. The PAD input row never reaches the loss; PAD and
#   unused LM-head rows only get pushed down.
# - On transformers 4.57 and 5.x the input-grad hook survives the resize (same module); on 4.40 it did not.
#
# ## Exercises
# 1. Add a backbone option that also adds 256 action tokens to Llama-2 the way `qwen25-0_5b-extra` does. How many
#    rows does the real 7B model get (`embedding_rows`), and how many are padding?
# 2. Repeat section 4's loss experiment with *left* padding (`padding_side="left"`). Does the loss still ignore
#    the PAD row? Which positions do the labels have to mask now?
# 3. Resize the fresh Llama replica with `mean_resizing=True` and with `False`, then compare the logits of an
#    untrained new row with the average logit of the old rows. Why might the mean initialisation help when
#    fine-tuning starts, and why does the package still keep the 4.40 behaviour?
# 4. On a GPU, time the LM-head matmul `(4096 tokens x 4096) @ (4096 x V)` in bf16 for V = 32000, 32001 and
#    32064 (use `vla_backbone.measure.median_seconds` and `torch.cuda.synchronize()`). Does 32001 cost more?
