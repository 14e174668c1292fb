# %% [markdown]
# # A1 · Assignment: a backbone for GPT-2
#
# The package knows five families: Llama-2, Mistral, Phi-2, Qwen-2.5 and OPT. GPT-2 is not one of them, and it is a
# good first port: small, ungated, and with two traps that every new family sets in some form. Its modules have
# different names (`transformer.h`, not `model.layers`), and its tokenizer adds no BOS token, so the BOS check from
# notebook 03 rejects it. In this assignment you write `GPT2LLMBackbone`, decide what to do about BOS, and prove that
# a VLA could use the result.
#
# **What you will do**
# - register GPT-2's backbone ids and write `GPT2LLMBackbone`, a `FamilyBackbone` subclass (notebooks 01 and 12);
# - decide how GPT-2 gets its BOS token, implement the decision, and explain it (notebook 03);
# - check the result end to end: loading, padding, prompts, FSDP wrapping and a training step.
#
# **How you are graded.** Write your code where a cell says `# YOUR CODE HERE` and delete the
# `raise NotImplementedError` line. Each task is followed by check cells; run them. Each check cell is worth the
# points in the heading above it, and the written answer is graded by hand. Then, from a clone of the repository,
# run the grader, which runs this notebook and tests your code on more cases:
#
# `.venv/bin/python -m pytest tests/assignments/test_a1_new_backbone.py --notebook path/to/A1_new_backbone.ipynb`
#
# (It reads the `.ipynb` itself; a `.py` written by jupytext works too.)

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


# %%
def say(en: str, zh: str) -> str:
    """A check's message, in the language of this notebook."""
    return zh if LANG == "zh" else en


# %% [markdown]
# ## The family the package lacks
#
# No registered id belongs to GPT-2. The HuggingFace classes you need are `GPT2LMHeadModel` (the language model
# with its head: GPT-2 predates the `*ForCausalLM` naming) and `GPT2Block` (one decoder layer). Their attribute
# names differ from Llama's: the blocks live in `transformer.h`, the token embeddings are `transformer.wte`, and
# the head is `lm_head`.

# %%
import vla_backbone
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

assert not any(backbone_id.startswith("gpt2") for backbone_id in vla_backbone.list_backbones())
toy = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=100, bos_token_id=0, eos_token_id=0))
print([name for name, _ in toy.named_children()], [name for name, _ in toy.transformer.named_children()])
assert isinstance(toy.transformer.h[0], GPT2Block) and len(toy.transformer.h) == 2
assert toy.get_input_embeddings() is toy.transformer.wte and toy.get_output_embeddings() is toy.lm_head
del toy

# %% [markdown]
# ## A tiny GPT-2, offline
#
# The package builds tiny replicas only for its own five families. The cell below teaches it a sixth. GPT-2's real
# tokenizer is at hand: phi-2's, which the package ships, is GPT-2's byte-level BPE (the same 50257 tokens and
# 50000 merges) plus 38 whitespace tokens phi-2 added for code; without those it is GPT-2's. The cell writes it to a
# folder, adds a `TinySpec` for GPT-2 to `vla_backbone.tiny.TINY_SPECS` (the hub config's vocabulary size and
# special ids, the real model class, hidden size 64, two blocks), then builds the replica once into the cache. Use
# `TINY_GPT2` as `hf_hub_path` wherever you load GPT-2 in this notebook. The real weights are
# `openai-community/gpt2` on the hub; the replica keeps what matters here, the classes and the tokenizer.

# %%
import json
import os

import torch

from vla_backbone.tiny import TINY_SPECS, TinySpec, tiny_checkpoint, tiny_home, tokenizer_files

# In the package's cache, next to the replica built from it. Each file is written under a hidden name and renamed,
# so a copy of this notebook running at the same time never reads half a file.
gpt2_files = tiny_home() / "A1" / "gpt2-tokenizer"
gpt2_files.mkdir(parents=True, exist_ok=True)


def write_tokenizer_file(name: str, data: dict) -> None:
    hidden = gpt2_files / f".{name}.{os.getpid()}"
    hidden.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(hidden, gpt2_files / name)


phi = json.loads((tokenizer_files(TINY_SPECS["phi"]) / "tokenizer.json").read_text(encoding="utf-8"))
phi["added_tokens"] = [token for token in phi["added_tokens"] if token["content"] == "<|endoftext|>"]
write_tokenizer_file("tokenizer.json", phi)
special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
write_tokenizer_file("tokenizer_config.json", {"model_max_length": 1024, **special})

