# %% [markdown]
# # 01 · The abstract class `LLMBackbone`
#
# A VLA does not talk to Llama, Mistral or Qwen directly. It talks to one small interface, `LLMBackbone`, and
# every language model family implements that interface. The interface is short: a handful of members the
# vision-language model needs (embed tokens, run the model, say which block to shard, which dtype to use in half
# precision, which modules to unfreeze...) and two slots, `llm` and `tokenizer`. If a family forgets a member, you
# want to find out the moment you build it, not three hours into a training run. This notebook takes the class
# apart and shows how Python makes that promise enforceable.
#
# **What you will learn here**
# - why `LLMBackbone` is both an `nn.Module` and an `ABC`, and what each base buys;
# - which eight members are abstract, and how `@property` and `@abstractmethod` combine;
# - that a missing member fails at construction time, with its name in the error — and the upstream OpenVLA
#   classes that fall into exactly this trap;
# - what `__init__`, `get_tokenizer()`, `embed_dim` and `pad_token_id` do, and why `pad_token_id` asks the tokenizer.

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
# ## Two bases: `nn.Module` and `ABC`
#
# The class line is `class LLMBackbone(nn.Module, ABC)`. Each base has a job:
#
# - **`nn.Module`**: the VLM stores the backbone as an attribute (`self.llm_backbone = ...`). Because it is a
#   module, PyTorch registers it as a child: its parameters show up in `vlm.parameters()`, `vlm.to(...)` moves and
#   casts it, `vlm.state_dict()` saves it, and FSDP can walk into it and shard its decoder layers.
# - **`ABC`**: its metaclass, `ABCMeta`, is what makes `@abstractmethod` *do* something. Python refuses to create an
#   instance of a class that still has abstract members.
#
# Mixing the two works because `nn.Module`'s metaclass is plain `type`, so `ABCMeta` wins without a conflict.

# %%
from abc import ABC, ABCMeta, abstractmethod

import torch
from torch import nn

from vla_backbone.base import LLMBackbone

print("metaclass:", type(LLMBackbone).__name__)
print("MRO:", [cls.__name__ for cls in LLMBackbone.__mro__])
assert type(nn.Module) is type and type(LLMBackbone) is ABCMeta
assert issubclass(LLMBackbone, nn.Module) and issubclass(LLMBackbone, ABC)


# %% [markdown]
# Why not just `nn.Module`? Because without `ABCMeta`, `@abstractmethod` is only a label. The class below marks
# `embed_input_ids` abstract and never implements it, yet Python builds an instance without a word — the mistake would
# surface much later, on the first forward pass.

# %%
class OnlyAModule(nn.Module):
    @abstractmethod
    def embed_input_ids(self, input_ids): ...


quietly_broken = OnlyAModule()
print("built without complaint:", type(quietly_broken).__name__)
assert type(OnlyAModule) is type and not getattr(OnlyAModule, "__abstractmethods__", None)

# %% [markdown]
# With `ABC` in the bases, the same omission is caught immediately: `LLMBackbone` itself cannot be instantiated,
# and the error lists every member a subclass still owes.

# %%
from vla_backbone.notebook import expect_error

with expect_error(TypeError, match="Can't instantiate abstract class LLMBackbone") as caught:
    LLMBackbone("llama2-7b-pure")
assert all(name in str(caught[0]) for name in LLMBackbone.__abstractmethods__)

# %% [markdown]
# ## The eight abstract members
#
# `ABCMeta` records the names a subclass must still define in `__abstractmethods__`. For `LLMBackbone` there are
# eight: four methods and four properties.
#
# | member | kind | what the VLM uses it for |
# |---|---|---|
# | `get_fsdp_wrapping_policy()` | method | which modules become FSDP units (notebook 10) |
# | `enable_gradient_checkpointing()` | method | trade compute for memory (notebook 08) |
# | `forward(...)` | method | run the model on token ids or on spliced embeddings (notebook 06) |
# | `embed_input_ids(input_ids)` | method | text embeddings, into which image patches are spliced (notebooks 06, 11) |
# | `prompt_builder_fn` | property | the prompt-builder *class* for this model (notebook 05) |
# | `transformer_layer_cls` | property | the decoder-layer class to wrap and checkpoint (notebooks 08, 10) |
# | `half_precision_dtype` | property | the dtype for mixed precision (notebook 09) |
# | `last_layer_finetune_modules` | property | what stays trainable in last-layer fine-tuning (notebook 09) |

