# %% [markdown]
# # 12 · Add your own backbone
#
# Porting OpenVLA to a new language model means writing one more family: a small class that tells
# `HFCausalLLMBackbone` which HuggingFace model to load, which block is a decoder layer, how prompts look, and
# which modules to fine-tune last. The hard part is not the class but the decisions around it, above all the BOS
# token the VLM splices the image after. This notebook adds a sixth family to the package, GPT-2 (ungated, 124M
# parameters and up), from the tokenizer to the FSDP plan, with GPT-2's real tokenizer and without editing a single
# file of the package: everything is defined here. At the end the new family passes the same contract every
# built-in family passes. Assignment A1 asks you to make the same port with decisions of your own, and grades it.
#
# **What you will learn here**
# - what a family must supply: five class attributes and two properties;
# - where GPT-2's real tokenizer comes from offline, and how to check that a tokenizer you derive is the real one;
# - how to decide a tokenizer's BOS behaviour, and why a flag such as `add_bos_token` does not settle it;
# - how to give the package a tiny replica of the new family: a `TinySpec` with `tokenizer_dir=`;
# - how to write the `FamilyBackbone` subclass, a prompt builder and a registry entry for it;
# - how to check the result with `vla_backbone.contract.check_backbone_contract`, and how each wrong decision fails.

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
# ## What a family supplies
#
# A family is a subclass of `FamilyBackbone` (`vla_backbone/families/_common.py`). Its parent does all the loading;
# the subclass fills in five class attributes and two properties:
#
# | member | what it says | Llama-2's value |
# |---|---|---|
# | `family` | a short family name | `"llama2"` |
# | `models` | backbone id → hub repo | `LLAMA2_MODELS` |
# | `llm_cls_path` | the `*ForCausalLM` class, as a dotted string | `"transformers.LlamaForCausalLM"` |
# | `decoder_layer_path` | the block FSDP wraps (transformers picks what checkpointing recomputes, usually the same block) | `"...modeling_llama.LlamaDecoderLayer"` |
# | `pad_token` | a PAD token to add, if the tokenizer has none | `"<PAD>"` |
# | `prompt_builder_fn` | the prompt builder class (property) | `PurePromptBuilder` for `-pure` ids |
# | `last_layer_finetune_modules` | input embeddings, last decoder layer, LM head (property) | three modules |
#
# The two properties are the only members still abstract in `FamilyBackbone`; the class paths are strings so that
# `import vla_backbone` does not import every model class of transformers. Two optional class attributes shape how
# `load_tokenizer` loads the tokenizer: `tokenizer_kwargs` passes extra arguments to `AutoTokenizer.from_pretrained`
# (Qwen uses it on 4.57.3 to 4.57.x, Llama-2 for `legacy=True`), and `tokenizer_from_file = True` makes it split text exactly as the
# checkpoint's tokenizer.json says (Llama-2, whose tokenizer transformers 5 would otherwise rebuild with other ids;
# notebook 05). Two more members have defaults a family may override: `extra_tokens()`, the tokens appended after
# loading (Qwen's `-extra` ids add 256 `<|extra_i|>`), and `embed_dim`, the width `embed_input_ids` returns (OPT,
# whose opt-350m embeds in 512 dimensions below a hidden size of 1024).

# %%
import torch

from vla_backbone.families import FAMILIES, LLaMa2LLMBackbone
from vla_backbone.families._common import FamilyBackbone

for family in FAMILIES:
    print(f"{family.family:8s} {family.llm_cls_path:34s} {family.decoder_layer_path.rsplit('.', 1)[1]:20s} "
          f"pad={family.pad_token!r:16s} tokenizer_kwargs={family.tokenizer_kwargs} "
          f"from_file={family.tokenizer_from_file}")

# %%
assert FamilyBackbone.__abstractmethods__ == {"prompt_builder_fn", "last_layer_finetune_modules"}
assert all(not family.__abstractmethods__ for family in FAMILIES)
assert {family.family for family in FAMILIES} == {"llama2", "mistral", "phi", "qwen25", "opt"}
assert [family.family for family in FAMILIES if family.tokenizer_from_file] == ["llama2"]
assert [family.family for family in FAMILIES if family.extra_tokens is not FamilyBackbone.extra_tokens] == ["qwen25"]
assert [family.family for family in FAMILIES if "embed_dim" in vars(family)] == ["opt"]

# %% [markdown]
# ## The architecture: GPT-2
#
# transformers ships `GPT2LMHeadModel` (GPT-2 predates the `*ForCausalLM` naming), whose decoder layer is
# `GPT2Block`; no family of the package uses it. Its modules have their own names: the blocks live in
# `transformer.h`, the token embeddings are `transformer.wte` (plus learned position embeddings, `transformer.wpe`),
# and the head is `lm_head`, tied to `wte`. Our code reaches the embeddings and the head through
# `get_input_embeddings()` and `get_output_embeddings()`, which work for every model class.

