# %% [markdown]
# # 04 · Special cases: phi-2, Qwen, PAD tokens and the multiple-of-64 resize
#
# Notebook 03 ended with two families that fail the BOS check on purpose and a set, `SPECIAL_CASES`, that lets
# them through. This notebook shows what they do instead, and then turns to the other token every batch needs:
# PAD. Llama-2 and Mistral ship without one, so the family adds it; then every family resizes its embedding
# matrix to the tokenizer's length rounded up to a multiple of 64. For Llama-2 that *grows* 32000 rows to 32064,
# which is why an OpenVLA checkpoint has 32064 output logits for a 32000-word vocabulary, a number people
# regularly ask about (openvla issue #267). The same rule *shrinks* phi-2 and Qwen, whose checkpoints carry more
# rows than their tokenizers have tokens. Everything below runs on the families' real tokenizer files and the hub
# configs' row counts, so every id and every row count is the real one.
#
# **What you will learn here**
# - how phi-2 gets a BOS its tokenizer never adds (`<|endoftext|>`, id 50256, is BOS, EOS and UNK at once);
# - why Qwen needs no BOS and no new PAD, and which ids `SPECIAL_CASES` exempts;
# - which families add a PAD token and which id it gets, and how many rows follow: 32000 -> 32064 for Llama-2 and
#   Mistral and 50272 -> 50304 for OPT (grow), 51200 -> 50304 for phi-2 and 151936 -> 151680 for Qwen (shrink),
#   and `-extra`'s 256 action tokens on rows the Qwen checkpoint already had;
# - which rows are kept, which are new and how they are initialised, which are cut; why the PAD row never reaches
#   the loss;
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
# phi-2's tokenizer (GPT-2's byte-level BPE plus 38 whitespace tokens) has a single special token,
# `<|endoftext|>`, id 50256, and uses it as BOS, EOS and UNK. It adds nothing when asked for special tokens, so
# the two encodings of notebook 03's probe are identical: `[14402, 17031]`.

# %%
import torch

from vla_backbone.registry import get_llm_backbone_and_tokenizer

phi, phi_tok = get_llm_backbone_and_tokenizer("phi-2-3b")
print("bos:", phi_tok.bos_token, phi_tok.bos_token_id, " eos:", phi_tok.eos_token, phi_tok.eos_token_id,
      " unk:", phi_tok.unk_token, phi_tok.unk_token_id)
print(phi_tok("Test 123").input_ids, phi_tok("Test 123", add_special_tokens=False).input_ids)

# %%
assert phi_tok.bos_token == phi_tok.eos_token == phi_tok.unk_token == "<|endoftext|>"
assert phi_tok.bos_token_id == phi_tok.eos_token_id == phi_tok.unk_token_id == 50256
assert phi_tok("Test 123").input_ids == phi_tok("Test 123", add_special_tokens=False).input_ids == [14402, 17031]

# %% [markdown]
# So `PhiPromptBuilder` writes `<|endoftext|>` itself, in front of the first human turn, and keeps it when the
# prompt is finished (the other builders strip a leading `<s>` instead, because their tokenizer adds one). The
# tokenizer reads the written text back as the special token, so position 0 holds id 50256 after all.

# %%
from vla_backbone.prompting import PhiPromptBuilder, openvla_action_prompt

instruction = "pick up the cup"
builder = PhiPromptBuilder("openvla")
builder.add_turn("human", openvla_action_prompt(instruction))
phi_prompt = builder.get_prompt()
phi_ids = phi_tok(phi_prompt).input_ids
print(repr(phi_prompt))
print(phi_ids)

# %%
bos = phi_tok.bos_token_id
assert phi_prompt.startswith("<|endoftext|>Input: ")
assert phi_ids[0] == bos == 50256 and phi_ids.count(bos) == 1

# %% [markdown]
# After the model's answer, the same id appears a second time, now as EOS: the gpt turn ends with
# `\n<|endoftext|>`. One id, two roles, told apart only by position.