TINY_SPECS.setdefault("gpt2", TinySpec(
    "gpt2", "GPT2Config", "GPT2LMHeadModel",
    {"vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256, "n_positions": 1024, "tie_word_embeddings": True},
    torch.float32, {"n_embd": 64, "n_layer": 2, "n_head": 4}, tokenizer_dir=gpt2_files,
))
TINY_GPT2 = str(tiny_checkpoint("gpt2"))
print("tiny GPT-2 at", TINY_GPT2)
assert len(phi["model"]["vocab"]) == 50257 and len(phi["model"]["merges"]) == 50000

# %% [markdown]
# It has one special token, `<|endoftext|>` (id 50256), that plays BOS, EOS and UNK at once, no PAD token, and it
# never puts BOS in front of a text, with or without special tokens.

# %%
from transformers import AutoTokenizer

gpt2_tokenizer = AutoTokenizer.from_pretrained(TINY_GPT2)
eot = gpt2_tokenizer.convert_tokens_to_ids("<|endoftext|>")
with_special = gpt2_tokenizer("Test 123", add_special_tokens=True).input_ids
print("<|endoftext|> id:", eot, "| 'Test 123' ->", with_special)
assert gpt2_tokenizer.bos_token_id == gpt2_tokenizer.eos_token_id == gpt2_tokenizer.unk_token_id == eot == 50256
assert gpt2_tokenizer.pad_token is None
assert with_special == gpt2_tokenizer("Test 123", add_special_tokens=False).input_ids and eot not in with_special

# %% [markdown]
# So the BOS check that every backbone runs at construction time (notebook 03) rejects it, with an error that names
# the two ways out:

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import check_bos
from vla_backbone.notebook import expect_error

with expect_error(TokenizerBOSError, match="does not prepend BOS"):
    check_bos(gpt2_tokenizer, "gpt2-124m")

# %% [markdown]
# ## Task 1 · The BOS decision
#
# Why BOS matters: the VLM splices the image patches in right after position 0 (notebook 11). Position 0 must hold
# the same token in training and at inference, and it must be a token that starts a sequence, not a word of the
# prompt. You have two ways to get there:
#
# - **(a) a special case, as phi-2 does.** Add the GPT-2 ids to `vla_backbone.hf_causal.SPECIAL_CASES`, so the
#   check is skipped, and give GPT-2 a prompt builder that writes `<|endoftext|>` itself, at the very start of the
#   first turn (look at `PhiPromptBuilder`).
# - **(b) make the tokenizer prepend it.** Skip the check the same way, then, after loading, give the tokenizer a
#   post-processor that puts `<|endoftext|>` in front of every text with special tokens, and run `check_bos`
#   yourself so the backbone still refuses a tokenizer that misbehaves.
#
# Either way, one rule must hold for **every** GPT-2 id you register, and the grader tests exactly this rule:
# the prompt from `prompt_builder_fn`, tokenized with `add_special_tokens=True`, starts with exactly one
# `<|endoftext|>` (position 0 is it, position 1 is not), and the same holds with an answer turn added, which ends
# with `<|endoftext|>` as EOS.
#
# In the next cell, define
# - `GPT2_MODELS`: backbone id → hub repo, at least `"gpt2-124m"` → `"openai-community/gpt2"` (the sizes
#   `gpt2-355m`, `gpt2-774m`, `gpt2-1.5b` are `openai-community/gpt2-medium`, `-large`, `-xl`);
# - whatever your decision needs: the `SPECIAL_CASES` entries, and a prompt builder class if you chose (a).

# %% nbgrader={"grade": false, "grade_id": "gpt2_models_and_bos", "locked": false, "schema_version": 3, "solution": true, "task": false}
from vla_backbone.hf_causal import SPECIAL_CASES
from vla_backbone.prompting import PromptBuilder, PurePromptBuilder

### BEGIN SOLUTION
GPT2_MODELS = {
    "gpt2-124m": "openai-community/gpt2",
    "gpt2-355m": "openai-community/gpt2-medium",
    "gpt2-774m": "openai-community/gpt2-large",
    "gpt2-1.5b": "openai-community/gpt2-xl",
}
# Decision (a): GPT-2's tokenizer adds no BOS by design, so the template writes <|endoftext|> first, like phi-2's.
SPECIAL_CASES.update(GPT2_MODELS)


class GPT2PromptBuilder(PurePromptBuilder):
    bos = eos = "<|endoftext|>"

    def first_human_turn(self, message: str) -> str:
        return self.bos + self.wrap_human(message)

    def finish(self, prompt: str) -> str:
        # Keep the hand-written BOS: only trailing whitespace goes.
        return prompt.rstrip()
### END SOLUTION


# %% [markdown]
# In two or three sentences: which option did you choose, and why? What would go wrong with the other one when
# someone loads the real weights with `source="hub"`? (2 points, graded by hand)

# %% [markdown] nbgrader={"grade": true, "grade_id": "bos_decision", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# Option (a). GPT-2 was pre-trained on documents separated by `<|endoftext|>`, so a prompt that starts with it
# looks like the start of a new document, and writing it in the template keeps training and inference identical
# without touching the tokenizer. Option (b) changes the tokenizer after loading; it works, but the change lives in
# our code, not in the checkpoint, so any code that loads the hub tokenizer directly (a collator, an inference
# server) sees a tokenizer without BOS and silently shifts the patches by one token.
# ### END SOLUTION

# %% [markdown]
# ## Task 2 · `GPT2LLMBackbone`
#
# A family in this package is a registry plus a few class attributes; `FamilyBackbone` (in
# `vla_backbone/families/_common.py`) and `HFCausalLLMBackbone` do the loading. Read `families/opt.py` and
# `families/phi.py`: yours looks like them. Define `GPT2LLMBackbone(FamilyBackbone)` with
# - `family = "gpt2"` and `models = GPT2_MODELS`;
# - `llm_cls_path` and `decoder_layer_path`: dotted paths to `GPT2LMHeadModel` and `GPT2Block`;
# - `pad_token`: GPT-2 has none and batches need one; add `"<|pad|>"`, a token of its own (never pad with EOS: the
#   labels would teach the model to stop early);
# - the properties `prompt_builder_fn` (your decision from task 1) and `last_layer_finetune_modules`: the input
#   embeddings, the last block and the LM head, in that order, as the other families return them;
# - and, only for decision (b), an `__init__` that fixes the tokenizer and re-runs the check.
#
# It must load offline as `GPT2LLMBackbone("gpt2-124m", hf_hub_path=TINY_GPT2)`.

# %% nbgrader={"grade": false, "grade_id": "gpt2_backbone", "locked": false, "schema_version": 3, "solution": true, "task": false}
from typing import Sequence

from torch import nn

from vla_backbone.families._common import FamilyBackbone


class GPT2LLMBackbone(FamilyBackbone):
    """GPT-2 (124M to 1.5B) as an OpenVLA language backbone."""

    ### BEGIN SOLUTION
    family = "gpt2"
    models = GPT2_MODELS
    llm_cls_path = "transformers.GPT2LMHeadModel"
    decoder_layer_path = "transformers.models.gpt2.modeling_gpt2.GPT2Block"
    pad_token = "<|pad|>"

    @property
    def prompt_builder_fn(self) -> type[PromptBuilder]:
        return GPT2PromptBuilder

    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.transformer.wte, self.llm.transformer.h[-1], self.llm.lm_head)
    ### END SOLUTION