# %%
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

assert not any("GPT2" in family.llm_cls_path for family in FAMILIES)
toy = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=64, vocab_size=100, bos_token_id=0, eos_token_id=0))
print([name for name, _ in toy.named_children()], [name for name, _ in toy.transformer.named_children()])
assert all(isinstance(block, GPT2Block) for block in toy.transformer.h) and len(toy.transformer.h) == 2
assert toy.get_input_embeddings() is toy.transformer.wte and toy.get_output_embeddings() is toy.lm_head
assert toy.lm_head.weight is toy.transformer.wte.weight
del toy

# %% [markdown]
# ## Step 1 · GPT-2's real tokenizer, from files the package ships
#
# Every id in this suite comes from a real tokenizer, and so will GPT-2's. Its tokenizer is not in the package, but
# phi-2's is, and phi-2's tokenizer *is* GPT-2's byte-level BPE (the same 50257 tokens, `<|endoftext|>` = 50256
# among them, and the same 50000 merges) plus 38 whitespace tokens (ids 50257-50294) that phi-2 added for code.
# Remove those 38 and GPT-2's tokenizer is left. We do not take that on trust; two checks come from outside phi-2's
# files:
#
# 1. OPT's `merges.txt`, which the package ships from another source (metaseq), is GPT-2's BPE as well: its merges
#    must equal phi-2's, line for line, and its vocabulary must hold the same 50257 strings (OPT numbers them in
#    its own order and adds 8 tokens of its own).
# 2. transformers documents the real GPT-2 tokenizer's ids in `GPT2Tokenizer`'s docstring: `"Hello world"` ->
#    `[15496, 995]` and `" Hello world"` -> `[18435, 995]`. Ours must give the same.

# %%
import json

from vla_backbone.tiny import TOKENIZERS

EOT = "<|endoftext|>"
phi_files = json.loads((TOKENIZERS / "phi" / "tokenizer.json").read_text(encoding="utf-8"))
bpe = phi_files["model"]
whitespace_tokens = [token for token in phi_files["added_tokens"] if token["content"] != EOT]
opt_merges = (TOKENIZERS / "opt" / "merges.txt").read_text(encoding="utf-8").splitlines()
opt_vocab = json.loads((TOKENIZERS / "opt" / "vocab.json").read_text(encoding="utf-8"))
print(f"phi-2: {bpe['type']} with {len(bpe['vocab'])} tokens and {len(bpe['merges'])} merges; "
      f"{len(whitespace_tokens)} added whitespace tokens, ids {whitespace_tokens[0]['id']}-{whitespace_tokens[-1]['id']}")
print(f"OPT: {len(opt_merges) - 1} merges ({opt_merges[0]!r} first), {len(opt_vocab)} tokens, of which not in "
      f"phi-2's BPE: {sorted(set(opt_vocab) - set(bpe['vocab']))}")

# %%
assert bpe["type"] == "BPE" and len(bpe["vocab"]) == 50257 and len(bpe["merges"]) == 50000
assert bpe["vocab"][EOT] == 50256 and len(whitespace_tokens) == 38
assert [token["id"] for token in whitespace_tokens] == list(range(50257, 50295))
assert all(token["content"].strip() == "" for token in whitespace_tokens)
assert opt_merges[0] == "#version: 0.2" and opt_merges[1:] == bpe["merges"]
assert set(bpe["vocab"]) <= set(opt_vocab) and len(set(opt_vocab) - set(bpe["vocab"])) == 8

# %% [markdown]
# Now we write GPT-2's tokenizer files: phi-2's `tokenizer.json` without the 38 whitespace tokens, and a
# `tokenizer_config.json` with the only settings GPT-2 needs beyond the defaults of transformers' GPT-2 tokenizer
# class: its context length, 1024, and `<|endoftext|>` as BOS, EOS and UNK (the class defaults, written out so the
# files say it themselves). They go into a folder of the package's cache, next to the tiny replicas, where they stay
# for the replica's sake (it is keyed by the files' bytes). A file is written under a hidden name and then renamed,
# so a copy of this notebook running at the same time never reads half of one.

# %%
import filecmp
import inspect
import os
from pathlib import Path

from transformers import AutoTokenizer, GPT2Tokenizer, GPT2TokenizerFast

from vla_backbone.tiny import tiny_home

GPT2_FILES = tiny_home() / "notebook-12" / "gpt2-tokenizer"
GPT2_FILES.mkdir(parents=True, exist_ok=True)


def write_tokenizer_file(name: str, data: dict) -> None:
    hidden = GPT2_FILES / f".{name}.{os.getpid()}"
    hidden.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(hidden, GPT2_FILES / name)