# %%
abstract = set(LLMBackbone.__abstractmethods__)
print(sorted(abstract))
assert abstract == {
    "get_fsdp_wrapping_policy",
    "enable_gradient_checkpointing",
    "forward",
    "embed_input_ids",
    "prompt_builder_fn",
    "transformer_layer_cls",
    "half_precision_dtype",
    "last_layer_finetune_modules",
}

# %% [markdown]
# Which are properties and which are methods? The class dictionary tells: an abstract property is stored as a
# `property` object whose getter is abstract. The three members that are *not* abstract — `get_tokenizer`,
# `embed_dim`, `pad_token_id` — are implemented once, in the base class, for every family.

# %%
kinds = {name: type(LLMBackbone.__dict__[name]).__name__ for name in sorted(abstract)}
for name, kind in kinds.items():
    print(f"{name:30s} {kind}")

properties = {name for name, kind in kinds.items() if kind == "property"}
assert properties == {"prompt_builder_fn", "transformer_layer_cls", "half_precision_dtype", "last_layer_finetune_modules"}
assert abstract - properties == {"get_fsdp_wrapping_policy", "enable_gradient_checkpointing", "forward", "embed_input_ids"}
assert {"get_tokenizer", "embed_dim", "pad_token_id"}.isdisjoint(abstract)
assert isinstance(LLMBackbone.__dict__["embed_dim"], property) and isinstance(LLMBackbone.__dict__["pad_token_id"], property)


# %% [markdown]
# ## `@property` on top, `@abstractmethod` underneath
#
# Decorators apply bottom-up. `@abstractmethod` marks the function (it sets `__isabstractmethod__ = True`), then
# `@property` wraps it, and a property reports itself abstract whenever its getter is. That is the order the base
# class uses.

# %%
class Right(ABC):
    @property
    @abstractmethod
    def half_precision_dtype(self) -> torch.dtype: ...


print("abstract property:", Right.__dict__["half_precision_dtype"].__isabstractmethod__)
assert Right.__dict__["half_precision_dtype"].__isabstractmethod__ is True
assert Right.__abstractmethods__ == frozenset({"half_precision_dtype"})

# %% [markdown]
# The other order fails outright, while the class is being defined: `@abstractmethod` would have to write the flag
# onto a `property` object, whose `__isabstractmethod__` is read-only.

# %%
with expect_error(AttributeError, match="__isabstractmethod__"):

    class Wrong(ABC):
        @abstractmethod
        @property
        def half_precision_dtype(self) -> torch.dtype: ...


# %% [markdown]
# One subtlety: `ABCMeta` checks *names*, not kinds. A subclass that overrides an abstract property with an
# ordinary method satisfies the check, but every caller that reads `backbone.half_precision_dtype` now gets a bound
# method instead of a dtype. Keep the kind of the base class when you implement a member.

# %%
class MethodNotProperty(Right):
    def half_precision_dtype(self) -> torch.dtype:
        return torch.bfloat16


oops = MethodNotProperty()
print(type(oops.half_precision_dtype).__name__)
assert not MethodNotProperty.__abstractmethods__
assert not isinstance(oops.half_precision_dtype, torch.dtype)

# %% [markdown]
# ## A minimal concrete backbone
#
# To see what the base class itself does, implement all eight members as trivially as possible. Everything this
# subclass adds is a placeholder; everything it inherits is what every real family inherits too.

# %%
from vla_backbone.prompting import PurePromptBuilder


class MinimalBackbone(LLMBackbone):
    def get_fsdp_wrapping_policy(self):
        return None

    def enable_gradient_checkpointing(self) -> None:
        pass

    def forward(self, input_ids=None, **kwargs):
        return self.llm(input_ids=input_ids, **kwargs)

    def embed_input_ids(self, input_ids):
        return self.llm.get_input_embeddings()(input_ids)

    @property
    def prompt_builder_fn(self):
        return PurePromptBuilder

    @property
    def transformer_layer_cls(self):
        return nn.Module

    @property
    def half_precision_dtype(self):
        return torch.bfloat16

    @property
    def last_layer_finetune_modules(self):
        return ()


assert MinimalBackbone.__abstractmethods__ == frozenset()