# %%
# A fresh builder, so that this cell can run again after you change the answer.
builder = PhiPromptBuilder("openvla")
builder.add_turn("human", openvla_action_prompt(instruction))
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
# One more consequence of sharing a single token: phi-2's PAD must be a *new* token (`<|pad|>`, id 50295, right
# after the 38 whitespace tokens 50257-50294; section 3). A common shortcut sets PAD = EOS, and code that hides
# padding from the loss by masking every position whose id equals `pad_token_id` would then also hide the real
# EOS (and, for phi-2, the BOS). The model would never learn to stop. With a distinct PAD only the padding is
# masked:

# %%
padded = phi_tok([builder.get_prompt()], padding="max_length", max_length=len(conversation_ids) + 3,
                 return_tensors="pt").input_ids[0]
masked_with_own_pad = (padded == phi_tok.pad_token_id).nonzero().flatten().tolist()
masked_if_pad_were_eos = (padded == phi_tok.eos_token_id).nonzero().flatten().tolist()
print("pad =", phi_tok.pad_token, phi_tok.pad_token_id, "-> masked positions", masked_with_own_pad)
print("pad = eos would mask", masked_if_pad_were_eos)
assert phi_tok.pad_token == "<|pad|>" and phi_tok.pad_token_id == 50295 != phi_tok.eos_token_id
assert phi_tok.convert_ids_to_tokens([50257, 50294]) == [" " * 31, "\t\t"]
assert masked_with_own_pad == [len(conversation_ids), len(conversation_ids) + 1, len(conversation_ids) + 2]
assert masked_if_pad_were_eos == [0, len(conversation_ids) - 1]

# %% [markdown]
# **Try it:** change the instruction or the answer above and re-run; the BOS stays at position 0 and occurs once
# per prompt.

# %% [markdown]
# ## 2. Qwen: no BOS token at all
#
# Qwen-2.5 (added by MiniVLA) has no BOS token: `bos_token` is `None`. Its prompts use the ChatML markers
# `<|im_start|>` (151644) and `<|im_end|>` (151645), and `<|endoftext|>` (151643) serves as EOS and, already, as
# PAD. Each marker is a single token.

# %%
qwen, qwen_tok = get_llm_backbone_and_tokenizer("qwen25-0_5b-pure")
print("bos:", qwen_tok.bos_token, qwen_tok.bos_token_id, " eos:", qwen_tok.eos_token, " pad:", qwen_tok.pad_token)
markers = {m: qwen_tok(m, add_special_tokens=False).input_ids for m in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}
print(markers)

# %%
assert qwen_tok.bos_token is None and qwen_tok.bos_token_id is None
assert markers == {"<|im_start|>": [151644], "<|im_end|>": [151645], "<|endoftext|>": [151643]}
assert qwen_tok.pad_token == qwen_tok.eos_token == "<|endoftext|>"
assert qwen_tok("Test 123").input_ids == [2271, 220, 16, 17, 18]

# %% [markdown]
# Every Qwen prompt starts with `<|im_start|>` (the system block comes first), so the token that the VLM's splice
# keeps in front of the image is the same fixed marker in every example: the property the BOS check protects,
# reached without a BOS.

# %%
from vla_backbone.prompting import QwenPromptBuilder

qwen_builder = QwenPromptBuilder("openvla")
qwen_builder.add_turn("human", openvla_action_prompt("pick up the cup"))
qwen_ids = qwen_tok(qwen_builder.get_prompt()).input_ids
print(qwen_tok.convert_ids_to_tokens(qwen_ids[:4]), "...")
assert qwen_ids[0] == qwen_tok.convert_tokens_to_ids("<|im_start|>") == 151644

# %% [markdown]
# `SPECIAL_CASES` is therefore phi-2 plus every Qwen-2.5 id in the registry, nothing else.

# %%
from vla_backbone.families import QWEN25_MODELS

print(sorted(SPECIAL_CASES))
assert SPECIAL_CASES == {"phi-2-3b"} | set(QWEN25_MODELS) == {
    "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra", "qwen25-1_5b-pure", "qwen25-3b-pure", "qwen25-7b-pure"}

# %% [markdown]
# ## 3. PAD tokens and the multiple-of-64 resize
#
# Batches are padded on the right with `pad_token_id`, so every backbone needs a PAD token. First the tokenizers
# and configs as they come from each checkpoint, loaded straight from the replica files before the family touches
# them: the PAD token, `len(tokenizer)` (every token, added ones included), `vocab_size` (the base vocabulary
# only), and the number of embedding rows the hub config declares.