gpt2_json = {**phi_files, "added_tokens": [token for token in phi_files["added_tokens"] if token["content"] == EOT]}
write_tokenizer_file("tokenizer.json", gpt2_json)
special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
write_tokenizer_file("tokenizer_config.json", {"model_max_length": 1024, **special})

gpt2_tokenizer = GPT2TokenizerFast.from_pretrained(GPT2_FILES)
print(type(gpt2_tokenizer).__name__, "| len:", len(gpt2_tokenizer), "| vocab_size:", gpt2_tokenizer.vocab_size,
      "| pad:", gpt2_tokenizer.pad_token)
for text in ["Hello world", " Hello world", "Test 123"]:
    print(f"{text!r:15s} -> {gpt2_tokenizer(text).input_ids}")

# %%
defaults = inspect.signature(GPT2TokenizerFast.__init__).parameters
assert all(defaults[role].default == EOT for role in special)
documented = GPT2Tokenizer.__doc__
assert 'from_pretrained("openai-community/gpt2")' in documented
assert "[15496, 995]" in documented and "[18435, 995]" in documented
assert gpt2_tokenizer("Hello world").input_ids == [15496, 995]
assert gpt2_tokenizer(" Hello world").input_ids == [18435, 995]
assert len(gpt2_tokenizer) == gpt2_tokenizer.vocab_size == 50257 and gpt2_tokenizer.pad_token is None
assert gpt2_tokenizer.bos_token_id == gpt2_tokenizer.eos_token_id == gpt2_tokenizer.unk_token_id == 50256

# %% [markdown]
# On ordinary text GPT-2 and phi-2 give the same ids (`"Test 123"` -> `[14402, 17031]`, the real phi-2 ids of
# notebook 03). They part ways on runs of spaces, which phi-2 encodes with its added whitespace tokens and GPT-2
# spells out with `Ġ` pieces (id 220 is a single space).

# %%
phi_tokenizer = AutoTokenizer.from_pretrained(TOKENIZERS / "phi")
code = "    return x"
print(f"{code!r}: GPT-2 {gpt2_tokenizer(code).input_ids}, phi-2 {phi_tokenizer(code).input_ids}")
assert gpt2_tokenizer("Test 123").input_ids == phi_tokenizer("Test 123").input_ids == [14402, 17031]
assert gpt2_tokenizer(code).input_ids == [220, 220, 220, 1441, 2124]
assert any(50257 <= i <= 50294 for i in phi_tokenizer(code).input_ids)

# %% [markdown]
# ## Step 2 · The BOS decision
#
# GPT-2's tokenizer has one special token, `<|endoftext|>`, in three roles, and it never puts BOS in front of a
# text, with or without special tokens. `check_bos` (notebook 03) therefore rejects it.

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error

assert gpt2_tokenizer("Test 123").input_ids == gpt2_tokenizer("Test 123", add_special_tokens=False).input_ids
with expect_error(TokenizerBOSError, match="does not prepend BOS"):
    check_bos(gpt2_tokenizer, "gpt2-124m")

# %% [markdown]
# Two ways out, both already used by the package:
#
# - **Option A: the tokenizer prepends BOS**, as the real Llama-2, Mistral and OPT tokenizers do, and `check_bos`
#   passes. transformers' GPT-2 tokenizer even takes an `add_bos_token` argument, which a family could pass through
#   `tokenizer_kwargs`.
# - **Option B: the prompt builder writes BOS.** The tokenizer stays as it is, the ids go into `SPECIAL_CASES` so the
#   check is skipped, and the prompt builder starts the first turn with `<|endoftext|>`. That is what OpenVLA does
#   for phi-2, whose tokenizer is this one plus 38 tokens.
#
# Try option A's argument on our files. On transformers 5 it adds BOS. On 4.57 the fast GPT-2 tokenizer built from a
# `tokenizer.json` accepts the argument and ignores it: the ids are unchanged, with no warning. The flag says
# nothing reliable; the ids do (notebook 03 shows the same for Llama-2).

# %%
from vla_backbone import compat

asked_for_bos = GPT2TokenizerFast.from_pretrained(GPT2_FILES, add_bos_token=True)
print(f"transformers {compat.TRANSFORMERS_VERSION}, add_bos_token=True: 'Test 123' -> {asked_for_bos('Test 123').input_ids}")
if compat.IS_V5:
    assert asked_for_bos("Test 123").input_ids == [50256, 14402, 17031]
    check_bos(asked_for_bos, "gpt2-124m")
else:
    assert asked_for_bos("Test 123").input_ids == [14402, 17031]
    with expect_error(TokenizerBOSError, match="does not prepend BOS"):
        check_bos(asked_for_bos, "gpt2-124m")

