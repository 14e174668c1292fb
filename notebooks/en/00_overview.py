# %% [markdown]
# # 00 · Overview and set-up check
#
# A vision-language-action model (VLA) such as OpenVLA is a language model with eyes and hands: a vision encoder
# turns the camera image into patch features, a projector maps them to the language model's width, and the
# language model predicts the next tokens — some of which are robot actions. The language model sits behind one
# small interface, `LLMBackbone`, and one HuggingFace implementation of it, `HFCausalLLMBackbone`. These notebooks
# take that interface apart member by member, on transformers as it is today.
#
# **What you will learn here**
# - what the suite covers and in which order;
# - that your environment runs everything offline, on a CPU, in seconds;
# - how to switch from the tiny offline replicas to the real weights.

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
# ## The registry: every backbone id the package knows
#
# OpenVLA names each language model by a short id such as `llama2-7b-pure`. The id decides three things: the
# family class, the real weights on the HuggingFace hub, and the prompt format. `list_backbones()` lists them all.

# %%
import vla_backbone
from vla_backbone.registry import backbone_class, hub_path

ids = vla_backbone.list_backbones()
for backbone_id in ids:
    print(f"{backbone_id:26s} {backbone_class(backbone_id).__name__:20s} {hub_path(backbone_id)}")

# %% [markdown]
# Five families: every id from OpenVLA (Llama-2, Vicuna, Mistral, Phi-2) and from MiniVLA (Qwen-2.5), plus OPT,
# which this package adds as a small, ungated family.

# %%
families = {backbone_class(i).family for i in ids}
assert families == {"llama2", "mistral", "phi", "qwen25", "opt"}
# Every id OpenVLA's and MiniVLA's registries define (their upstream lists), plus OPT's.
UPSTREAM_IDS = {"llama2-7b-pure", "llama2-13b-pure", "llama2-7b-chat", "llama2-13b-chat", "vicuna-v15-7b", "vicuna-v15-13b",
                "mistral-v0.1-7b-pure", "mistral-v0.1-7b-instruct", "phi-2-3b",
                "qwen25-0_5b-pure", "qwen25-0_5b-extra", "qwen25-1_5b-pure", "qwen25-3b-pure", "qwen25-7b-pure"}
assert UPSTREAM_IDS <= set(ids) and all(backbone_class(i).family == "opt" for i in set(ids) - UPSTREAM_IDS)

# %% [markdown]
# ## Tiny replicas: the real tokenizers and classes, at toy size, offline
#
# Real checkpoints weigh gigabytes and some are gated. By default the package builds a *tiny replica* of each
# family instead: the family's **real tokenizer files** (shipped inside the package and copied byte for byte) next
# to a freshly initialised model of the **real** `*ForCausalLM` class, whose config carries the hub checkpoint's
# vocabulary size, special-token ids, embedding tying and stored dtype. Only width and depth shrink: hidden size 64,
# two layers. Every id you will meet in these notebooks (BOS, PAD, the embedding rows after the resize, the action
# tokens) is therefore the real one; only the weights are random. A replica is built once into a cache directory,
# without any network. Loading one takes the same call OpenVLA uses. The first call also imports the model code
# (a few seconds); we time a second call, which is what every later load costs.

# %%
import time

import torch

backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
start = time.perf_counter()
backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
elapsed = time.perf_counter() - start
print(type(backbone).__name__, type(backbone.llm).__name__, type(tokenizer).__name__, f"loaded in {elapsed:.2f} s")
print("loaded from:", backbone.hf_hub_path)

# %% [markdown]
# The replica is small enough to run anywhere, yet it is the real architecture: the class names match the
# 7-billion-parameter model, only the sizes differ.

# %%
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

assert isinstance(backbone.llm, LlamaForCausalLM)
assert backbone.transformer_layer_cls is LlamaDecoderLayer
assert backbone.embed_dim == 64 and backbone.llm.config.num_hidden_layers == 2

# %% [markdown]
# And it is the real tokenizer and the real vocabulary. Llama-2's tokenizer has 32000 entries with `<s>` = 1 as BOS
# and `</s>` = 2 as EOS, and no PAD token; the backbone adds `<PAD>` as id 32000, so `len(tokenizer)` is 32001 while
# `vocab_size` still counts the 32000 of the base vocabulary. The checkpoint's embedding has the hub's 32000 rows,
# stored in float16 and not tied to the LM head; after the backbone's resize (notebook 04) it has 32064 rows,
# loaded in float32. The tokenizer class is `LlamaTokenizer` on transformers 5 and `LlamaTokenizerFast` on 4.57
# (5.x has one class per family). The tokenizer files in the replica are the very bytes shipped in
# `vla_backbone/tokenizers/llama2/`.

# %%
import filecmp

from safetensors import safe_open
from transformers import AutoConfig

from vla_backbone import compat
from vla_backbone.tiny import TOKENIZERS

checkpoint = backbone.hf_hub_path
hub_rows = AutoConfig.from_pretrained(checkpoint).vocab_size
with safe_open(f"{checkpoint}/model.safetensors", framework="pt") as weights:
    stored_dtype = weights.get_tensor("model.embed_tokens.weight").dtype
embedding = backbone.llm.get_input_embeddings().weight
print(f"len(tokenizer) = {len(tokenizer)}, vocab_size = {tokenizer.vocab_size}, "
      f"bos/eos/pad = {tokenizer.bos_token_id}/{tokenizer.eos_token_id}/{tokenizer.pad_token_id}")
print(f"embedding rows: {hub_rows} in the checkpoint ({stored_dtype}) -> {embedding.shape[0]} after the resize "
      f"({embedding.dtype}); tied to the LM head: {backbone.llm.config.tie_word_embeddings}")