# %%
from transformers import AutoConfig

from vla_backbone.registry import backbone_class, checkpoint_path

IDS = ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra", "opt-125m"]
shipped = {}
for i in IDS:
    # `-extra` reads the same files as `-pure` (it adds its tokens later): load them once.
    same_files = [j for j in shipped if checkpoint_path(j) == checkpoint_path(i)]
    shipped[i] = shipped[same_files[0]] if same_files else backbone_class(i).load_tokenizer(checkpoint_path(i))
hub_rows = {i: AutoConfig.from_pretrained(checkpoint_path(i)).vocab_size for i in IDS}
for backbone_id, tokenizer in shipped.items():
    print(f"{backbone_id:22s} pad = {tokenizer.pad_token!s:15s} len = {len(tokenizer):6d}  "
          f"vocab_size = {tokenizer.vocab_size:6d}  hub rows = {hub_rows[backbone_id]}")

# %%
assert [shipped[i].pad_token for i in IDS] == [None, None, None, "<|endoftext|>", "<|endoftext|>", "<pad>"]
assert [len(shipped[i]) for i in IDS] == [32000, 32000, 50295, 151665, 151665, 50265]
assert [shipped[i].vocab_size for i in IDS] == [32000, 32000, 50257, 151643, 151643, 50265]
assert [hub_rows[i] for i in IDS] == [32000, 32000, 51200, 151936, 151936, 50272]
assert hub_rows["phi-2-3b"] % 64 == hub_rows["qwen25-0_5b-pure"] % 64 == 0
assert hub_rows["opt-125m"] % 8 == 0 and hub_rows["opt-125m"] % 64 != 0


# %% [markdown]
# Two kinds of checkpoint show up. Llama-2 and Mistral have exactly one row per token. phi-2, Qwen and OPT were
# saved with *more* rows than their tokenizers have tokens (51200 for 50295, 151936 for 151665, 50272 for 50265):
# their authors had already rounded the matrix up (51200 and 151936 are multiples of 64, 50272 of 8).
#
# For Llama-2 and Mistral the family adds `<PAD>`; for phi-2, `<|pad|>`. A new token gets the next free id, which
# is the old length of the tokenizer. `-extra` adds 256 action tokens `<|extra_0|>` ... `<|extra_255|>`. Then the
# family sets `config.pad_token_id` and calls `resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)`.
# The new number of rows is the token count rounded up to a multiple of 64, *whatever the checkpoint had*: the
# resize grows the matrix or shrinks it. As a function:

# %%
def embedding_rows(num_tokens: int, multiple: int = 64) -> int:
    """Rows after `resize_token_embeddings(num_tokens, pad_to_multiple_of=multiple)`."""
    return -(-num_tokens // multiple) * multiple


for name, tokens in [("Llama-2 + <PAD>", 32000 + 1), ("phi-2 + <|pad|>", 50295 + 1), ("Qwen", 151665),
                     ("Qwen + 256 extra", 151665 + 256), ("OPT", 50265)]:
    print(f"{name:17s} {tokens:6d} tokens -> {embedding_rows(tokens)} rows")
assert [embedding_rows(n) for n in (32001, 50296, 151665, 151921, 50265)] == [32064, 50304, 151680, 151936, 50304]

# %% [markdown]
# Now the same function against the loaded backbones. For each: the PAD token and id, `config.pad_token_id`, the
# tokenizer length, the rows in the checkpoint, and the rows of the input embedding and of the LM head after the
# family's resize.

# %%
loaded = {"phi-2-3b": (phi, phi_tok), "qwen25-0_5b-pure": (qwen, qwen_tok)}
backbones = {i: loaded[i] if i in loaded else get_llm_backbone_and_tokenizer(i) for i in IDS}
print(f"{'backbone id':22s} {'pad token':14s} {'pad id':>6s} {'config':>6s} {'len(tok)':>8s} {'hub rows':>8s} "
      f"{'emb rows':>8s} {'head rows':>9s}")
for backbone_id, (backbone, tokenizer) in backbones.items():
    llm = backbone.llm
    print(f"{backbone_id:22s} {tokenizer.pad_token:14s} {tokenizer.pad_token_id:6d} {llm.config.pad_token_id:6d} "
          f"{len(tokenizer):8d} {hub_rows[backbone_id]:8d} {llm.get_input_embeddings().weight.shape[0]:8d} "
          f"{llm.get_output_embeddings().weight.shape[0]:9d}")

# %% [markdown]
# - Llama-2 and Mistral get `<PAD>` = 32000: 32001 tokens, and the matrix **grows** from 32000 to 32064 rows.
# - OPT keeps its own `<pad>` (id 1) and adds nothing, yet it **grows** too, from 50272 to 50304: 50265 tokens
#   round up to 50304, and its checkpoint's 50272 was a multiple of 8, not of 64.
# - phi-2 gets `<|pad|>` = 50295: 50296 tokens, 50304 rows. The checkpoint had 51200, so the matrix **shrinks**
#   by 896 rows.
# - Qwen keeps `<|endoftext|>` (151643) as PAD and adds nothing: 151665 tokens, 151680 rows, down from 151936.
#   It **shrinks** by 256 rows.
# - `qwen25-0_5b-extra` adds 256 action tokens: 151921 tokens, 151936 rows, exactly the checkpoint's count. The
#   action tokens `<|extra_0|>` ... `<|extra_255|>` get ids 151665-151920, rows the checkpoint already had.
#
# In every case the rows equal `embedding_rows(len(tokenizer))`, in the input embedding and in the LM head alike.

# %%
for backbone_id, (backbone, tokenizer) in backbones.items():
    rows = backbone.llm.get_input_embeddings().weight.shape[0]
    assert rows == backbone.llm.get_output_embeddings().weight.shape[0] == embedding_rows(len(tokenizer))
    assert rows % 64 == 0 and backbone.llm.config.pad_token_id == tokenizer.pad_token_id == backbone.pad_token_id
expected_pad = {"llama2-7b-pure": ("<PAD>", 32000), "mistral-v0.1-7b-pure": ("<PAD>", 32000),
                "phi-2-3b": ("<|pad|>", 50295), "qwen25-0_5b-pure": ("<|endoftext|>", 151643),
                "qwen25-0_5b-extra": ("<|endoftext|>", 151643), "opt-125m": ("<pad>", 1)}
assert {i: (t.pad_token, t.pad_token_id) for i, (_, t) in backbones.items()} == expected_pad
rows_after = {i: b.llm.get_input_embeddings().weight.shape[0] for i, (b, _) in backbones.items()}
assert list(rows_after.values()) == [32064, 32064, 50304, 151680, 151936, 50304]
assert [len(backbones[i][1]) for i in IDS] == [32001, 32001, 50296, 151665, 151921, 50265]
extra_tok = backbones["qwen25-0_5b-extra"][1]
assert extra_tok("<|extra_0|><|extra_255|>", add_special_tokens=False).input_ids == [151665, 151920]

# %% [markdown]
# The same story as a picture: how many rows each resize adds (right) or cuts (left), from the checkpoint's count
# to the backbone's.

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"title": "Embedding rows: checkpoint -> after the family's resize", "change": "rows added (+) or cut (-)",
           "grows": "grows", "shrinks": "shrinks", "same": "same count"},
    "zh": {"title": "嵌入矩阵行数：checkpoint -> 家族 resize 之后", "change": "增加 (+) 或删去 (-) 的行数",
           "grows": "变大", "shrinks": "变小", "same": "行数不变"},
}[LANG]
change = {i: rows_after[i] - hub_rows[i] for i in IDS}
kinds = {i: "grows" if change[i] > 0 else "shrinks" if change[i] < 0 else "same" for i in IDS}
COLORS = {"grows": "#2ca02c", "shrinks": "#d62728", "same": "#7f7f7f"}
fig, ax = plt.subplots(figsize=(8, 3))
ax.barh(IDS, [change[i] for i in IDS], color=[COLORS[kinds[i]] for i in IDS])
for row, backbone_id in enumerate(IDS):
    ax.text(-2350, row, f"{hub_rows[backbone_id]} -> {rows_after[backbone_id]} "
            f"({change[backbone_id]:+d}, {TEXT[kinds[backbone_id]]})", va="center", fontsize=8)