# %% [markdown]
# **We pick option B.** It gives GPT-2 the same BOS rule as phi-2, it behaves the same on every transformers
# version, and the tokenizer files stay GPT-2's own. The price: `check_bos` no longer guards the family, and only
# prompts that come through the builder start with BOS (the weakness notebook 11 showed for Qwen). So the builder
# carries the guarantee, and step 8 adds a check that its prompts start with exactly one BOS.
#
# The registry of step 5 comes first, because `SPECIAL_CASES` is keyed by backbone id. Inside the package the ids
# would go into `SPECIAL_CASES` in `vla_backbone/hf_causal.py`; here we add them to the set for this kernel.

# %%
# === Registry: backbone id -> HuggingFace hub repo ===
GPT2_MODELS = {
    "gpt2-124m": "openai-community/gpt2",
    "gpt2-355m": "openai-community/gpt2-medium",
    "gpt2-774m": "openai-community/gpt2-large",
    "gpt2-1.5b": "openai-community/gpt2-xl",
}
SPECIAL_CASES.update(GPT2_MODELS)
assert set(GPT2_MODELS) <= SPECIAL_CASES

# %% [markdown]
# ## Step 3 · A prompt builder
#
# Every family names its prompt format. Ours is a plain question-and-answer template, `Q: ...` then `A: ...`,
# built on `TurnPromptBuilder`, which already handles alternating roles, `<image>` removal and stripping. A builder
# says how a human turn is wrapped and which EOS ends an answer; with option B it also writes BOS in front of the
# first turn and keeps it when the prompt is finished (the default `finish()` strips a leading BOS, for tokenizers
# that add their own).

# %%
from vla_backbone.errors import PromptTurnError
from vla_backbone.prompting import TurnPromptBuilder, openvla_action_prompt


class QAPromptBuilder(TurnPromptBuilder):
    bos = eos = EOT

    def wrap_human(self, message: str) -> str:
        return f"Q: {message}\nA: "

    def first_human_turn(self, message: str) -> str:
        # The BOS GPT-2's tokenizer does not add: the VLM splices image patches in right after it.
        return self.bos + self.wrap_human(message)

    def finish(self, prompt: str) -> str:
        # The hand-written BOS stays: only trailing whitespace goes.
        return prompt.rstrip()


question = openvla_action_prompt("Pick up the red cup")
builder = QAPromptBuilder("openvla")
print(repr(builder.get_potential_prompt(question)))
assert builder.get_potential_prompt(question) == f"{EOT}Q: What action should the robot take to pick up the red cup?\nA:"
assert builder.add_turn("human", "<image>\n" + question) == f"{EOT}Q: {question}\nA: "
assert builder.add_turn("gpt", "move left") == f"move left{EOT}"
assert builder.get_prompt() == f"{EOT}Q: {question}\nA: move left{EOT}"
with expect_error(PromptTurnError, match="must come from 'human'"):
    builder.add_turn("gpt", "again")


# %% [markdown]
# Tokenized with GPT-2's tokenizer, the prompt starts with exactly one `<|endoftext|>` (50256), and the same id ends
# the answer as EOS, as in phi-2's prompts (notebook 04). A builder that forgets the BOS starts with the word `Q`.

# %%
class QAWithoutBOSPromptBuilder(QAPromptBuilder):
    def first_human_turn(self, message: str) -> str:
        return self.wrap_human(message)


def prompt_ids(builder_cls, tokenizer) -> list[int]:
    builder = builder_cls("openvla")
    builder.add_turn("human", question)
    builder.add_turn("gpt", "move left")
    return tokenizer(builder.get_prompt()).input_ids


ids = prompt_ids(QAPromptBuilder, gpt2_tokenizer)
without = prompt_ids(QAWithoutBOSPromptBuilder, gpt2_tokenizer)
print("with the builder's BOS:", ids[:4], "...", ids[-2:], "| without:", without[:4], "...")
assert ids[0] == 50256 and ids[1] != 50256 and [i for i, t in enumerate(ids) if t == 50256] == [0, len(ids) - 1]
# Without it, the prompt starts with the template's first word (`Q` here).
assert without == ids[1:] and QAPromptBuilder("openvla").wrap_human("").startswith(
    gpt2_tokenizer.convert_ids_to_tokens(without[0]))

# %% [markdown]
# **Try it.** Change the template in `wrap_human` to `f"User: {message}\nRobot: "` and re-run the cells of this
# step: the string asserts fail, since they pin the template down character by character, while the token-level
# asserts keep passing, because the BOS rule does not depend on the wording. The contract in step 8 checks the
# prompt again, whatever template you leave here.