# %%
assert type(tokenizer).__name__ == ("LlamaTokenizer" if compat.IS_V5 else "LlamaTokenizerFast")
assert len(tokenizer) == 32001 and tokenizer.vocab_size == 32000
assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 32000)
assert tokenizer.pad_token == "<PAD>"
assert hub_rows == 32000 and embedding.shape == (32064, 64)
assert stored_dtype == torch.float16 and embedding.dtype == torch.float32
assert backbone.llm.config.tie_word_embeddings is False
assert backbone.llm.get_output_embeddings().weight is not embedding
shipped_files = sorted(path.name for path in (TOKENIZERS / "llama2").iterdir())
assert all(filecmp.cmp(TOKENIZERS / "llama2" / name, f"{checkpoint}/{name}", shallow=False) for name in shipped_files)

# %% [markdown]
# With a real vocabulary and a tiny width, almost all of the replica's parameters sit in the two 32064 x 64
# matrices, the input embedding and the LM head. That is why a replica's size follows its vocabulary, not its
# architecture.

# %%
parameters = sum(p.numel() for p in backbone.parameters())
# The input embedding and the LM head, each counted once (a family with tied embeddings shares one matrix).
vocabulary_matrices = sum({id(m.weight): m.weight.numel() for m in (backbone.llm.get_input_embeddings(),
                                                                     backbone.llm.get_output_embeddings())}.values())
print(f"parameters: {parameters:,}, of which embedding + LM head: {vocabulary_matrices:,} "
      f"({vocabulary_matrices / parameters:.0%})")
assert vocabulary_matrices == 2 * 32064 * 64 and vocabulary_matrices / parameters > 0.95

# %% [markdown]
# ## A first forward pass
#
# A sentence goes in as token ids; logits over the vocabulary come out, one row per position. We use the prompt
# OpenVLA writes for every robot step; its ids are the ones the real Llama-2 tokenizer gives (`1` is BOS).

# %%
action_prompt = "In: What action should the robot take to pick up the cup?\nOut:"
batch = tokenizer([action_prompt], return_tensors="pt")
with torch.no_grad():
    output = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
print("input ids:", batch.input_ids.tolist())
print("logits shape:", tuple(output.logits.shape))

# %%
assert batch.input_ids.tolist() == [[1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 18002,
                                     29973, 13, 3744, 29901]]
assert output.logits.shape == (1, 18, 32064)

# %% [markdown]
# ## Switching to real weights
#
# Every call takes `source=`: `"tiny"` (the default), `"hub"` for the real weights, or a local checkpoint directory.
# Setting the environment variable `VLA_BACKBONE_SOURCE=hub` switches every notebook at once. OPT-125m and
# Qwen2.5-0.5B fit a free Colab GPU; Llama-2 is gated and needs `hf_token=`. Offline, asking for the hub fails
# within seconds with an error that says what to do:

# %%
import os
from unittest import mock

from vla_backbone.errors import BackboneLoadError
from vla_backbone.notebook import expect_error
from vla_backbone.registry import resolve_source

with mock.patch.dict(os.environ, {"VLA_BACKBONE_SOURCE": "hub"}):
    assert resolve_source() == "hub"

if resolve_source() == "tiny" and not vla_backbone.hf_causal.hub_reachable():
    with expect_error(BackboneLoadError, match="source='tiny'"):
        vla_backbone.get_llm_backbone_and_tokenizer("opt-125m", source="hub")
else:
    print("the hub is reachable or the source is not tiny: skipping the offline demonstration")

# %% [markdown]
# ## The arc
#
# | # | notebook | what it teaches |
# |---|---|---|
# | 01 | the abstract class | `LLMBackbone`: ABC + `nn.Module`, abstract methods and properties, `embed_dim`, `pad_token_id` |
# | 02 | loading | training vs inference mode, dtype, greedy generation config, `use_cache`, `hf_token`, tokenizer settings |
# | 03 | the BOS assertion | both halves of the check, on every family |
# | 04 | special cases | phi-2 BOS = EOS, Qwen without BOS, PAD tokens, the multiple-of-64 resize |
# | 05 | prompt builders | every template side by side, the OpenVLA action prompt, tokens and labels |
# | 06 | `embed_input_ids` and `forward` | every argument, labels and -100, the KV cache |
# | 07 | `enable_input_require_grads` | the failure, the hook, the fixes |
# | 08 | gradient checkpointing | memory and time, measured |
# | 09 | precision and freezing | `half_precision_dtype`, `last_layer_finetune_modules`, freeze stages |
# | 10 | FSDP | wrapping policy, wrap plan, a real 2-process run |
# | 11 | inside a VLA | patches after BOS, labels, action tokens |
# | 12 | your own backbone | a new family end to end |
#
# ## Summary
# - `list_backbones()` gives every id; `get_llm_backbone_and_tokenizer(id)` builds a backbone and its tokenizer.
# - Tiny replicas are the real tokenizer files plus a tiny model of the real class with the hub config's vocabulary,
#   special ids, tying and stored dtype: every id is the real one, only the weights are random. They run offline.
# - `source="hub"` (or `VLA_BACKBONE_SOURCE=hub`) switches to the real weights.
#
# ## Exercises
# 1. Load `qwen25-0_5b-pure` and `opt-125m`. Which model class and which tokenizer class does each use? Check with
#    `isinstance` and `type(tokenizer).__name__`.
# 2. Count the parameters of every family's replica. Which is largest and which smallest, and why (hints: compare
#    the embedding rows; Qwen and OPT tie their input and output embeddings, the others do not)?
# 3. Find the cache directory of the replicas (`vla_backbone.tiny.tiny_dir("llama2")`) and list its files. Which of
#    them are the same bytes as `vla_backbone/tokenizers/llama2/`?