ax.axvline(0, color="black", linewidth=0.8)
ax.set_xlim(-2400, 200)
ax.invert_yaxis()
ax.set_xlabel(TEXT["change"])
ax.set_title(TEXT["title"])
plt.show()
assert [change[i] for i in IDS] == [64, 64, -896, -256, 0, 32]

# %% [markdown]
# ### Why a multiple of 64?
#
# The embedding matrix is also the shape of the LM head's matmul, run on every position of every batch. GPU
# matrix-multiply kernels (tensor cores in fp16/bf16) work on tiles, and they run at full speed when the matrix
# dimensions are multiples of the tile size; an odd size such as 32001 leaves a ragged last tile and can push the
# library onto a slower kernel. Rounding up to 64 makes the vocabulary dimension a clean multiple. nanoGPT does
# the same with GPT-2's vocabulary, 50257 -> 50304. This is a GPU effect; measuring it on this CPU would tell us
# nothing, so we only count what it costs: for Llama-2, 63 padding rows out of 32064, about 0.2 % of the embedding
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
# Llama-2 replica (32000 rows, loaded in float32 as the backbone loads it) asked for 32001 tokens, with
# `mean_resizing=False` as the package passes it (section 4). The same call also shows that the input-grad hook
# survives: we register it with `enable_input_require_grads()` first, as the backbone constructor does, and look
# again after the resize.

# %%
from transformers import LlamaForCausalLM

from vla_backbone import compat

fresh = LlamaForCausalLM.from_pretrained(checkpoint_path("llama2-7b-pure"), dtype=torch.float32)
rows_before = fresh.get_input_embeddings().weight.shape[0]
fresh.enable_input_require_grads()
module_before, hook_before = fresh.get_input_embeddings(), compat.has_input_grad_hook(fresh)
fresh.resize_token_embeddings(32001, pad_to_multiple_of=64, mean_resizing=False)
module_after, hook_after = fresh.get_input_embeddings(), compat.has_input_grad_hook(fresh)
print("rows:", rows_before, "->", tuple(module_after.weight.shape), "head:",
      tuple(fresh.get_output_embeddings().weight.shape), "config.vocab_size:", fresh.config.vocab_size)
print("input-grad hook before:", hook_before, " after:", hook_after, " same module:", module_before is module_after)

# %% [markdown]
# 32064 rows in both matrices, and the hook is still there. On transformers 4.57 and 5.x the resize copies the
# new weights into the *existing* embedding module, so hooks registered on it stay. On 4.40, the version upstream
# OpenVLA pins, the resize installed a new module and the hook was lost (a known upstream behaviour; this suite
# does not install 4.40, so we cannot show it here). What the hook buys: with every weight frozen, the embedding
# output still requires grad.

# %%
assert rows_before == 32000
assert module_after.weight.shape[0] == fresh.get_output_embeddings().weight.shape[0] == fresh.config.vocab_size == 32064
assert hook_before and hook_after and module_before is module_after
fresh.requires_grad_(False)
assert fresh.get_input_embeddings()(torch.tensor([[1, 2, 3]])).requires_grad

# %% [markdown]
# The backbones above went through the same order (hook first, then the resize inside the family's
# constructor), growing or shrinking, and they all still carry it:

# %%
assert all(compat.has_input_grad_hook(backbone.llm) for backbone, _ in backbones.values())

# %% [markdown]
# ## 4. Which rows are kept, which are new, which are cut
#
# The checkpoint's own embedding sits in its `model.safetensors`; we read it directly (stored in float16 or
# bfloat16) and compare it with each backbone's matrix. Rows the resize keeps are copied unchanged.
#
# - **Llama-2 (grows)**: rows 0-31999 are the checkpoint's; row 32000 is `<PAD>` and rows 32001-32063 are padding,
#   both new.
# - **phi-2 (shrinks)**: rows 0-50303 are the checkpoint's, *including* the row of the new `<|pad|>` (50295): the
#   checkpoint already had a row with that index, so nothing is initialised. Rows 50304-51199 are cut, in the
#   input embedding and in phi-2's separate LM head and its bias alike.
# - **Qwen (shrinks)**: rows 0-151679 are the checkpoint's; 151680-151935 are cut. Input and output embeddings are
#   tied, so this is one matrix.
# - **`-extra` (same count)**: all 151936 rows are the checkpoint's, the 256 action tokens' rows 151665-151920
#   included: `-extra` reuses rows the checkpoint already had.