# %% [markdown]
# ## Step 4 · A tiny replica: a `TinySpec` with `tokenizer_dir=`
#
# The package builds its offline replicas from `vla_backbone.tiny.TINY_SPECS`: for each family, the model classes,
# the hub config's identity (vocabulary size, special ids, tying), the dtype the hub checkpoint is stored in, the toy
# width and depth, and where the tokenizer files are. A new family adds a `TinySpec` and points `tokenizer_dir` at
# its real tokenizer files; `tiny_checkpoint` then builds the replica once into the package's cache (files copied
# byte for byte, a seeded random model saved beside them), exactly like the built-in ones. GPT-2's hub config
# (`openai-community/gpt2`): 50257 rows, BOS = EOS = 50256, no PAD, 1024 positions, input and output embeddings
# tied, weights stored in float32.
#
# The cache keys each replica by its whole spec, the tokenizer files' bytes included: this spec and assignment A1's
# `"gpt2"` spec share a replica only while they agree exactly, and a changed spec builds a replica of its own instead of
# reusing a stale one. The assert on the copied files below checks that this replica holds our files.

# %%
from safetensors import safe_open
from transformers import AutoConfig

from vla_backbone.tiny import TINY_SPECS, TinySpec, tiny_checkpoint

TINY_SPECS["gpt2"] = TinySpec(
    "gpt2", "GPT2Config", "GPT2LMHeadModel",
    {"vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256, "n_positions": 1024, "tie_word_embeddings": True},
    torch.float32, {"n_embd": 64, "n_layer": 2, "n_head": 4}, tokenizer_dir=GPT2_FILES,
)
TINY_GPT2 = str(tiny_checkpoint("gpt2"))
print("tiny GPT-2 at", TINY_GPT2)
print(sorted(path.name for path in Path(TINY_GPT2).iterdir()))

# %%
assert all(filecmp.cmp(GPT2_FILES / name, Path(TINY_GPT2) / name, shallow=False)
           for name in ("tokenizer.json", "tokenizer_config.json")), f"{TINY_GPT2} holds other tokenizer files"
replica_config = AutoConfig.from_pretrained(TINY_GPT2)
assert (replica_config.vocab_size, replica_config.bos_token_id, replica_config.eos_token_id) == (50257, 50256, 50256)
assert replica_config.tie_word_embeddings and replica_config.n_embd == 64 and replica_config.n_layer == 2
assert replica_config.n_positions == 1024
with safe_open(Path(TINY_GPT2) / "model.safetensors", framework="pt") as weights:
    assert weights.get_tensor("transformer.wte.weight").dtype == torch.float32

# %% [markdown]
# ## Step 5 · The subclass
#
# Now the family itself. `models` is the registry of step 2: backbone ids mapped to the hub repos of the real GPT-2
# weights; `hf_hub_path=` overrides that path with our replica. GPT-2's tokenizer has no PAD token, so, like phi-2,
# the family adds a token of its own, `<|pad|>`, which keeps padding apart from EOS. `last_layer_finetune_modules`
# uses the generic accessors for the embeddings and the head. And GPT-2 learned 1024 positions, one embedding each:
# a longer input indexes past them and crashes, while the package's default `llm_max_length` is 2048 (the registry
# passes it too). So the family caps it at the model's context.

# %%
from typing import Sequence

from torch import nn


class GPT2LLMBackbone(FamilyBackbone):
    family = "gpt2"
    models = GPT2_MODELS
    llm_cls_path = "transformers.GPT2LMHeadModel"
    decoder_layer_path = "transformers.models.gpt2.modeling_gpt2.GPT2Block"
    pad_token = "<|pad|>"
    context = 1024  # GPT-2's learned positions (config.n_positions)

    def __init__(self, llm_backbone_id: str, llm_max_length: int = 2048, **kwargs) -> None:
        super().__init__(llm_backbone_id, llm_max_length=min(llm_max_length, self.context), **kwargs)

    @property
    def prompt_builder_fn(self) -> type[TurnPromptBuilder]:
        return QAPromptBuilder

    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.get_input_embeddings(), self.llm.transformer.h[-1], self.llm.get_output_embeddings())


backbone = GPT2LLMBackbone("gpt2-124m", hf_hub_path=TINY_GPT2)
tokenizer = backbone.get_tokenizer()
rows = backbone.llm.get_input_embeddings().weight.shape[0]
print(type(backbone.llm).__name__, "| tokens:", len(tokenizer), "| pad:", tokenizer.pad_token, backbone.pad_token_id,
      f"| embedding rows: {replica_config.vocab_size} -> {rows}")

# %% [markdown]
# `<|pad|>` gets the next free id, 50257, so the tokenizer has 50258 tokens, and the resize to a multiple of 64
# grows the 50257 rows to 50304: the figure nanoGPT uses for GPT-2 (notebook 04). The head is tied, so it grows
# with the embedding. The length is capped at 1024, and one token more is indeed past the position table.