# %% [markdown]
# ## A forgotten member fails at construction, by name
#
# Now delete one member at a time from that namespace and build the class again. Every one of the eight variants
# raises `TypeError` the moment you call it, and the message names exactly the member that is missing.

# %%
for missing in sorted(abstract):
    namespace = {name: MinimalBackbone.__dict__[name] for name in abstract if name != missing}
    Incomplete = type(f"Without_{missing}", (LLMBackbone,), namespace)
    assert Incomplete.__abstractmethods__ == frozenset({missing})
    with expect_error(TypeError, match=missing):
        Incomplete("llama2-7b-pure")

# %% [markdown]
# ## The upstream defect: OpenVLA's Mistral and Phi cannot be built
#
# OpenVLA added `last_layer_finetune_modules` to the abstract class for its last-layer fine-tuning stage, and
# implemented it for Llama-2. The Mistral and Phi subclasses kept the three properties they had before and never
# got the fourth. Below is a class shaped like the upstream Mistral backbone: it subclasses `HFCausalLLMBackbone`
# and defines `prompt_builder_fn`, `transformer_layer_cls` and `half_precision_dtype`, as upstream does.
#
# The `TypeError` comes from `object.__new__`, *before* `__init__` runs: no config is read and no weights are
# loaded. That is the point of the ABC — the mistake costs microseconds, not a 14 GB download.

# %%
from transformers import MistralForCausalLM
from transformers.models.mistral.modeling_mistral import MistralDecoderLayer

from vla_backbone.hf_causal import HFCausalLLMBackbone
from vla_backbone.prompting import MistralInstructPromptBuilder

init_calls = []


class UpstreamStyleMistral(HFCausalLLMBackbone):
    def __init__(self, llm_backbone_id: str, **kwargs) -> None:
        init_calls.append(llm_backbone_id)
        super().__init__(llm_backbone_id, llm_family="mistral", llm_cls=MistralForCausalLM,
                         hf_hub_path="mistralai/Mistral-7B-v0.1", **kwargs)

    @property
    def prompt_builder_fn(self):
        return MistralInstructPromptBuilder

    @property
    def transformer_layer_cls(self):
        return MistralDecoderLayer

    @property
    def half_precision_dtype(self):
        return torch.bfloat16


print("still abstract:", set(UpstreamStyleMistral.__abstractmethods__))
with expect_error(TypeError, match="last_layer_finetune_modules"):
    UpstreamStyleMistral("mistral-v0.1-7b-pure")
assert init_calls == [], "__init__ never ran: nothing was loaded"
assert UpstreamStyleMistral.__abstractmethods__ == frozenset({"last_layer_finetune_modules"})

# %% [markdown]
# Our `MistralLLMBackbone` and `PhiLLMBackbone` define the property (input embeddings, last decoder layer, LM head,
# like every other family), so they build — here as tiny replicas — and return three real modules of the model.

# %%
from vla_backbone import get_llm_backbone_and_tokenizer
from vla_backbone.families import MistralLLMBackbone, PhiLLMBackbone

for cls, backbone_id in ((MistralLLMBackbone, "mistral-v0.1-7b-instruct"), (PhiLLMBackbone, "phi-2-3b")):
    assert cls.__abstractmethods__ == frozenset()
    backbone, _ = get_llm_backbone_and_tokenizer(backbone_id)
    modules = backbone.last_layer_finetune_modules
    print(f"{type(backbone).__name__:20s}", [type(m).__name__ for m in modules])
    assert isinstance(backbone, cls) and len(modules) == 3
    assert modules[0] is backbone.llm.get_input_embeddings() and modules[1] is backbone.llm.model.layers[-1]
    assert modules[2] is backbone.llm.lm_head

# %% [markdown]
# ## `__init__`: an identifier and two empty slots
#
# The base constructor does three things: it calls `nn.Module.__init__` (without it, assigning a sub-module would
# fail), stores the backbone id as `identifier`, and sets `llm` and `tokenizer` to `None`. Filling them is the
# subclass's job — `HFCausalLLMBackbone` loads both (notebook 02). `get_tokenizer()` simply returns the slot.