# %%
from safetensors import safe_open


def checkpoint_tensor(backbone_id: str, name: str) -> torch.Tensor:
    """A tensor as stored in the replica's model.safetensors, in float32."""
    with safe_open(f"{checkpoint_path(backbone_id)}/model.safetensors", framework="pt") as weights:
        return weights.get_tensor(name).float()


def kept_rows(backbone_id: str, matrix: torch.Tensor, name: str = "model.embed_tokens.weight") -> int:
    """How many leading rows of `matrix` are exactly the checkpoint's."""
    stored = checkpoint_tensor(backbone_id, name)
    rows = min(len(stored), len(matrix))
    same = (matrix[:rows].detach() == stored[:rows]).reshape(rows, -1).all(dim=1)
    return rows if bool(same.all()) else int((~same).nonzero()[0])


embedding = {i: backbones[i][0].llm.get_input_embeddings().weight for i in IDS}
for backbone_id in ["llama2-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra"]:
    kept = kept_rows(backbone_id, embedding[backbone_id])
    print(f"{backbone_id:20s} checkpoint rows {hub_rows[backbone_id]:6d}, kept {kept:6d}, "
          f"new {rows_after[backbone_id] - kept:3d}, cut {hub_rows[backbone_id] - kept:3d}")

# %%
assert kept_rows("llama2-7b-pure", embedding["llama2-7b-pure"]) == 32000
assert kept_rows("phi-2-3b", embedding["phi-2-3b"]) == 50304 and phi_tok.pad_token_id < 50304
phi_head = phi.llm.get_output_embeddings()
assert kept_rows("phi-2-3b", phi_head.weight, "lm_head.weight") == 50304
torch.testing.assert_close(phi_head.bias.detach(), checkpoint_tensor("phi-2-3b", "lm_head.bias")[:50304], rtol=0, atol=0)
assert kept_rows("qwen25-0_5b-pure", embedding["qwen25-0_5b-pure"]) == 151680
assert kept_rows("qwen25-0_5b-extra", embedding["qwen25-0_5b-extra"]) == 151936
assert qwen.llm.get_output_embeddings().weight is embedding["qwen25-0_5b-pure"]

# %% [markdown]
# Only a growing resize creates rows. The new rows get the model's ordinary initialisation, a normal distribution
# with mean 0 and standard deviation `config.initializer_range` (0.02), which is what transformers 4.40 (the
# version OpenVLA and MiniVLA trained with) did. Newer transformers default to `mean_resizing=True` instead; the
# package passes `mean_resizing=False` to keep the upstream behaviour, and seeds the random generator so that
# every load gives the same new rows. Llama-2's 64 new rows:

# %%
llama, llama_tok = backbones["llama2-7b-pure"]
new_rows = embedding["llama2-7b-pure"].detach()[32000:]
print(f"new rows: {len(new_rows)}, mean {new_rows.mean():.5f}, std {new_rows.std():.4f}; "
      f"initializer_range = {llama.llm.config.initializer_range}")
reloaded_llama, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure")

# %%
import inspect
from transformers import PreTrainedModel

assert inspect.signature(PreTrainedModel.resize_token_embeddings).parameters["mean_resizing"].default is True
assert len(new_rows) == 64 and llama.llm.config.initializer_range == 0.02
assert abs(new_rows.mean()) < 0.002 and abs(new_rows.std() - llama.llm.config.initializer_range) < 0.002
torch.testing.assert_close(reloaded_llama.llm.get_input_embeddings().weight, llama.llm.get_input_embeddings().weight,
                           rtol=0, atol=0)