# %%
assert isinstance(backbone.llm, GPT2LMHeadModel) and backbone.transformer_layer_cls is GPT2Block
assert len(tokenizer) == 50258 and tokenizer.pad_token == "<|pad|>" and backbone.pad_token_id == 50257
assert rows == 50304 and backbone.llm.get_output_embeddings().weight is backbone.llm.get_input_embeddings().weight
assert backbone.half_precision_dtype is torch.bfloat16
assert backbone.llm_max_length == tokenizer.model_max_length == backbone.llm.config.n_positions == 1024
with expect_error(IndexError, match="index out of range"), torch.no_grad():
    backbone.llm(input_ids=torch.zeros(1, 1025, dtype=torch.long))

# %% [markdown]
# The parent checks the id against `models`, and an incomplete subclass fails at construction with the names of
# the members it still lacks. That is exactly the defect of upstream OpenVLA's Mistral and Phi classes
# (notebook 01), caught before any weight is loaded.

# %%
from vla_backbone.errors import UnknownBackboneError

with expect_error(UnknownBackboneError, match="Known gpt2 ids"):
    GPT2LLMBackbone("llama2-7b-pure", hf_hub_path=TINY_GPT2)


class Incomplete(FamilyBackbone):
    family, models = "gpt2", GPT2_MODELS
    llm_cls_path, decoder_layer_path = GPT2LLMBackbone.llm_cls_path, GPT2LLMBackbone.decoder_layer_path

    @property
    def prompt_builder_fn(self):
        return QAPromptBuilder


with expect_error(TypeError, match="last_layer_finetune_modules"):
    Incomplete("gpt2-124m", hf_hub_path=TINY_GPT2)

# %% [markdown]
# ## Step 6 · A registry entry
#
# `get_llm_backbone_and_tokenizer(id)` finds the family through `vla_backbone.registry.LLM_BACKBONES`, a dict from
# backbone id to family class. Inside the package a new family becomes permanent with its class in `FAMILIES`
# (`vla_backbone/families/__init__.py`), its `TinySpec` in `TINY_SPECS`, its tokenizer files in
# `vla_backbone/tokenizers/` (listed in `SHA256SUMS`, licensed in `NOTICE`) and its hub facts in `tests/test_tiny.py`;
# the notebooks pin the five built-in families and would need a look too. Here we only borrow the registry: a context manager inserts our ids and
# removes them again, even if something inside fails. With the `TinySpec` of step 4 in place, the default
# `source="tiny"` finds the replica for every GPT-2 id: the four sizes share one family replica.

# %%
import contextlib

import vla_backbone
from vla_backbone.registry import LLM_BACKBONES, hub_path


@contextlib.contextmanager
def registered(family_cls):
    """Register every id of `family_cls` while the block runs."""
    added = [backbone_id for backbone_id in family_cls.models if backbone_id not in LLM_BACKBONES]
    LLM_BACKBONES.update({backbone_id: family_cls for backbone_id in added})
    try:
        yield added
    finally:
        for backbone_id in added:
            del LLM_BACKBONES[backbone_id]


with registered(GPT2LLMBackbone) as added:
    print("registered:", added)
    assert set(GPT2_MODELS) <= set(vla_backbone.list_backbones())
    assert hub_path("gpt2-124m") == "openai-community/gpt2"
    loaded, loaded_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("gpt2-355m", source="tiny")
print(type(loaded).__name__, loaded.identifier, loaded.hf_hub_path, "| after the block:",
      "gpt2-355m" in vla_backbone.list_backbones())

# %%
assert isinstance(loaded, GPT2LLMBackbone) and loaded.identifier == "gpt2-355m" and loaded.hf_hub_path == TINY_GPT2
assert loaded_tokenizer is loaded.get_tokenizer()
assert not any(backbone_id.startswith("gpt2") for backbone_id in vla_backbone.list_backbones())
with expect_error(UnknownBackboneError, match="Unknown backbone id 'gpt2-124m'"):
    vla_backbone.get_llm_backbone_and_tokenizer("gpt2-124m")

# %% [markdown]
# ## Step 7 · The FSDP policy
#
# `HFCausalLLMBackbone.get_fsdp_wrapping_policy()` wraps every module of class `transformer_layer_cls`, which
# `decoder_layer_path` names. `wrap_plan` (notebook 10) previews the units without starting any process: the root,
# which keeps the token and position embeddings, the final layer norm and the tied head, plus one unit per
# `GPT2Block`.

# %%
from vla_backbone.fsdp import unit_parameter_counts, wrap_plan

plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
counts = unit_parameter_counts(backbone, backbone.get_fsdp_wrapping_policy())
for unit, numel in counts.items():
    print(f"  {unit or '(root)':24s} {numel:>10,} parameters")