# %%
minimal = MinimalBackbone("my-backbone-v0")
print("identifier:", minimal.identifier, "| llm:", minimal.llm, "| tokenizer:", minimal.get_tokenizer())
assert minimal.identifier == "my-backbone-v0"
assert minimal.llm is None and minimal.tokenizer is None and minimal.get_tokenizer() is None
assert list(minimal.children()) == []

# %% [markdown]
# Until the slot is filled, the concrete properties have nothing to read from: `embed_dim` asks `self.llm.config`,
# and `None` has no `config`. Watch the message, though. When a property of an `nn.Module` raises
# `AttributeError`, Python falls back to `nn.Module.__getattr__`, which looks for a parameter or sub-module of that
# name, finds none, and reports that `embed_dim` itself does not exist. The real cause, `llm` still being `None`,
# is gone from the message — worth remembering when a property on any module "disappears".

# %%
with expect_error(AttributeError, match="has no attribute 'embed_dim'"):
    minimal.embed_dim
assert "embed_dim" in dir(minimal) and minimal.llm is None

# %% [markdown]
# Fill the slots by hand with the tiny Llama replica: its real Llama-2 tokenizer and a tiny `LlamaForCausalLM`. We
# ask for float32 explicitly, as the backbone does: the checkpoint is stored in float16, and transformers 5 would
# load it as stored. Assigning a module to `self.llm` makes it a registered child (that is
# `nn.Module.__setattr__` at work), and `get_tokenizer()` now returns the very object stored.

# %%
from transformers import AutoTokenizer, LlamaForCausalLM

from vla_backbone.tiny import tiny_checkpoint

llama_dir = tiny_checkpoint("llama2")
minimal.llm = LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
minimal.tokenizer = AutoTokenizer.from_pretrained(llama_dir)

print("children:", [name for name, _ in minimal.named_children()], "| embed_dim:", minimal.embed_dim)
assert [name for name, _ in minimal.named_children()] == ["llm"]
assert minimal.get_tokenizer() is minimal.tokenizer and minimal.llm.dtype == torch.float32
assert sum(p.numel() for p in minimal.parameters()) == sum(p.numel() for p in minimal.llm.parameters())


# %% [markdown]
# ## Being a module pays off inside the VLM
#
# Here is the skeleton of a VLM: it owns a backbone and a projector. Because the backbone is an `nn.Module`, the
# VLM sees its parameters, saves them under the `llm_backbone.` prefix, and one `.to(torch.bfloat16)` on the VLM
# casts the language model too. FSDP relies on the same registration to find the decoder layers (notebook 10).

# %%
class ToyVLM(nn.Module):
    def __init__(self, llm_backbone: LLMBackbone, vision_dim: int = 1024) -> None:
        super().__init__()
        self.llm_backbone = llm_backbone
        self.projector = nn.Linear(vision_dim, llm_backbone.embed_dim)


vlm = ToyVLM(minimal)
n_llm = sum(p.numel() for p in minimal.parameters())
n_vlm = sum(p.numel() for p in vlm.parameters())
print(f"VLM parameters: {n_vlm} = {n_llm} (backbone) + {n_vlm - n_llm} (projector)")
assert n_vlm == n_llm + 1024 * 64 + 64
assert any(key.startswith("llm_backbone.llm.model.layers.0.") for key in vlm.state_dict())

vlm.to(torch.bfloat16)
assert minimal.llm.dtype == torch.bfloat16
vlm.to(torch.float32)

# %% [markdown]
# ## `embed_dim`: the width the projector aims at
#
# `embed_dim` is `llm.config.hidden_size`. The projector's one job is to map each vision patch feature (1024 wide
# here, like a ViT-L) to exactly that width, so that projected patches and text embeddings can sit side by side in
# one sequence. Below, 256 patches go through the projector and are placed after the BOS embedding; the shapes only
# line up because both ends agree on `embed_dim`.

# %%
patch_features = torch.randn(1, 256, 1024)
patches = vlm.projector(patch_features)

ids = minimal.tokenizer("What action should the robot take to pick up the cup?", return_tensors="pt").input_ids
text = minimal.embed_input_ids(ids)
sequence = torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)

print("patches", tuple(patches.shape), "| text", tuple(text.shape), "| spliced", tuple(sequence.shape))
assert minimal.embed_dim == minimal.llm.config.hidden_size == 64
assert patches.shape == (1, 256, minimal.embed_dim) and text.shape[-1] == minimal.embed_dim
assert sequence.shape == (1, 256 + ids.shape[1], minimal.embed_dim)