# %% [markdown]
# For contrast, transformers' own default on a fresh copy of the replica. `mean_resizing=True` draws the new rows
# from a normal distribution centred on the mean of the old rows, with the old covariance scaled down by 1e-9, so
# in practice every new row *is* the mean embedding (transformers prints a note about it).

# %%
shipped_rows = checkpoint_tensor("llama2-7b-pure", "model.embed_tokens.weight")
from vla_backbone.notebook import transformers_log

mean_resized = LlamaForCausalLM.from_pretrained(checkpoint_path("llama2-7b-pure"), dtype=torch.float32)
with transformers_log() as note:
    mean_resized.resize_token_embeddings(32001, pad_to_multiple_of=64, mean_resizing=True)
print("transformers log:", note)
assert any("multivariate normal" in message for message in note)
old_mean = shipped_rows.mean(dim=0)
mean_rows = mean_resized.get_input_embeddings().weight.detach()[32000:]
print("old rows: mean distance from their mean", f"{(shipped_rows - old_mean).norm(dim=1).mean():.4f}")
print("mean_resizing rows: max distance       ", f"{(mean_rows - old_mean).norm(dim=1).max():.2e}")
torch.testing.assert_close(mean_rows, old_mean.expand(64, -1), rtol=0, atol=1e-4)
del mean_resized

# %% [markdown]
# Rows 32001-32063 belong to no token: the tokenizer has 32001 entries, so it can never produce those ids, and
# they decode to nothing. They still exist in the LM head, so the model outputs a logit for each of them.

# %%
print("len(tokenizer):", len(llama_tok), " largest id in the vocabulary:", max(llama_tok.get_vocab().values()))
print("id 32050 ->", llama_tok.convert_ids_to_tokens(32050), repr(llama_tok.decode([32050])))
assert max(llama_tok.get_vocab().values()) == len(llama_tok) - 1 == 32000
assert llama_tok.convert_ids_to_tokens(32050) is None and llama_tok.decode([32050]) == ""

# %% [markdown]
# ### The PAD row and the loss
#
# In a padded batch the labels of padding positions are -100, and the attention mask hides the padding from every
# other position. So the PAD *input* row can hold anything: the loss does not move, and the row gets no gradient.
# The *output* side is different. Every row of the LM head, PAD and the unused rows included, produces a logit
# at every position and sits in the softmax denominator. Since these ids are never a label, the gradient of the
# loss with respect to their logits is proportional to their (positive) probability, so training only ever
# pushes them down. Two short texts keep the logits small: 2 texts x their padded length x 32064 rows.

# %%
texts = ["In: pick up the cup\nOut: 1 2 3</s>", "In: open the drawer\nOut:"]
batch = llama_tok(texts, padding=True, return_tensors="pt")
labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
print(batch.input_ids.shape, batch.input_ids)


