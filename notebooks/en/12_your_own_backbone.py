# %% [markdown]
# # 12 · Add your own backbone
#
# Porting OpenVLA to a new language model means writing one more family: a small class that tells
# `HFCausalLLMBackbone` which HuggingFace model to load, which block is a decoder layer, how prompts look, and
# which modules to fine-tune last. The hard part is not the class but the decisions around it, above all the BOS
# token the VLM splices the image after. This notebook adds a sixth family to the package, GPT-NeoX (the Pythia
# models, ungated, 70M parameters and up), from the tokenizer to the FSDP plan, without editing a single file of
# the package: everything is defined here and registered only for as long as we need it. At the end the new family
# passes the same checks every built-in family passes. Assignment A1 asks you to do the same for GPT-2.
#
# **What you will learn here**
# - what a family must supply: five class attributes and two properties;
# - how to decide a tokenizer's BOS behaviour, with both ways out of the BOS check;
# - how to build an offline tiny checkpoint (config, seeded weights, tokenizer) in a temporary directory;
# - how to write the `FamilyBackbone` subclass, a prompt builder and a registry entry for it;
# - how to check the result: instantiable, BOS, PAD, resize, input-grad hook, loss, last-layer modules, FSDP units.

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
# | `decoder_layer_path` | the block FSDP wraps and checkpointing recomputes | `"...modeling_llama.LlamaDecoderLayer"` |
# | `pad_token` | a PAD token to add, if the tokenizer has none | `"<PAD>"` |
# | `prompt_builder_fn` | the prompt builder class (property) | `PurePromptBuilder` for `-pure` ids |
# | `last_layer_finetune_modules` | input embeddings, last decoder layer, LM head (property) | three modules |
#
# The two properties are the only members still abstract in `FamilyBackbone`; the class paths are strings so that
# `import vla_backbone` does not import every model class of transformers.

# %%
import torch

from vla_backbone.families import FAMILIES
from vla_backbone.families._common import FamilyBackbone

for family in FAMILIES:
    print(f"{family.family:8s} {family.llm_cls_path:34s} {family.decoder_layer_path.rsplit('.', 1)[1]:20s} pad={family.pad_token!r}")

# %%
assert FamilyBackbone.__abstractmethods__ == {"prompt_builder_fn", "last_layer_finetune_modules"}
assert all(not family.__abstractmethods__ for family in FAMILIES)
assert {family.family for family in FAMILIES} == {"llama2", "mistral", "phi", "qwen25", "opt"}

# %% [markdown]
# ## The architecture: GPT-NeoX
#
# transformers ships `GPTNeoXForCausalLM`, whose decoder layer is `GPTNeoXLayer`; no family of the package uses it.
# A tiny configuration (hidden size 64, two layers, four heads) builds in milliseconds. Its modules have their own
# names: the layers live in `gpt_neox.layers` and the token embeddings are `gpt_neox.embed_in`. The head's name even
# depends on the transformers version (`embed_out` on 4.57, `lm_head` on recent 5.x), so our code will reach the
# embeddings and the head through `get_input_embeddings()` and `get_output_embeddings()`, which work on both.

# %%
import time

from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXLayer

from vla_backbone import compat

assert not any("GPTNeoX" in family.llm_cls_path for family in FAMILIES)
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
        "max_position_embeddings": 2048}
start = time.perf_counter()
toy = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=1024, **TINY))
build_s = time.perf_counter() - start
head_name = "lm_head" if hasattr(toy, "lm_head") else "embed_out"
print(f"built in {build_s * 1000:.0f} ms;", [name for name, _ in toy.named_children()], [name for name, _ in toy.gpt_neox.named_children()])
print(f"transformers {compat.TRANSFORMERS_VERSION}: the head is `{head_name}`")

# %%
assert build_s < 2.0
assert all(isinstance(layer, GPTNeoXLayer) for layer in toy.gpt_neox.layers) and len(toy.gpt_neox.layers) == 2
assert toy.get_input_embeddings() is toy.gpt_neox.embed_in
assert toy.get_output_embeddings() is getattr(toy, head_name)
del toy

# %% [markdown]
# ## Step 1 · A tokenizer, and the BOS decision
#
# The package ships the real tokenizer files of its five families, but not Pythia's (GPT-NeoX-20B's byte-level BPE,
# 50k tokens). Our tiny replica gets a stand-in trained in code: a byte-level BPE on a few robot instructions, with
# GPT-NeoX's single special token `<|endoftext|>` at id 0, as in the real one, padded to 1024 entries with
# `<unused_i>` tokens that no merge produces. What matters below is what the real tokenizer does too: it adds no BOS.