# %% [markdown]
# A projector built for another width fails at exactly this splice — which is why the VLM asks the backbone
# instead of hard-coding 4096.

# %%
wrong_projector = nn.Linear(1024, 4096)
with expect_error(RuntimeError, match="Sizes of tensors must match"):
    torch.cat([text[:, :1], wrong_projector(patch_features), text[:, 1:]], dim=1)

# %% [markdown]
# ## `pad_token_id` comes from the tokenizer, not the config
#
# Two objects carry a pad id: the tokenizer (`tokenizer.pad_token_id`) and the model config
# (`llm.config.pad_token_id`). The collator pads batches with what the *tokenizer* says, so that is the id that
# actually sits in the padded `input_ids`, and that is the one the base class returns.
#
# Llama-2 shows why the two can disagree. Its tokenizer ships without a PAD token. Straight from the checkpoint,
# both ids are `None`:

# %%
from transformers import AutoConfig

raw_tokenizer = AutoTokenizer.from_pretrained(llama_dir)
raw_config = AutoConfig.from_pretrained(llama_dir)
print("checkpoint: tokenizer pad =", raw_tokenizer.pad_token_id, "| config pad =", raw_config.pad_token_id)
assert raw_tokenizer.pad_token_id is None and raw_config.pad_token_id is None

# %% [markdown]
# The llama2 family adds `<PAD>` to the tokenizer first (it gets the next free id: Llama-2's words are ids 0 to
# 31999, so `<PAD>` is 32000) and only then copies that id into `config.pad_token_id`. After loading, both agree,
# and a padded batch contains exactly `backbone.pad_token_id`.

# %%
llama, llama_tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure")
batch = llama_tokenizer(["pick up the cup", "open the drawer next to the red block"], padding=True, return_tensors="pt")
print("backbone.pad_token_id =", llama.pad_token_id, "| config.pad_token_id =", llama.llm.config.pad_token_id)
print(batch.input_ids)

assert raw_tokenizer.vocab_size == len(raw_tokenizer) == 32000
assert llama_tokenizer.pad_token == "<PAD>" and llama.pad_token_id == llama_tokenizer.pad_token_id == 32000
assert llama.llm.config.pad_token_id == llama.pad_token_id
padded = batch.attention_mask == 0
assert padded.any() and (batch.input_ids[padded] == llama.pad_token_id).all()

# %% [markdown]
# Now change only the tokenizer, as a script that sets `tokenizer.pad_token = tokenizer.eos_token` would. The
# config still says 32000, but the batches now contain EOS ids in the padded positions — and `pad_token_id`
# follows the tokenizer, which is what code that masks padding needs to know.

# %%
drifted, drifted_tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure")
drifted_tokenizer.pad_token = drifted_tokenizer.eos_token
sentences = ["pick up the cup", "open the drawer next to the red block"]
batch = drifted_tokenizer(sentences, padding=True, return_tensors="pt")
print("backbone.pad_token_id =", drifted.pad_token_id, "| config.pad_token_id =", drifted.llm.config.pad_token_id)

assert drifted.pad_token_id == drifted_tokenizer.eos_token_id == 2
assert drifted.llm.config.pad_token_id == 32000
assert (batch.input_ids[batch.attention_mask == 0] == drifted.pad_token_id).all()

# %% [markdown]
# ## Every family, member by member
#
# The same eight members, answered by the five families. A few things stand out: all replicas have `embed_dim` 64
# (only width and depth are toy-sized; with `source="hub"` the same code prints the real widths). The PAD ids are the
# real ones: Qwen and OPT keep the PAD token their tokenizer ships with (`<|endoftext|>` = 151643 and `<pad>` = 1),
# while the other three get one appended after their last token (`<PAD>` = 32000 for Llama-2 and Mistral, `<|pad|>`
# = 50295 for phi-2). Every family asks for bfloat16.

# %%
import functools

from vla_backbone.registry import list_backbones

REPRESENTATIVES = ["llama2-7b-pure", "mistral-v0.1-7b-instruct", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]


@functools.lru_cache(maxsize=None)
def load(backbone_id: str):
    return get_llm_backbone_and_tokenizer(backbone_id)[0]