# %% [markdown]
# ### Check your work: the backbone (4 points)
#
# The checks below build your backbone and test the rules above. Each failure says what is wrong.

# %% nbgrader={"grade": true, "grade_id": "check_backbone", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
import torch

backbone = GPT2LLMBackbone("gpt2-124m", hf_hub_path=TINY_GPT2)
tokenizer = backbone.get_tokenizer()
bos = tokenizer.convert_tokens_to_ids("<|endoftext|>")

assert isinstance(backbone.llm, GPT2LMHeadModel), say(f"llm is a {type(backbone.llm).__name__}, expected GPT2LMHeadModel",
                                                      f"llm 是 {type(backbone.llm).__name__}，应为 GPT2LMHeadModel")
assert backbone.transformer_layer_cls is GPT2Block, say(f"transformer_layer_cls is {backbone.transformer_layer_cls}, expected GPT2Block",
                                                        f"transformer_layer_cls 是 {backbone.transformer_layer_cls}，应为 GPT2Block")
assert backbone.pad_token_id is not None and backbone.pad_token_id != bos, say("add a PAD token of its own (pad_token)",
                                                                               "请添加一个专门的 PAD token（pad_token）")
modules = backbone.last_layer_finetune_modules
assert len(modules) == 3 and modules[0] is backbone.llm.get_input_embeddings() and modules[1] is backbone.llm.transformer.h[-1], \
    say("last_layer_finetune_modules must be (input embeddings, last block, LM head)",
        "last_layer_finetune_modules 必须是（输入嵌入、最后一个 block、输出头）")
### BEGIN HIDDEN TESTS
assert backbone.llm.get_input_embeddings().weight.shape[0] % 64 == 0
assert modules[2] is backbone.llm.get_output_embeddings()
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ### Check your work: the BOS rule (4 points)
#
# The rule of task 1, on the OpenVLA action prompt: one `<|endoftext|>` at position 0, with and without an answer.