def loss_and_logits():
    out = llama(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
    return out.loss, out.logits


pad_id = llama_tok.pad_token_id
embeddings = llama.llm.get_input_embeddings().weight
pad_shift = 100.0
loss_before, _ = loss_and_logits()
with torch.no_grad():
    saved_pad_row = embeddings[pad_id].clone()
    embeddings[pad_id] += pad_shift
loss_changed_pad, _ = loss_and_logits()
with torch.no_grad():
    embeddings[pad_id] = saved_pad_row
print(f"loss {loss_before.item():.6f}, with the PAD row moved by {pad_shift:g}: {loss_changed_pad.item():.6f}")

# %%
assert pad_id == 32000 and (batch.input_ids == pad_id).sum() > 0 and batch.input_ids.shape[0] == len(texts)
torch.testing.assert_close(loss_changed_pad, loss_before, rtol=0, atol=0)

llama.llm.zero_grad(set_to_none=True)
loss, logits = loss_and_logits()
logits.retain_grad()
loss.backward()
input_grad = embeddings.grad
head_grad = llama.llm.get_output_embeddings().weight.grad
print("input-embedding grad, rows >= 32000:", input_grad[32000:].abs().max().item())
print("LM-head grad norm, PAD row:", f"{head_grad[32000].norm():.2e}", " unused rows:", f"{head_grad[32001:].norm():.2e}")
assert input_grad[32000:].abs().max() == 0 and input_grad[:32000].abs().max() > 0
assert head_grad[32000].norm() > 0 and head_grad[32001:].norm() > 0
assert (logits.grad[..., 32000:] >= 0).all() and (logits.grad[..., 32000:] > 0).any()
llama.llm.zero_grad(set_to_none=True)

# %% [markdown]
# **Try it:** move the PAD row by another amount, or change `texts`, and re-run: the loss stays put as long as
# padding is labelled -100. Then label a padding position with the PAD id (32000) instead and watch it move; take one
# after the first, since the first padding label is predicted from the last real token, which never sees a PAD input.

# %% [markdown]
# ## Try it
#
# Pick a token count and a multiple; the cell prints the rows `resize_token_embeddings` would give and how many of
# them are padding. The counts are the five families' after the family's step (Llama-2 with its PAD, phi-2 with
# its PAD, Qwen, Qwen with its 256 action tokens, OPT); try a multiple of 8 or 128 too.

# %%
from vla_backbone.notebook import explore


def resize_report(num_tokens: int, multiple: int) -> int:
    rows = embedding_rows(num_tokens, multiple)
    print(f"{num_tokens} tokens, multiple of {multiple}: {rows} rows, {rows - num_tokens} padding rows")
    return rows


first = explore(resize_report, num_tokens=[32001, 50296, 151665, 151921, 50265], multiple=[64, 8, 128])
assert first == 32064

# %% [markdown]
# ## Summary
# - phi-2: `<|endoftext|>` (50256) is BOS = EOS = UNK and the tokenizer adds no BOS, so `PhiPromptBuilder` writes it
#   at the start of the first human turn: exactly one BOS, at position 0. Its PAD is a new `<|pad|>` (50295), so
#   masking padding never masks EOS.
# - Qwen has no BOS (`bos_token_id` is `None`); prompts start with `<|im_start|>` (151644), and `<|endoftext|>`
#   (151643) is already PAD. `SPECIAL_CASES` = phi-2 + every Qwen-2.5 id.
# - Llama-2 and Mistral get `<PAD>` = 32000, phi-2 `<|pad|>` = 50295; OPT and Qwen keep theirs. The resize sets the
#   rows to `len(tokenizer)` rounded up to a multiple of 64, whatever the checkpoint had: Llama-2 and Mistral grow
#   32000 -> 32064, OPT grows 50272 -> 50304, phi-2 shrinks 51200 -> 50304, Qwen shrinks 151936 -> 151680, and
#   `-extra` puts its 256 action tokens on rows 151665-151920 the checkpoint already had (151936 -> 151936).
# - Kept rows are copied; only a growing resize creates rows, with the model's ordinary (seeded) initialisation as
#   on transformers 4.40 (newer `mean_resizing` would put them at the mean embedding). The PAD input row never
#   reaches the loss; PAD and unused LM-head rows only get pushed down.
# - On transformers 4.57 and 5.x the input-grad hook survives the resize (same module); on 4.40 it did not.
#
# ## Exercises
# 1. Add a backbone option that also adds 256 action tokens to Llama-2 the way `qwen25-0_5b-extra` does. How many
#    rows does it get (`embedding_rows`), how many are padding, and which of them are new?
# 2. Repeat section 4's loss experiment with *left* padding (`padding_side="left"`). Does the loss still ignore
#    the PAD row? Which positions do the labels have to mask now?
# 3. Resize a fresh copy of the Llama-2 replica with `mean_resizing=True` and with `False`, then compare the logits
#    of an untrained new row with the average logit of the old rows. Why might the mean initialisation help when
#    fine-tuning starts, and why does the package still keep the 4.40 behaviour?
# 4. phi-2's resize cuts 896 rows of the LM head. With the real weights (`source="hub"`), could the model ever have
#    predicted one of those ids? Check what `len(tokenizer)` says about them before the cut.
# 5. On a GPU, time the LM-head matmul `(4096 tokens x 4096) @ (4096 x V)` in bf16 for V = 32000, 32001 and
#    32064 (use `vla_backbone.measure.median_seconds` and `torch.cuda.synchronize()`). Does 32001 cost more?