def members(backbone_id: str) -> dict:
    backbone = load(backbone_id)
    return {
        "class": type(backbone).__name__,
        "embed_dim": backbone.embed_dim,
        "pad_token_id": backbone.pad_token_id,
        "transformer_layer_cls": backbone.transformer_layer_cls.__name__,
        "half_precision_dtype": str(backbone.half_precision_dtype),
        "prompt_builder_fn": backbone.prompt_builder_fn.__name__,
        "last_layer_finetune_modules": [type(m).__name__ for m in backbone.last_layer_finetune_modules],
    }


table = {backbone_id: members(backbone_id) for backbone_id in REPRESENTATIVES}
for backbone_id, row in table.items():
    print(f"{backbone_id:26s} {row['embed_dim']:3d} {row['pad_token_id']:6d}  {row['transformer_layer_cls']:20s} "
          f"{row['half_precision_dtype']:15s} {row['prompt_builder_fn']}")

assert all(row["embed_dim"] == 64 for row in table.values())
assert [row["pad_token_id"] for row in table.values()] == [32000, 32000, 50295, 151643, 1]
assert [load(i).get_tokenizer().pad_token for i in REPRESENTATIVES] == [
    "<PAD>", "<PAD>", "<|pad|>", "<|endoftext|>", "<pad>"]
assert all(row["half_precision_dtype"] == "torch.bfloat16" for row in table.values())
assert [row["transformer_layer_cls"] for row in table.values()] == [
    "LlamaDecoderLayer", "MistralDecoderLayer", "PhiDecoderLayer", "Qwen2DecoderLayer", "OPTDecoderLayer"]
assert table["phi-2-3b"]["prompt_builder_fn"] == "PhiPromptBuilder"

# %% [markdown]
# **Try it.** Pick any registered id — the chat and Vicuna variants of Llama-2, the `-extra` Qwen id — and compare
# its members. In Jupyter the call below shows a dropdown; as a script it prints the first id.

# %%
from vla_backbone.notebook import explore


def show_members(backbone_id: str) -> dict:
    row = members(backbone_id)
    print(f"{'backbone id':28s} {backbone_id}")
    for name, value in row.items():
        print(f"{name:28s} {value}")
    return row


choices = REPRESENTATIVES + [i for i in list_backbones() if i not in REPRESENTATIVES]
first = explore(show_members, backbone_id=choices)
assert first == table["llama2-7b-pure"]

# %% [markdown]
# ## Summary
# - `LLMBackbone` is an `nn.Module` so the VLM registers, saves, casts and shards it, and an `ABC` so that
#   `@abstractmethod` is enforced; a plain module would accept the missing member silently.
# - Eight members are abstract: four methods (`get_fsdp_wrapping_policy`, `enable_gradient_checkpointing`,
#   `forward`, `embed_input_ids`) and four properties (`prompt_builder_fn`, `transformer_layer_cls`,
#   `half_precision_dtype`, `last_layer_finetune_modules`), written `@property` over `@abstractmethod`.
# - A subclass missing any of them raises `TypeError` naming it, before `__init__` runs; upstream OpenVLA's Mistral
#   and Phi classes hit this with `last_layer_finetune_modules`, ours define it.
# - The base class stores `identifier`, leaves `llm` and `tokenizer` as `None` for subclasses, and derives
#   `embed_dim` from `llm.config.hidden_size` and `pad_token_id` from the tokenizer.
#
# ## Exercises
# 1. Write `UpstreamStyleMistral` again, this time subclassing our `MistralLLMBackbone` but re-declaring
#    `last_layer_finetune_modules` as an abstract property. Does the `TypeError` come back? What does
#    `__abstractmethods__` say?
# 2. Give `MinimalBackbone` a real `get_fsdp_wrapping_policy` and `transformer_layer_cls` for the tiny Llama
#    (hint: `LlamaDecoderLayer`), and check that the policy returns `True` for a decoder layer and `False` for the
#    embedding when called with `recurse=False`.
# 3. Load `qwen25-0_5b-extra` and compare `embed_dim`, `pad_token_id` and the number of embedding rows with
#    `qwen25-0_5b-pure`. Which differ, and why?
# 4. Replace `vlm.projector` by a two-layer MLP (`Linear`, `GELU`, `Linear`) whose output width is read from
#    `embed_dim`, and check it works unchanged for every family in `REPRESENTATIVES`.