# %%
import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOT = "<|endoftext|>"
CORPUS = [
    "pick up the red cup", "open the top drawer and put the sponge inside", "close the microwave door",
    "move the blue block to the left of the bowl", "stack the green block on the yellow block",
    "What action should the robot take to pick up the cup?", "Test 123",
]


def train_tokenizer(vocab_size: int = 1024) -> Tokenizer:
    """A byte-level BPE with one special token, no post-processor yet."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    data = json.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    for index in range(len(vocab), vocab_size):
        vocab[f"<unused_{index}>"] = index
    return Tokenizer.from_str(json.dumps(data))


base_tokenizer = train_tokenizer()
print("vocabulary:", base_tokenizer.get_vocab_size(), " <|endoftext|> id:", base_tokenizer.token_to_id(EOT))
assert base_tokenizer.get_vocab_size() == 1024 and base_tokenizer.token_to_id(EOT) == 0

# %% [markdown]
# Wrapped as a transformers tokenizer, with `<|endoftext|>` as BOS, EOS and UNK, it adds nothing to a text, like the
# real GPT-NeoX tokenizer and like phi-2's (the package's phi-2 replica ships the real files: the same three roles
# for `<|endoftext|>`, no BOS added). `check_bos` (notebook 03) therefore rejects it.

# %%
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error
from vla_backbone.prompting import PhiPromptBuilder
from vla_backbone.registry import checkpoint_path

ROLES = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}


def as_transformers(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **ROLES)


plain = as_transformers(base_tokenizer)
print("'Test 123' ->", plain("Test 123").input_ids, "with special tokens,", plain("Test 123", add_special_tokens=False).input_ids, "without")
phi_tokenizer = AutoTokenizer.from_pretrained(checkpoint_path("phi-2-3b"))
assert plain("Test 123").input_ids == plain("Test 123", add_special_tokens=False).input_ids
assert phi_tokenizer.bos_token == phi_tokenizer.eos_token == phi_tokenizer.unk_token == EOT
assert phi_tokenizer("Test 123").input_ids == phi_tokenizer("Test 123", add_special_tokens=False).input_ids
with expect_error(TokenizerBOSError, match="does not prepend BOS"):
    check_bos(plain, "pythia-70m")

# %% [markdown]
# Two ways out, both already used by the package:
#
# - **Option A: the tokenizer prepends BOS.** A `TemplateProcessing` post-processor puts `<|endoftext|>` in front of
#   every text encoded with special tokens, as the real Llama-2 and OPT tokenizers do. `check_bos` passes.
# - **Option B: the prompt builder writes BOS.** The tokenizer stays as it is, the ids go into `SPECIAL_CASES` so the
#   check is skipped, and the prompt builder starts the first turn with `<|endoftext|>`, as phi-2's does.

# %%
with_bos = Tokenizer.from_str(base_tokenizer.to_str())
with_bos.post_processor = processors.TemplateProcessing(
    single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B", special_tokens=[(EOT, 0)]
)
option_a = as_transformers(with_bos)
print("'Test 123' ->", option_a("Test 123").input_ids, "with special tokens,", option_a("Test 123", add_special_tokens=False).input_ids, "without")
check_bos(option_a, "pythia-70m")
assert option_a("Test 123").input_ids == [0] + plain("Test 123").input_ids
for backbone_id, bos in (("llama2-7b-pure", "<s>"), ("opt-125m", "</s>")):
    shipped = AutoTokenizer.from_pretrained(checkpoint_path(backbone_id))
    assert type(shipped.backend_tokenizer.post_processor).__name__ == "TemplateProcessing"
    assert shipped.convert_ids_to_tokens(shipped("Test 123").input_ids)[0] == bos
assert "phi-2-3b" in SPECIAL_CASES and PhiPromptBuilder("openvla").add_turn("human", "hi").startswith(EOT)

# %% [markdown]
# **We pick option A.** `check_bos` then keeps guarding the family: a tokenizer that loses its BOS fails loudly
# at load time instead of shifting the image by one token. No package-wide set has to change, and every text
# starts with BOS, not only prompts that came through the builder (the weakness notebook 11 showed for Qwen).
# The price: the guarantee lives in the tokenizer files we save. A tokenizer loaded from elsewhere that adds no
# BOS is rejected by `check_bos` (loudly, which is the point); re-save it with this post-processor, or take
# option B. Option B is written out in step 3 and in the "Try it" at the end.
#
# ## Step 2 · A tiny checkpoint in a temporary directory
#
# A checkpoint is a directory with `config.json`, the weights and the tokenizer files, exactly what
# `from_pretrained` reads. We seed the weights so that every run builds the same model, save everything into a
# fresh temporary directory, and load it back with `AutoTokenizer` and the model class. A second directory holds
# the same model with the option-B tokenizer, for the comparisons later on.

# %%
import os
import tempfile

workdir = tempfile.TemporaryDirectory(prefix="tiny_gpt_neox_")


def save_checkpoint(tokenizer: PreTrainedTokenizerFast, name: str) -> str:
    path = os.path.join(workdir.name, name)
    config = GPTNeoXConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, **TINY)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPTNeoXForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


start = time.perf_counter()
CHECKPOINT = save_checkpoint(option_a, "option_a")
CHECKPOINT_B = save_checkpoint(plain, "option_b")
print(f"saved in {time.perf_counter() - start:.2f} s:", sorted(os.listdir(CHECKPOINT)))

# %% [markdown]
# Reloaded, the tokenizer still prepends BOS. We check the encoded ids, never a flag such as `add_bos_token`: on
# transformers 5 the reloaded tokenizer reports the flag as False although it prepends BOS (4.57 has no such flag
# here at all; notebook 03 has the details). The weights come back bit for bit.

# %%
reloaded = AutoTokenizer.from_pretrained(CHECKPOINT)
reloaded_model = GPTNeoXForCausalLM.from_pretrained(CHECKPOINT)
check_bos(reloaded, "pythia-70m")
print("ids:", reloaded("Test 123").input_ids, "| add_bos_token flag:", getattr(reloaded, "add_bos_token", "(none on this version)"))
assert getattr(reloaded, "add_bos_token", False) is False
with torch.random.fork_rng(devices=[]):
    torch.manual_seed(0)
    fresh = GPTNeoXForCausalLM(reloaded_model.config)
for name, tensor in fresh.state_dict().items():
    torch.testing.assert_close(reloaded_model.state_dict()[name], tensor, rtol=0, atol=0)
assert os.path.isfile(os.path.join(CHECKPOINT, "config.json")) and reloaded_model.config.hidden_size == 64
assert reloaded("Test 123").input_ids == option_a("Test 123").input_ids
del reloaded_model, fresh

# %% [markdown]
# ## Step 3 · A prompt builder
#
# Every family names its prompt format. Ours is a plain question-and-answer template, `Q: ...` then `A: ...`,
# built on `TurnPromptBuilder`, which already handles alternating roles, `<image>` removal and stripping. A
# builder only says how a human turn is wrapped and which EOS ends an answer. Setting `bos` as well matters:
# `finish()` strips a leading `bos` so that BOS never appears twice.

# %%
from vla_backbone.errors import PromptTurnError
from vla_backbone.prompting import TurnPromptBuilder, openvla_action_prompt


class QAPromptBuilder(TurnPromptBuilder):
    bos = eos = EOT

    def wrap_human(self, message: str) -> str:
        return f"Q: {message}\nA: "


question = openvla_action_prompt("Pick up the red cup")
builder = QAPromptBuilder("openvla")
print(repr(builder.get_potential_prompt(question)))
assert builder.get_potential_prompt(question) == "Q: What action should the robot take to pick up the red cup?\nA:"
assert builder.add_turn("human", "<image>\n" + question) == f"Q: {question}\nA: "
assert builder.add_turn("gpt", "move left") == f"move left{EOT}"
assert builder.get_prompt() == f"Q: {question}\nA: move left{EOT}"
assert builder.get_potential_prompt("and then?") == f"Q: {question}\nA: move left{EOT}Q: and then?\nA:"
with expect_error(PromptTurnError, match="must come from 'human'"):
    builder.add_turn("gpt", "again")


# %% [markdown]
# With option A, the tokenizer supplies BOS, so the prompt's ids start with exactly one `<|endoftext|>`. Option B's
# builder writes `<|endoftext|>` itself and keeps it (phi-2's recipe: override `first_human_turn` and `finish`).
# Paired with its own tokenizer it yields the very same ids; paired with option A's tokenizer, BOS appears twice.

# %%
class QAWithBOSPromptBuilder(QAPromptBuilder):
    def first_human_turn(self, message: str) -> str:
        return self.bos + self.wrap_human(message)

    def finish(self, prompt: str) -> str:
        return prompt.rstrip()


def prompt_ids(builder_cls, tokenizer) -> list[int]:
    builder = builder_cls("openvla")
    builder.add_turn("human", question)
    return tokenizer(builder.get_prompt()).input_ids


ids_a = prompt_ids(QAPromptBuilder, option_a)
ids_b = prompt_ids(QAWithBOSPromptBuilder, plain)
ids_both = prompt_ids(QAWithBOSPromptBuilder, option_a)
print("option A:", ids_a[:5], " option B:", ids_b[:5], " both:", ids_both[:5])
assert ids_a == ids_b and ids_a[0] == 0 and ids_a[1] != 0
assert ids_both[:2] == [0, 0]

# %% [markdown]
# **Try it.** Change the template in `wrap_human` to `f"User: {message}\nRobot: "` and re-run the two cells above:
# the string asserts fail, since they pin the template down character by character, while the token-level asserts
# keep passing, because the BOS rule does not depend on the wording. The contract in step 7 checks the prompt again,
# whatever template you leave here.

# %% [markdown]
# ## Step 4 · The subclass
#
# Now the family itself. The registry at the top maps backbone ids to the hub repos of the real Pythia weights;
# `hf_hub_path=` overrides that path with our checkpoint. The byte-level tokenizer has no PAD token, so, like phi-2,
# the family adds a token of its own, `<|pad|>`, which keeps padding apart from EOS. `last_layer_finetune_modules`
# uses the generic accessors, so it works whichever name the head has.

# %%
from typing import Sequence

from torch import nn

# === Registry: backbone id -> HuggingFace hub repo ===
PYTHIA_MODELS = {
    "pythia-70m": "EleutherAI/pythia-70m",
    "pythia-160m": "EleutherAI/pythia-160m",
    "pythia-410m": "EleutherAI/pythia-410m",
    "pythia-1b": "EleutherAI/pythia-1b",
}


class GPTNeoXLLMBackbone(FamilyBackbone):
    family = "gpt_neox"
    models = PYTHIA_MODELS
    llm_cls_path = "transformers.GPTNeoXForCausalLM"
    decoder_layer_path = "transformers.models.gpt_neox.modeling_gpt_neox.GPTNeoXLayer"
    pad_token = "<|pad|>"

    @property
    def prompt_builder_fn(self) -> type[TurnPromptBuilder]:
        return QAPromptBuilder

    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.get_input_embeddings(), self.llm.gpt_neox.layers[-1], self.llm.get_output_embeddings())


backbone = GPTNeoXLLMBackbone("pythia-70m", hf_hub_path=CHECKPOINT)
tokenizer = backbone.get_tokenizer()
print(type(backbone.llm).__name__, "| tokens:", len(tokenizer), "| embedding rows:", backbone.llm.get_input_embeddings().weight.shape[0],
      "| pad id:", backbone.pad_token_id)

# %%
assert isinstance(backbone.llm, GPTNeoXForCausalLM) and backbone.transformer_layer_cls is GPTNeoXLayer
assert len(tokenizer) == 1025 and tokenizer.pad_token == "<|pad|>" and backbone.pad_token_id == 1024
assert backbone.llm.get_input_embeddings().weight.shape[0] == 1088
assert backbone.half_precision_dtype is torch.bfloat16

# %% [markdown]
# The parent checks the id against `models`, and an incomplete subclass fails at construction with the names of
# the members it still lacks. That is exactly the defect of upstream OpenVLA's Mistral and Phi classes
# (notebook 01), caught before any weight is loaded.

# %%
from vla_backbone.errors import UnknownBackboneError

with expect_error(UnknownBackboneError, match="Known gpt_neox ids"):
    GPTNeoXLLMBackbone("llama2-7b-pure", hf_hub_path=CHECKPOINT)


class Incomplete(FamilyBackbone):
    family, models = "gpt_neox", PYTHIA_MODELS
    llm_cls_path, decoder_layer_path = GPTNeoXLLMBackbone.llm_cls_path, GPTNeoXLLMBackbone.decoder_layer_path

    @property
    def prompt_builder_fn(self):
        return QAPromptBuilder


with expect_error(TypeError, match="last_layer_finetune_modules"):
    Incomplete("pythia-70m", hf_hub_path=CHECKPOINT)

# %% [markdown]
# ## Step 5 · A registry entry
#
# `get_llm_backbone_and_tokenizer(id)` finds the family through `vla_backbone.registry.LLM_BACKBONES`, a dict from
# backbone id to family class. Inside the package a new family becomes permanent by adding its class to `FAMILIES`
# in `vla_backbone/families/__init__.py`. Here we only borrow the registry: a context manager inserts our ids and
# removes them again, even if something inside fails. `source=` points at our checkpoint; `source="tiny"` would
# need a `TinySpec` for the family in `vla_backbone.tiny.TINY_SPECS` (assignment A1 does that for GPT-2).

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


with registered(GPTNeoXLLMBackbone) as added:
    print("registered:", added)
    assert set(PYTHIA_MODELS) <= set(vla_backbone.list_backbones())
    assert hub_path("pythia-70m") == "EleutherAI/pythia-70m"
    loaded, loaded_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("pythia-160m", source=CHECKPOINT)
    with expect_error(ValueError, match="No tiny replica for family 'gpt_neox'"):
        vla_backbone.get_llm_backbone_and_tokenizer("pythia-70m", source="tiny")
print(type(loaded).__name__, loaded.identifier, "| after the block:", "pythia-160m" in vla_backbone.list_backbones())

# %%
assert isinstance(loaded, GPTNeoXLLMBackbone) and loaded.identifier == "pythia-160m"
assert loaded_tokenizer is loaded.get_tokenizer()
assert not any(backbone_id.startswith("pythia") for backbone_id in vla_backbone.list_backbones())
with expect_error(UnknownBackboneError, match="Unknown backbone id 'pythia-70m'"):
    vla_backbone.get_llm_backbone_and_tokenizer("pythia-70m", source=CHECKPOINT)

# %% [markdown]
# ## Step 6 · The FSDP policy
#
# `HFCausalLLMBackbone.get_fsdp_wrapping_policy()` wraps every module of class `transformer_layer_cls`, which
# `decoder_layer_path` names. `wrap_plan` (notebook 10) previews the units without starting any process: the root,
# which keeps the embeddings, the final norm and the head, plus one unit per `GPTNeoXLayer`.

# %%
from vla_backbone.fsdp import unit_parameter_counts, wrap_plan

plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
counts = unit_parameter_counts(backbone, backbone.get_fsdp_wrapping_policy())
for unit, numel in counts.items():
    print(f"  {unit or '(root)':24s} {numel:>8,} parameters")
assert plan == ["", "llm.gpt_neox.layers.0", "llm.gpt_neox.layers.1"]
assert sum(counts.values()) == sum(p.numel() for p in backbone.parameters())
root_modules = [backbone.llm.get_input_embeddings(), backbone.llm.gpt_neox.final_layer_norm, backbone.llm.get_output_embeddings()]
assert counts[""] == sum(p.numel() for module in root_modules for p in module.parameters())

# %% [markdown]
# ## Step 7 · The contract every family passes
#
# The package's tests load every registered id and check the same list of properties. We write that list as one
# function, so it can run on our family and on the built-in ones alike. Each check returns a verdict and a short
# detail; "skipped" marks a check that does not apply (the BOS check for a special case, the prompt check for a
# tokenizer without any BOS token). The last check ties back to notebook 11: the prompt the builder produces must
# start with exactly one BOS, since the image goes right after it.

# %%
from vla_backbone.registry import backbone_class, checkpoint_path


def contract(family_cls, backbone_id: str, path: str) -> dict:
    """Check `family_cls(backbone_id, hf_hub_path=path)` the way the package tests check every family."""
    results = {}
    missing = sorted(family_cls.__abstractmethods__)
    results["instantiable"] = (not missing, ", ".join(missing) or "no abstract members left")
    if missing:
        return results
    try:
        backbone = family_cls(backbone_id, hf_hub_path=path)
    except TokenizerBOSError as error:
        results["BOS check"] = (False, str(error).split(":")[1].split(".")[0].strip())
        return results
    tokenizer, llm = backbone.get_tokenizer(), backbone.llm
    results["BOS check"] = (True, "skipped (SPECIAL_CASES)" if backbone_id in SPECIAL_CASES else "passed")
    results["embed_dim"] = (backbone.embed_dim == llm.config.hidden_size, str(backbone.embed_dim))
    results["pad_token_id"] = (backbone.pad_token_id is not None and backbone.pad_token_id == llm.config.pad_token_id,
                               str(backbone.pad_token_id))
    rows = llm.get_input_embeddings().weight.shape[0]
    results["embeddings % 64"] = (rows % 64 == 0 and rows >= len(tokenizer), f"{rows} rows for {len(tokenizer)} tokens")
    results["input-grad hook"] = (compat.has_input_grad_hook(llm), "training mode")
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", question)
    builder.add_turn("gpt", "move left")
    ids = torch.tensor([tokenizer(builder.get_prompt()).input_ids])
    loss = backbone(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
    results["finite loss"] = (bool(torch.isfinite(loss)), f"{loss.item():.3f}")
    layers = [name for name, module in backbone.named_modules() if isinstance(module, backbone.transformer_layer_cls)]
    embeddings, last, head = backbone.last_layer_finetune_modules
    results["last-layer modules"] = (
        embeddings is llm.get_input_embeddings() and head is llm.get_output_embeddings()
        and last is backbone.get_submodule(layers[-1]) and len(layers) == llm.config.num_hidden_layers,
        f"last layer: {layers[-1]}",
    )
    plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
    in_layer_list = all(isinstance(backbone.get_submodule(unit.rpartition(".")[0]), nn.ModuleList) for unit in plan[1:])
    results["FSDP units"] = (plan == ["", *layers] and len(layers) == llm.config.num_hidden_layers and in_layer_list,
                             f"{len(plan) - 1} units, first: {plan[1]}")
    bos, first = tokenizer.bos_token_id, ids[0, :2].tolist()
    results["one BOS in front"] = (True, "skipped (no BOS token)") if bos is None else (
        first[0] == bos and first[1] != bos, f"starts {first}")
    return results


def show(results: dict) -> list[str]:
    for check, (ok, detail) in results.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {check:20s} {detail}")
    return [check for check, (ok, _) in results.items() if not ok]


ALL_CHECKS = ["instantiable", "BOS check", "embed_dim", "pad_token_id", "embeddings % 64", "input-grad hook",
              "finite loss", "last-layer modules", "FSDP units", "one BOS in front"]
ours = contract(GPTNeoXLLMBackbone, "pythia-70m", CHECKPOINT)
assert show(ours) == [] and list(ours) == ALL_CHECKS

# %% [markdown]
# The same function on one id of every built-in family, loaded from the package's own tiny replicas: all pass, so
# the contract asks nothing that the package's own families do not already satisfy. phi-2 and Qwen pass the BOS
# check as special cases; Qwen has no BOS token at all, so its prompt check does not apply.

# %%
for backbone_id in ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]:
    results = contract(backbone_class(backbone_id), backbone_id, checkpoint_path(backbone_id))
    verdicts = {check: detail for check, (_, detail) in results.items()}
    print(f"{backbone_id:22s} {'all pass' if all(ok for ok, _ in results.values()) else 'FAILS'}   "
          f"BOS check: {verdicts['BOS check']}; one BOS in front: {verdicts['one BOS in front']}")
    assert all(ok for ok, _ in results.values()) and list(results) == ALL_CHECKS
    assert (verdicts["BOS check"] == "passed") == (backbone_id not in SPECIAL_CASES)

# %% [markdown]
# The package ships the same promises as one function, `vla_backbone.contract.check_backbone_contract`: the
# package's own tests (`tests/test_families.py`) run it on every registered id. It raises an `AssertionError` that
# says what is wrong, so it doubles as a one-line test for a family of your own.

# %%
from vla_backbone.contract import check_backbone_contract
from vla_backbone.notebook import expect_error

check_backbone_contract(GPTNeoXLLMBackbone("pythia-70m", hf_hub_path=CHECKPOINT))
lopsided = GPTNeoXLLMBackbone("pythia-70m", hf_hub_path=CHECKPOINT)
lopsided.tokenizer.padding_side = "left"
with expect_error(AssertionError, match="pads on the left"):
    check_backbone_contract(lopsided)

# %% [markdown]
# ## Try it: break the family on purpose
#
# Each variant below changes one decision of this notebook. Pick one and see which checks fail; the cell first
# runs every variant and asserts the expected failures. Then make the same change by hand in the cells above
# (for example, set `pad_token = None` in step 4, or use `plain` instead of `option_a` in step 2) and re-run.
#
# The last variant is option B done properly: the tokenizer without BOS, the builder that writes it, and the id
# added to `SPECIAL_CASES` for the duration of one `with` block. It passes, with the BOS check skipped.
#
# The checkpoints stay in their temporary directory while the kernel runs, so the drop-down keeps working after
# "Run All"; Python deletes the directory when the kernel shuts down (`workdir.cleanup()` deletes it sooner).

# %%
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXAttention

from vla_backbone.notebook import explore


@contextlib.contextmanager
def special_case(backbone_id: str):
    """Skip the BOS check for `backbone_id` while the block runs."""
    SPECIAL_CASES.add(backbone_id)
    try:
        yield
    finally:
        SPECIAL_CASES.discard(backbone_id)


class NoPad(GPTNeoXLLMBackbone):
    pad_token = None


class AttentionAsLayer(GPTNeoXLLMBackbone):
    decoder_layer_path = "transformers.models.gpt_neox.modeling_gpt_neox.GPTNeoXAttention"


class BOSTwice(GPTNeoXLLMBackbone):
    @property
    def prompt_builder_fn(self):
        return QAWithBOSPromptBuilder


class OptionB(BOSTwice):
    pass


VARIANTS = {
    "as written": (GPTNeoXLLMBackbone, CHECKPOINT, set()),
    "tokenizer without BOS": (GPTNeoXLLMBackbone, CHECKPOINT_B, {"BOS check"}),
    "no last_layer_finetune_modules": (Incomplete, CHECKPOINT, {"instantiable"}),
    "no PAD token": (NoPad, CHECKPOINT, {"pad_token_id"}),
    "attention as decoder layer": (AttentionAsLayer, CHECKPOINT, {"last-layer modules", "FSDP units"}),
    "template writes BOS too": (BOSTwice, CHECKPOINT, {"one BOS in front"}),
    "option B (special case)": (OptionB, CHECKPOINT_B, set()),
}


def try_variant(variant: str) -> list[str]:
    family_cls, path, _ = VARIANTS[variant]
    context = special_case("pythia-70m") if family_cls is OptionB else contextlib.nullcontext()
    with context:
        return show(contract(family_cls, "pythia-70m", path))


for variant, (_, _, expected) in VARIANTS.items():
    with contextlib.redirect_stdout(None):
        assert set(try_variant(variant)) == expected, variant
assert "pythia-70m" not in SPECIAL_CASES
failed_checks = explore(try_variant, variant=list(VARIANTS))
assert failed_checks == []

# %% [markdown]
# ## Summary
# - A family is five class attributes (`family`, `models`, `llm_cls_path`, `decoder_layer_path`, `pad_token`) and two
#   properties (`prompt_builder_fn`, `last_layer_finetune_modules`); `FamilyBackbone` and `HFCausalLLMBackbone` do
#   the rest.
# - Decide BOS first: either the tokenizer prepends it (a `TemplateProcessing` post-processor; `check_bos` passes
#   and keeps guarding) or the prompt builder writes it and the id joins `SPECIAL_CASES`.
# - A tiny checkpoint (config, seeded weights, tokenizer) in a temporary directory loads like any other through
#   `hf_hub_path=` or `source=`; a registry entry can be borrowed with a context manager.
# - Reach modules through `get_input_embeddings()` / `get_output_embeddings()` where names differ between
#   transformers versions; check the FSDP plan and the contract before training anything.
#
# ## Exercises
# 1. Add a `TinySpec` for `gpt_neox` to `vla_backbone.tiny.TINY_SPECS` (as assignment A1 does for GPT-2), so that
#    `get_llm_backbone_and_tokenizer("pythia-70m")` works with the default `source="tiny"`: point its
#    `tokenizer_dir` at the option-A tokenizer saved in step 2. Where does your BOS decision live now?
# 2. Register an extra id ending in `-chat` and give it a second prompt builder, with a system prompt on the first
#    turn. Extend `contract` with a check that the system prompt appears exactly once.
# 3. Port Falcon (`FalconForCausalLM`, `FalconDecoderLayer`) the same way. Which of the seven members change, and
#    which module names does `last_layer_finetune_modules` need?
# 4. Run notebook 11's training loop with `GPTNeoXLLMBackbone` instead of Llama-2. Does the spliced image still sit
#    right after `<|endoftext|>`?