assert plan == ["", "llm.transformer.h.0", "llm.transformer.h.1"]
assert sum(counts.values()) == sum(p.numel() for p in backbone.parameters())
root_modules = [backbone.llm.transformer.wte, backbone.llm.transformer.wpe, backbone.llm.transformer.ln_f]
assert counts[""] == sum(p.numel() for module in root_modules for p in module.parameters()) == (50304 + 1024) * 64 + 2 * 64

# %% [markdown]
# ## Step 8 · The contract every family passes
#
# The package ships the promises every backbone keeps as one function, `vla_backbone.contract.check_backbone_contract`:
# no abstract member left, a PAD token that config and tokenizer agree on, right padding, an `llm_max_length` within
# the model's positions, a prompt builder whose EOS is one special token, the BOS check (skipped for
# `SPECIAL_CASES`), embeddings padded to a multiple of 64, the input-grad hook, an `enable_gradient_checkpointing()`
# that turns checkpointing on and keeps that hook (the check turns it off again), the last-layer modules, an FSDP
# plan of exactly the decoder layers, and a forward pass with a finite loss. The package's own tests
# (`tests/test_families.py`) run it on every registered id. It raises an `AssertionError` that says what is wrong.
#
# Option B moved BOS into the prompt builder, so we add one check of our own that ties back to notebook 11: the
# prompt the builder produces must start with exactly one BOS, since the image goes right after it.
#
# On the first loss transformers notes that GPT-2's config names no `loss_type`. It infers the loss from the class
# name, and `GPT2LMHeadModel` predates the `*ForCausalLM` naming, so it falls back to its default, the causal
# language-model loss `ForCausalLMLoss`: the right one.

# %%
from vla_backbone.contract import check_backbone_contract
from vla_backbone.notebook import transformers_log


def check_prompt_starts_with_one_bos(backbone) -> None:
    """Raise AssertionError unless the builder's prompt, tokenized, starts with exactly one BOS (if there is a BOS)."""
    tokenizer = backbone.get_tokenizer()
    ids = prompt_ids(backbone.prompt_builder_fn, tokenizer)
    bos = tokenizer.bos_token_id
    if bos is not None and not (ids[0] == bos and ids[1] != bos):
        raise AssertionError(f"{backbone.identifier}: the prompt starts {ids[:2]}, not with exactly one BOS ({bos})")


with transformers_log() as notes:
    check_backbone_contract(backbone)
print("transformers log:", notes)
assert any("loss_type" in note and "ForCausalLMLoss" in note for note in notes)
check_prompt_starts_with_one_bos(backbone)
assert "ForCausalLM" not in type(backbone.llm).__name__ and backbone.llm.loss_function.__name__ == "ForCausalLMLoss"
lopsided = GPT2LLMBackbone("gpt2-124m", hf_hub_path=TINY_GPT2)
lopsided.tokenizer.padding_side = "left"
with expect_error(AssertionError, match="pads on the left"):
    check_backbone_contract(lopsided)
del lopsided

# %% [markdown]
# The same two checks on one id of every built-in family: all pass, so the contract asks nothing that the package's
# own families do not already satisfy. phi-2 and Qwen pass the BOS check as special cases; Qwen has no BOS token at
# all, so the prompt check does not apply to it.

# %%
from vla_backbone.registry import get_llm_backbone_and_tokenizer

for backbone_id in ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]:
    builtin, builtin_tokenizer = get_llm_backbone_and_tokenizer(backbone_id)
    check_backbone_contract(builtin)
    check_prompt_starts_with_one_bos(builtin)
    first = builtin_tokenizer.convert_ids_to_tokens(prompt_ids(builtin.prompt_builder_fn, builtin_tokenizer)[0])
    print(f"{backbone_id:22s} passes; BOS check {'skipped' if backbone_id in SPECIAL_CASES else 'passed'}; "
          f"the prompt starts with {first!r}")
del builtin

# %% [markdown]
# ## Try it: break the family on purpose
#
# Each variant below changes one decision of this notebook. Pick one and see what fails, and where: at
# construction (`TypeError`, `TokenizerBOSError`) or in the contract (`AssertionError`). The cell first runs every
# variant and asserts the expected outcome. Then make the same change by hand in the cells above (for example, set
# `pad_token = None` in step 5) and re-run.
#
# The last variant is option A: the ids taken out of `SPECIAL_CASES`, a builder that does not write BOS, and
# `tokenizer_kwargs = {"add_bos_token": True}`. On transformers 5 it passes; on 4.57 the tokenizer ignores the
# argument and the BOS check stops it at construction: the check doing its job.
#
# Everything the drop-down uses stays in place after "Run All": the replica and the tokenizer files in the package's
# cache, and the GPT-2 ids in `SPECIAL_CASES`.

# %%
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

from vla_backbone.notebook import explore


@contextlib.contextmanager
def not_special(backbone_ids):
    """Run the block with `backbone_ids` taken out of SPECIAL_CASES, then put them back."""
    removed = SPECIAL_CASES & set(backbone_ids)
    SPECIAL_CASES.difference_update(removed)
    try:
        yield
    finally:
        SPECIAL_CASES.update(removed)