# %% nbgrader={"grade": true, "grade_id": "check_bos_rule", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
from vla_backbone.prompting import openvla_action_prompt


def first_tokens(answer=None):
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", openvla_action_prompt("pick up the red cup"))
    if answer is not None:
        builder.add_turn("gpt", answer)
    return tokenizer(builder.get_prompt(), add_special_tokens=True).input_ids


ids = first_tokens()
print("prompt ids:", ids[:8], "...")
assert ids[0] == bos, say(f"position 0 is token {ids[0]} ({tokenizer.convert_ids_to_tokens(ids[0])!r}), expected <|endoftext|> ({bos})",
                          f"位置 0 是 token {ids[0]}（{tokenizer.convert_ids_to_tokens(ids[0])!r}），应为 <|endoftext|>（{bos}）")
assert ids[1] != bos, say("<|endoftext|> appears twice at the start: the prompt and the tokenizer both add it",
                          "开头出现了两个 <|endoftext|>：提示词和分词器各加了一个")
ids = first_tokens(answer="move left")
assert ids[0] == bos and ids[1] != bos and ids[-1] == bos, say(
    "with an answer, the prompt must start with one <|endoftext|> and end with one",
    "加上回答之后，提示词必须以一个 <|endoftext|> 开头，并以一个 <|endoftext|> 结尾")
### BEGIN HIDDEN TESTS
assert GPT2_MODELS.get("gpt2-124m") == "openai-community/gpt2"
assert all(backbone_id.startswith("gpt2") for backbone_id in GPT2_MODELS)
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## Your backbone at work
#
# These cells use what you wrote. First the vocabulary: `<|pad|>` became its last token, 50257, and the embeddings
# grew to the next multiple of 64: 50304 rows, the padded vocabulary size nanoGPT made famous for speed.

# %%
import math

rows = backbone.llm.get_input_embeddings().weight.shape[0]
print("tokenizer:", len(tokenizer), "| pad id:", backbone.pad_token_id, "| embedding rows:", rows)
assert backbone.pad_token_id == len(tokenizer) - 1 == 50257
assert rows == math.ceil(len(tokenizer) / 64) * 64 == 50304

# %% [markdown]
# FSDP wraps each `GPT2Block` as its own unit (notebook 10); the embeddings, the final norm and the head stay in
# the root unit.

# %%
from vla_backbone.fsdp import unit_parameter_counts, wrap_plan

plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
counts = unit_parameter_counts(backbone, backbone.get_fsdp_wrapping_policy())
print(plan, counts)
assert plan == ["", "llm.transformer.h.0", "llm.transformer.h.1"]
assert counts[""] == sum(p.numel() for name, p in backbone.named_parameters() if ".h." not in name)

# %% [markdown]
# Last, a training step in the `last-layer-finetune` stage: everything frozen except `last_layer_finetune_modules`,
# gradient checkpointing on. GPT-2 ties `lm_head` to `wte` (one weight matrix), so unfreezing the head unfreezes
# the embeddings too. The frozen first block gets no gradient; the last block does.

# %%
backbone.requires_grad_(False)
for module in backbone.last_layer_finetune_modules:
    module.requires_grad_(True)
backbone.enable_gradient_checkpointing()
backbone.llm.train()

batch = torch.tensor([first_tokens(answer="move left")])
loss = backbone(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
loss.backward()
print(f"loss {loss.item():.3f}")
assert backbone.llm.lm_head.weight is backbone.llm.transformer.wte.weight
assert torch.isfinite(loss)
assert backbone.llm.transformer.h[0].attn.c_attn.weight.grad is None
assert backbone.llm.transformer.h[-1].attn.c_attn.weight.grad.abs().sum() > 0

# %% [markdown]
# ## Summary
# - A new family is a registry and a few class attributes; the model and block classes are the only
#   architecture-specific names, and `last_layer_finetune_modules` is where the attribute names leak in.
# - GPT-2 has no BOS in its tokenizer: either the template writes `<|endoftext|>` (a special case, like phi-2) or
#   the tokenizer is changed to add it. What the VLM needs is one start token at position 0, every time.
# - GPT-2 has no PAD token: add one of its own, and the embeddings grow to a multiple of 64 (50304 for the real
#   model).
#
# ## Exercises
# 1. Implement the other BOS decision and run the grader again: it accepts both.
# 2. Load `TINY_GPT2` with `GPT2LLMBackbone("gpt2-124m", ..., inference_mode=True)`. Which steps of the loading
#    sequence (notebook 02) are skipped, and does the BOS rule still hold?
# 3. With network access, load the real `openai-community/gpt2` (`hf_hub_path` left out) and compare the first
#    ten token ids of the action prompt with the replica's.