class NoPad(GPT2LLMBackbone):
    pad_token = None


class AttentionAsLayer(GPT2LLMBackbone):
    decoder_layer_path = "transformers.models.gpt2.modeling_gpt2.GPT2Attention"


class TemplateWithoutBOS(GPT2LLMBackbone):
    @property
    def prompt_builder_fn(self):
        return QAWithoutBOSPromptBuilder


class OptionA(TemplateWithoutBOS):
    tokenizer_kwargs = {"add_bos_token": True}


# variant -> (family class, still a special case?, expected error type and words, or None when it passes)
VARIANTS = {
    "as written": (GPT2LLMBackbone, True, None),
    "not in SPECIAL_CASES": (GPT2LLMBackbone, False, (TokenizerBOSError, "does not prepend BOS")),
    "no last_layer_finetune_modules": (Incomplete, True, (TypeError, "last_layer_finetune_modules")),
    "no PAD token": (NoPad, True, (AssertionError, "has no PAD token")),
    "attention as decoder layer": (AttentionAsLayer, True, (AssertionError, "must be the last decoder layer")),
    "template without BOS": (TemplateWithoutBOS, True, (AssertionError, "not with exactly one BOS")),
    "option A (add_bos_token)": (OptionA, False, None if compat.IS_V5 else (TokenizerBOSError, "does not prepend BOS")),
}


def outcome(variant: str) -> tuple[type, str] | None:
    """Build the variant's backbone and run both checks: None if all pass, else the error's type and message."""
    family_cls, special, _ = VARIANTS[variant]
    with contextlib.nullcontext() if special else not_special(GPT2_MODELS):
        try:
            variant_backbone = family_cls("gpt2-124m", hf_hub_path=TINY_GPT2)
            check_backbone_contract(variant_backbone)
            check_prompt_starts_with_one_bos(variant_backbone)
        except (TypeError, TokenizerBOSError, AssertionError) as error:
            return type(error), str(error)
    return None


def try_variant(variant: str) -> str:
    result = outcome(variant)
    verdict = "passes" if result is None else f"{result[0].__name__}: {result[1]}"
    print(f"{variant}: {verdict}")
    return verdict


for variant, (_, _, expected) in VARIANTS.items():
    result = outcome(variant)
    if expected is None:
        assert result is None, (variant, result)
    else:
        assert result is not None and result[0] is expected[0] and expected[1] in result[1], (variant, result)
assert set(GPT2_MODELS) <= SPECIAL_CASES
first_verdict = explore(try_variant, variant=list(VARIANTS))
assert first_verdict == "passes"

# %% [markdown]
# ## Summary
# - A family is five class attributes (`family`, `models`, `llm_cls_path`, `decoder_layer_path`, `pad_token`) and two
#   properties (`prompt_builder_fn`, `last_layer_finetune_modules`); `FamilyBackbone` and `HFCausalLLMBackbone` do
#   the rest. `tokenizer_kwargs` passes extra loading arguments when a family needs them.
# - Use the real tokenizer files. GPT-2's are phi-2's without the 38 whitespace tokens; OPT's merges and the ids
#   transformers documents for `openai-community/gpt2` confirm it.
# - Decide BOS first: either the tokenizer prepends it (`check_bos` passes and keeps guarding) or the prompt builder
#   writes it and the ids join `SPECIAL_CASES`, as for phi-2. Judge a tokenizer by its ids: `add_bos_token=True`
#   adds BOS to GPT-2 on transformers 5 and does nothing on 4.57.
# - A `TinySpec` with `tokenizer_dir=` gives the family an offline replica built like the built-in ones; a registry
#   entry can be borrowed with a context manager.
# - `check_backbone_contract` checks the promises every backbone keeps; add a check of your own where your decisions
#   move a guarantee (here: one BOS at the start of every prompt).
#
# ## Exercises
# 1. Make option A work on every version: keep GPT-2's files, but give the family an `__init__` that sets a
#    `TemplateProcessing` post-processor with `<|endoftext|>` after loading. What must happen to `SPECIAL_CASES`,
#    and where do you call `check_bos` yourself?
# 2. Register an extra id ending in `-chat` and give it a second prompt builder, with a system prompt on the first
#    turn. Add a check that the system prompt appears exactly once.
# 3. Port Pythia (`GPTNeoXForCausalLM`, `GPTNeoXLayer`) the same way. Which of the seven members change? Its
#    tokenizer is not in the package: which checks of step 1 could you run on tokenizer files you download?
# 4. Run notebook 11's training loop with `GPT2LLMBackbone` instead of Llama-2. Does the spliced image still sit
#    right after `<|endoftext|>`?
