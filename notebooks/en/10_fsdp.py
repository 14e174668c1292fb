# %% [markdown]
# # 10 · FSDP: the wrapping policy, a wrap plan, a real two-process run
#
# Training a 7-billion-parameter VLA in fp32 with Adam needs about 16 bytes per parameter (weight, gradient, two
# optimizer moments): over 100 GB, more than any single GPU holds. OpenVLA trains with FSDP (Fully Sharded Data
# Parallel): every rank keeps only a slice (a *shard*) of the weights, gradients and optimizer state, and gathers
# the full weights of one *FSDP unit* at a time, just before that unit runs. Which modules become units is the one
# thing the backbone decides, through `get_fsdp_wrapping_policy()`. This notebook takes that policy apart, previews
# the units without starting FSDP, then shards a tiny backbone across two real processes and checks FSDP2 against
# the result.
#
# **What you will learn here**
# - what `get_fsdp_wrapping_policy()` returns and how FSDP asks it, with `recurse=True` and `recurse=False`;
# - how to preview the units and their sizes with `wrap_plan` and `unit_parameter_counts`, no process group needed;
# - how OpenVLA's VLM combines policies with `_or_policy` (vision blocks, decoder layers, projector);
# - a real two-process FSDP run on CPU (gloo), checked: each rank holds half, the loss falls, FSDP2 agrees;
# - FSDP1 (wrapper modules, flat parameters) against FSDP2 (`fully_shard`, per-parameter DTensors);
# - OpenVLA's settings: hybrid sharding (shard within a node, replicate across nodes), autocast plus bf16 mixed
#   precision with fp32 reduction, `use_orig_params=True`, activation checkpointing with `checkpoint_wrapper`, and the
#   LoRA pitfall that `use_orig_params` fixes;
# - why one rank is not "the same path": FSDP1 turns every strategy into `NO_SHARD` at world size 1;
# - the GPU path (nccl, one process per GPU, bf16 or fp16), run when CUDA is present, with each rank's parameter
#   bytes and peak GPU memory.

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
# ## A head start: launch the two-process run now
#
# A real FSDP job needs several processes, one per rank, and they must find each other. `torchrun` (the module
# `torch.distributed.run`) starts them and gives each one its `RANK`, `LOCAL_RANK`, `WORLD_SIZE` and the address
# of a rendezvous; `--standalone` makes it pick a free local port, so two jobs never collide. The package's demo
# `python -m vla_backbone.fsdp` then joins a process group (gloo on CPU, nccl on GPUs), shards the backbone and
# trains a few steps. Rank 0 prints a report: the plan (backend, world size, precision, sharding strategy, units),
# each rank's share of the parameters and its peak GPU memory, and the losses. `--fsdp 2` switches from the FSDP1
# wrapper to FSDP2.
#
# Each run is a pair of fresh Python processes that import torch and transformers before doing any work, which
# keeps two cores busy for several seconds. So we start it now, in the background, and read its output in the
# section "The real run". On a two-core machine (Colab, the test machine) the time budget allows one run: FSDP1,
# the version OpenVLA uses. FSDP2 then trains in this notebook's own process further down, and its losses are
# compared with the run's. Set `FSDP_VERSIONS = (1, 2)` to launch the FSDP2 job as well, side by side (free in wall
# time on four or more cores); every check below then covers it too. The environment keeps the runs offline,
# gives each process one thread, and hides any GPU, so this part behaves the same on every machine (the GPU path
# has its own section). We load the backbone in this process first, so its tiny replica is complete on disk before
# the ranks start: a rank that had to build it would do so inside its process group, where transformers 5.x writes
# model files from rank 0 only.

# %%
import os
import re
import tempfile
import torch
from vla_backbone.registry import get_llm_backbone_and_tokenizer

BACKBONE_ID, STEPS = "llama2-7b-pure", 3
backbone, tokenizer = get_llm_backbone_and_tokenizer(BACKBONE_ID)

CPU_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}

def torchrun_command(nproc, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "vla_backbone.fsdp", "--backbone", BACKBONE_ID, "--steps", str(STEPS), *args]

def launch(command, env):
    log = tempfile.TemporaryFile(mode="w+")  # stderr (progress bars, warnings) goes to a file, shown only on failure
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True)
    process.log = log
    return process

FSDP_VERSIONS = (1,)
runs = {version: launch(torchrun_command(2, "--fsdp", str(version)), CPU_ENV) for version in FSDP_VERSIONS}
for version in runs:
    print("started:", " ".join(torchrun_command(2, "--fsdp", str(version))[1:]))

# %% [markdown]
# ## The wrapping policy
#
# `get_fsdp_wrapping_policy()` returns `transformer_auto_wrap_policy` from `torch.distributed.fsdp.wrap` with one
# argument bound: the backbone's `transformer_layer_cls`, the decoder-layer class.

# %%
import functools
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

policy = backbone.get_fsdp_wrapping_policy()
print(policy)
assert isinstance(policy, functools.partial) and policy.func is transformer_auto_wrap_policy
assert policy.keywords == {"transformer_layer_cls": {backbone.transformer_layer_cls}}

# %% [markdown]
# FSDP walks the module tree from the root and calls the policy on each module with three arguments: the
# `module`, `recurse` and `nonwrapped_numel` (the parameters not yet claimed by a unit further down). With
# `recurse=True` the question is "should I look inside this module?"; with `recurse=False`, after the children
# are done, it is "should this module become a unit?". `transformer_auto_wrap_policy` always answers yes to the
# first and answers the second with `isinstance(module, transformer_layer_cls)`; the size argument is ignored. We
# call it by hand on a few modules.

# %%
llm = backbone.llm
probes = {"(root) backbone": backbone, "llm": llm, "llm.model.embed_tokens": llm.model.embed_tokens,
          "llm.model.layers": llm.model.layers, "llm.model.layers.0": llm.model.layers[0],
          "llm.model.layers.0.self_attn": llm.model.layers[0].self_attn, "llm.lm_head": llm.lm_head}
print(f"{'module':32s} {'class':22s} recurse=True  recurse=False")
for name, module in probes.items():
    numel = sum(p.numel() for p in module.parameters())
    descend = policy(module=module, recurse=True, nonwrapped_numel=numel)
    wrap = policy(module=module, recurse=False, nonwrapped_numel=numel)
    print(f"{name:32s} {type(module).__name__:22s} {descend!s:13s} {wrap}")

# %%
assert policy(module=llm.model.layers[0], recurse=False, nonwrapped_numel=0) is True
assert policy(module=backbone, recurse=False, nonwrapped_numel=0) is False
assert policy(module=llm.model.embed_tokens, recurse=False, nonwrapped_numel=0) is False
assert all(policy(module=m, recurse=True, nonwrapped_numel=0) for m in backbone.modules())

def my_policy(module, recurse, nonwrapped_numel):
    return True if recurse else isinstance(module, backbone.transformer_layer_cls)

assert all(policy(module=m, recurse=r, nonwrapped_numel=0) == my_policy(m, r, 0) for m in backbone.modules() for r in (True, False))

# %% [markdown]
# **Try it:** ask the policy about any module of the backbone, in either mode.

# %%
from vla_backbone.notebook import explore

ROOT = "(root)"  # the root module's qualified name is "", which a dropdown would show as a blank entry

def ask_policy(module_name, recurse):
    module = backbone.get_submodule("" if module_name == ROOT else module_name)
    answer = policy(module=module, recurse=recurse, nonwrapped_numel=sum(p.numel() for p in module.parameters()))
    print(f"policy({module_name}: {type(module).__name__}, recurse={recurse}) -> {answer}")
    return answer

module_names = sorted((name or ROOT for name, _ in backbone.named_modules()), key=lambda name: name != "llm.model.layers.1")
assert ROOT in module_names and "" not in module_names
first_answer = explore(ask_policy, module_name=module_names, recurse=[False, True])
assert first_answer is True

# %% [markdown]
# ## The wrap plan: which modules become units
#
# `vla_backbone.fsdp.wrap_plan(module, policy)` replays FSDP's traversal without FSDP: descend where
# `recurse=True` says so, make a unit where `recurse=False` says so, and make the root a unit as well, since it
# owns whatever no other unit claimed. `unit_parameter_counts` adds how many parameters each unit owns (its own,
# not those of units nested inside it). Below, the plan as a tree, root first.

# %%
from vla_backbone.fsdp import unit_parameter_counts, wrap_plan

def show_plan(model, policy):
    counts = unit_parameter_counts(model, policy)
    owner = {name: max((u for u in counts if u == "" or name.startswith(u + ".")), key=len) for name, _ in model.named_parameters()}
    for unit, numel in counts.items():
        depth = 0 if unit == "" else 1 + sum(1 for u in counts if u and u != unit and unit.startswith(u + "."))
        owned = sorted({name.rsplit(".", 1)[0] for name, o in owner.items() if o == unit})
        note = ", ".join(owned) if unit == "" else f"owns {len(owned)} module(s) with parameters"
        prefix = "    " * (depth - 1) + "└─ " if depth else ""
        print(f"{prefix}{unit or '(root)':<{40 - len(prefix)}} {numel:>8,}   {note}")
    return counts

counts = show_plan(backbone, policy)
total = sum(p.numel() for p in backbone.parameters())
print(f"total {total:,}")

# %%
layer_names = [name for name, m in backbone.named_modules() if isinstance(m, backbone.transformer_layer_cls)]
assert wrap_plan(backbone, policy) == ["", *layer_names] == list(counts)
assert layer_names == [f"llm.model.layers.{i}" for i in range(llm.config.num_hidden_layers)]
assert sum(counts.values()) == total
vocab_rows, width = llm.config.vocab_size, llm.config.hidden_size
assert counts[""] == 2 * vocab_rows * width + width  # embeddings + LM head (untied) + final norm
assert counts[""] / total > 0.98

# %% [markdown]
# The root unit owns the embeddings, the final norm and the LM head: on the tiny replica that is 98% of the model,
# because Llama-2's real vocabulary (32,064 rows after the PAD token and the multiple-of-64 resize) dwarfs two
# 64-wide layers. The real Llama-2-7B looks different. Its architecture
# can be built on PyTorch's `meta` device (shapes only, no memory), and the wrap plan works on it just the same.

# %%
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

with torch.device("meta"):
    llama2_7b = LlamaForCausalLM(LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                             num_attention_heads=32, num_key_value_heads=32, vocab_size=32064))
big_counts = unit_parameter_counts(llama2_7b, functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={LlamaDecoderLayer}))
print(f"{len(big_counts)} units; root {big_counts[''] / 1e6:.1f} M; each layer {big_counts['model.layers.0'] / 1e6:.1f} M; "
      f"total {sum(big_counts.values()) / 1e9:.2f} B")
assert len(big_counts) == 33 and len(set(list(big_counts.values())[1:])) == 1
assert 262e6 < big_counts[""] < 263e6 and 202e6 < big_counts["model.layers.0"] < 203e6
# The opening's arithmetic: fp32 weight, gradient and Adam's two moments are 4 x 4 bytes per parameter.
print(f"fp32 training state with Adam: {16 * sum(big_counts.values()) / 1e9:.0f} GB")
assert 16 * sum(big_counts.values()) > 100e9


# %% [markdown]
# 32 layer units of 202 M parameters each and a root of 263 M. FSDP gathers one unit at a time, so the largest unit
# sets how much memory the gathered weights need at the peak: units of similar size are what a good policy gives,
# and a policy that claims nothing would leave the whole model in the root.
#
# **Try it:** the plan of another family.

# %%
def plan_of(backbone_id):
    model, _ = get_llm_backbone_and_tokenizer(backbone_id)
    print(f"{backbone_id}: {type(model.llm).__name__}, wrapping {model.transformer_layer_cls.__name__}")
    return show_plan(model, model.get_fsdp_wrapping_policy())

first_plan = explore(plan_of, backbone_id=["llama2-7b-pure", "qwen25-0_5b-pure", "opt-125m", "phi-2-3b", "mistral-v0.1-7b-pure"])
assert first_plan == counts

# %% [markdown]
# ## Combining policies, as the VLM does
#
# A VLA has more than a language model. OpenVLA's VLM builds its policy with `_or_policy`: a module becomes a unit
# if *any* policy in the list says so. The list holds the vision backbone's policy (which itself wraps every
# transformer block and then the whole vision transformer), the LLM's decoder-layer policy, and a
# `_module_wrap_policy` that names the projector classes. We rebuild that on toy modules: a vision encoder with two
# blocks, a projector, and the tiny backbone.

# %%
from torch import nn
from torch.distributed.fsdp.wrap import _module_wrap_policy, _or_policy

class ToyViTBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm, self.mlp = nn.LayerNorm(width), nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x):
        return x + self.mlp(self.norm(x))


class ToyVisionEncoder(nn.Module):
    def __init__(self, patch_dim=192, width=48, depth=2):
        super().__init__()
        self.patch_embed = nn.Linear(patch_dim, width)
        self.blocks = nn.ModuleList(ToyViTBlock(width) for _ in range(depth))

    def forward(self, patches):
        x = self.patch_embed(patches)
        for block in self.blocks:
            x = block(x)
        return x


class ToyProjector(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ToyVLM(nn.Module):
    def __init__(self, llm_backbone):
        super().__init__()
        self.vision_backbone = ToyVisionEncoder()
        self.projector = ToyProjector(48, llm_backbone.embed_dim)
        self.llm_backbone = llm_backbone


vision_policy = functools.partial(_or_policy, policies=[
    functools.partial(_module_wrap_policy, module_classes={ToyVisionEncoder}),
    functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={ToyViTBlock}),
])
projector_policy = functools.partial(_module_wrap_policy, module_classes={ToyProjector})
vlm_policy = functools.partial(_or_policy, policies=[vision_policy, backbone.get_fsdp_wrapping_policy(), projector_policy])

vlm = ToyVLM(backbone)
vlm_counts = show_plan(vlm, vlm_policy)

# %% [markdown]
# Seven units: the root, the vision encoder with its two blocks nested inside it, the projector, and the two decoder
# layers. The projector became a unit only because of `_module_wrap_policy`; without it, its parameters fall back
# to the root. The counts still add up to the whole model.

# %%
vlm_units = list(vlm_counts)
assert vlm_units == ["", "vision_backbone", "vision_backbone.blocks.0", "vision_backbone.blocks.1", "projector",
                     "llm_backbone.llm.model.layers.0", "llm_backbone.llm.model.layers.1"]
assert vlm_counts["projector"] == sum(p.numel() for p in vlm.projector.parameters())
assert vlm_counts["vision_backbone"] == sum(p.numel() for p in vlm.vision_backbone.patch_embed.parameters())
assert sum(vlm_counts.values()) == sum(p.numel() for p in vlm.parameters())
without_projector = unit_parameter_counts(vlm, functools.partial(_or_policy, policies=[vision_policy, policy]))
assert "projector" not in without_projector
assert without_projector[""] == vlm_counts[""] + vlm_counts["projector"]

# %% [markdown]
# ## Inside one process: FSDP1 and FSDP2
#
# The run is still working. Meanwhile, this process can look inside FSDP itself. FSDP1 and FSDP2 compute the same
# thing, but they store the shards differently:
#
# - **FSDP1** (`FullyShardedDataParallel`) wraps every unit in a wrapper module. Inside a unit it flattens all
#   parameters into one 1-D `FlatParameter` and gives each rank an equal contiguous slice of it, so a single weight
#   may be cut anywhere between ranks. All tensors of one flat parameter share one dtype, and they must also agree
#   on `requires_grad` unless `use_orig_params=True` keeps the original parameters as views into it.
# - **FSDP2** (`fully_shard`) wraps nothing: it changes the module's class in place and replaces every parameter by a
#   `DTensor` sharded along dimension 0 (`Shard(0)`). Each parameter stays its own tensor, with its own
#   `requires_grad`, dtype and optimizer state.
#
# A process group of world size 1 (gloo, with an in-memory store as its meeting point) lets FSDP run inside this
# notebook. One rank has no one to share with, and FSDP1 knows it: whatever strategy it is given, at world size 1 it
# switches to `NO_SHARD` (no all-gather, no reduce-scatter; the rank keeps every parameter whole) and warns once per
# unit. We wrap with OpenVLA's strategy, `HYBRID_SHARD` (next section), record the warnings instead of letting them
# scroll by in red, and print them: this is the behaviour, not noise. The structure (units, flat parameters) is the
# same as in a sharded run; only the shards are whole.

# %%
import warnings
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, MixedPrecision, ShardingStrategy
from torch.distributed.fsdp import fully_shard
from torch.distributed.fsdp._flat_param import FlatParameter
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Shard

def one_rank_group():
    """This kernel's gloo group of world size 1; the one that exists is kept, so every cell below can run again."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


one_rank_group()

fsdp1_backbone, _ = get_llm_backbone_and_tokenizer(BACKBONE_ID)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fsdp1 = FSDP(fsdp1_backbone, auto_wrap_policy=fsdp1_backbone.get_fsdp_wrapping_policy(), sharding_strategy=ShardingStrategy.HYBRID_SHARD,
                 device_id=torch.device("cpu"), use_orig_params=False)
print(f"FSDP1 warned {len(caught)} times:", *sorted({str(w.message) for w in caught}))
print("effective strategy of every unit:", {unit.sharding_strategy for unit in FSDP.fsdp_modules(fsdp1)})
for name, p in fsdp1.named_parameters():
    print(f"FSDP1  {name:75s} {tuple(p.shape)}")

# %% [markdown]
# FSDP1: three wrapper modules (root plus two layers), each switched to `NO_SHARD` with one warning, and
# `parameters()` yields three flat parameters whose sizes are exactly the unit counts of the wrap plan: whole units,
# since nothing was sharded.

# %%
assert type(fsdp1) is FSDP and len(FSDP.fsdp_modules(fsdp1)) == 3
assert {unit.sharding_strategy for unit in FSDP.fsdp_modules(fsdp1)} == {ShardingStrategy.NO_SHARD}
assert [str(w.message) for w in caught] == ["FSDP is switching to use `NO_SHARD` instead of ShardingStrategy.HYBRID_SHARD since the world size is 1."] * 3
flat = list(fsdp1.parameters())
assert all(isinstance(p, FlatParameter) and p.dim() == 1 for p in flat)
assert [p.numel() for p in flat] == list(counts.values())

def fsdp1_one_rank(model, **fsdp_kwargs):
    one_rank_group()
    # In this one-rank group FSDP1 always switches to NO_SHARD, as just shown; only that warning is expected here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="FSDP is switching to use `NO_SHARD`")
        wrapped = FSDP(model, device_id=torch.device("cpu"), **fsdp_kwargs)
    assert wrapped.sharding_strategy == ShardingStrategy.NO_SHARD
    return wrapped


# Whatever strategy it is given: the four that shard, OpenVLA's two among them.
for strategy in (ShardingStrategy.FULL_SHARD, ShardingStrategy.SHARD_GRAD_OP, ShardingStrategy.HYBRID_SHARD,
                 ShardingStrategy._HYBRID_SHARD_ZERO2):
    fresh_backbone = get_llm_backbone_and_tokenizer(BACKBONE_ID)[0]
    fsdp1_one_rank(fresh_backbone, auto_wrap_policy=fresh_backbone.get_fsdp_wrapping_policy(), sharding_strategy=strategy)


# %%
def fsdp2_one_rank(model):
    """FSDP2 as OpenVLA's policy plans it: every decoder layer a unit, then the root, on a one-rank CPU mesh."""
    one_rank_group()
    cpu_mesh = init_device_mesh("cpu", (1,))
    for layer in [m for m in model.modules() if isinstance(m, model.transformer_layer_cls)]:
        fully_shard(layer, mesh=cpu_mesh)
    return fully_shard(model, mesh=cpu_mesh)


fsdp2_backbone, _ = get_llm_backbone_and_tokenizer(BACKBONE_ID)
fsdp2 = fsdp2_one_rank(fsdp2_backbone)
first_name, first = next(iter(fsdp2.named_parameters()))
print(f"FSDP2  class {type(fsdp2).__name__} (bases: {', '.join(c.__name__ for c in type(fsdp2).__bases__)})")
print(f"FSDP2  {first_name}: {type(first).__name__}, placements={first.placements}, local shape {tuple(first.to_local().shape)}")

# %% [markdown]
# FSDP2: the same object, now of a generated class `FSDP<original name>`; the original parameter names are kept;
# every parameter is a DTensor sharded on dimension 0. FSDP2 has no `NO_SHARD` switch: on a mesh of one rank the
# single shard is the whole tensor. (A copy sharded this way trains further down, next to the real run's losses.)

# %%
assert fsdp2 is fsdp2_backbone and type(fsdp2).__name__ == "FSDP" + type(backbone).__name__
assert [name for name, _ in fsdp2.named_parameters()] == [name for name, _ in backbone.named_parameters()]
assert all(isinstance(p, DTensor) and p.placements == (Shard(0),) for p in fsdp2.parameters())
assert all(p.to_local().shape == p.shape for p in fsdp2.parameters())

# %% [markdown]
# ## OpenVLA's settings: sharding strategy and mixed precision
#
# OpenVLA's VLA training (and `vla_backbone/fsdp.py`, which follows it) wraps the model with:
#
# - a **hybrid** sharding strategy. OpenVLA's option `full-shard` (the VLA default) passes
#   `sharding_strategy=ShardingStrategy.HYBRID_SHARD`: parameters, gradients and optimizer state are sharded across
#   the GPUs *of one node* and replicated across nodes, so the all-gathers stay on the fast links inside a node. On
#   one node that is exactly `FULL_SHARD`. Its option `shard-grad-op` passes `ShardingStrategy._HYBRID_SHARD_ZERO2`,
#   which also keeps the gathered parameters between forward and backward (faster, more memory). At world size 1
#   every strategy becomes `NO_SHARD`, as above;
# - `mixed_precision=MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.float32)`:
#   the gathered parameters are cast to bf16 for computing, gradients are reduced across ranks in fp32, and the
#   sharded master weights stay fp32;
# - and the training step itself runs under `torch.autocast("cuda", dtype=half_precision_dtype)`, so OpenVLA's
#   precision is autocast *plus* the FSDP policy: autocast picks the dtype of each operation as it runs (matrix
#   products in bf16 even on fp32 inputs, the cross-entropy loss in fp32), the policy decides what is stored and
#   communicated;
# - `use_orig_params=True` (see the LoRA pitfall below) and `limit_all_gathers=True` (the CPU thread waits when
#   two all-gathers are already in flight, so memory for gathered units stays bounded).
#
# The demo maps the two options the same way wherever a node has several GPUs, and its two-process run reports
# `HYBRID_SHARD` (checked in "The real run"). With one GPU per node it departs from OpenVLA on purpose: a hybrid
# strategy would shard over a group of one GPU, which FSDP1 turns into `NO_SHARD` with gradients synchronised only
# inside that group, so the nodes would train apart; the demo shards across the nodes instead (`FULL_SHARD`,
# `SHARD_GRAD_OP`). The same configuration runs in this one-process group on the CPU, under
# `torch.autocast("cpu", ...)`. A hook on the first attention projection records the dtype of the weight it computes
# with and the autocast state.

# %%
from vla_backbone.fsdp import OPENVLA_SHARDING, fsdp1_sharding_strategy

for sharding in OPENVLA_SHARDING:
    for gpus_per_node, world in ((8, 16), (1, 4)):
        print(f"{sharding:13s} {gpus_per_node} GPU(s) per node, {world} in all -> "
              f"{fsdp1_sharding_strategy(sharding, gpus_per_node, world)[0]}")
assert [fsdp1_sharding_strategy(s, 8, 16)[0] for s in OPENVLA_SHARDING] == ["HYBRID_SHARD", "_HYBRID_SHARD_ZERO2"]
assert [fsdp1_sharding_strategy(s, 1, 4)[0] for s in OPENVLA_SHARDING] == ["FULL_SHARD", "SHARD_GRAD_OP"]

# %%
batch = tokenizer(["In: What action should the robot take to slide the yellow lid off the pot near the stove?\nOut: "] * 2, return_tensors="pt")
mp_backbone, _ = get_llm_backbone_and_tokenizer(BACKBONE_ID)
half = mp_backbone.half_precision_dtype
mixed = MixedPrecision(param_dtype=half, reduce_dtype=torch.float32, buffer_dtype=torch.float32)
seen = {}
q_proj = mp_backbone.llm.model.layers[0].self_attn.q_proj
hook = q_proj.register_forward_pre_hook(lambda module, args: seen.update(
    weight=module.weight.dtype, autocast=torch.is_autocast_enabled("cpu"), autocast_dtype=torch.get_autocast_dtype("cpu")))
openvla_fsdp = fsdp1_one_rank(mp_backbone, auto_wrap_policy=mp_backbone.get_fsdp_wrapping_policy(), sharding_strategy=ShardingStrategy.HYBRID_SHARD,
                              mixed_precision=mixed, use_orig_params=True, limit_all_gathers=True)
with torch.autocast("cpu", dtype=half):
    out = openvla_fsdp(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids)
out.loss.backward()
hook.remove()
print("inside forward: weight", seen["weight"], "| autocast", seen["autocast"], seen["autocast_dtype"], "| logits:", out.logits.dtype, "| loss:", out.loss.dtype)
print("stored parameters:", {p.dtype for p in openvla_fsdp.parameters()}, "| gradients:", {p.grad.dtype for p in openvla_fsdp.parameters()})

# %%
from vla_backbone.fsdp import OPENVLA_SHARDING

assert OPENVLA_SHARDING == {"full-shard": "HYBRID_SHARD", "shard-grad-op": "_HYBRID_SHARD_ZERO2"}
assert half == torch.bfloat16 and seen["weight"] == half and out.logits.dtype == half
assert seen["autocast"] and seen["autocast_dtype"] == half and out.loss.dtype == torch.float32
with torch.autocast("cpu", dtype=half):
    product = torch.randn(4, 8) @ torch.randn(8, 8)
    product_loss = torch.nn.functional.cross_entropy(product, torch.tensor([0, 1, 2, 3]))
assert product.dtype == half and product_loss.dtype == torch.float32
assert {p.dtype for p in openvla_fsdp.parameters()} == {torch.float32} == {p.grad.dtype for p in openvla_fsdp.parameters()}


# %% [markdown]
# Inside the forward pass the weight is bf16 (the FSDP policy) and autocast is on with the same dtype; the logits
# come out in bf16, the loss in fp32 (transformers computes the cross-entropy in fp32), and the stored parameters and
# their gradients stay fp32. bf16 for computing is the backbone's `half_precision_dtype` (notebook 09). FSDP2 takes
# the same choice as
# `fully_shard(module, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32))`,
# which is what the demo passes on GPUs with bf16. In OpenVLA a *frozen* vision encoder is cast to bf16 outright
# before wrapping, since no optimizer needs its fp32 copy (`FSDPStrategy.run_setup` in
# `prismatic/training/strategies/fsdp.py`, in every stage but `full-finetune`, `vla-full-train` and
# `vla-sandwich-train`).
#
# ## The LoRA pitfall: "uniform requires_grad"
#
# Parameter-efficient fine-tuning puts small trainable adapters *inside* frozen layers. A Prismatic fork that
# added LoRA to decoder layers wrapped by FSDP1 hit "FlatParameter requires uniform requires_grad", because one
# unit's flat parameter would have to hold trainable and frozen tensors at once. We reproduce it with a minimal LoRA
# adapter on every query projection (torch 2.13 words the message a little differently).

# %%
class LoRALinear(nn.Module):
    def __init__(self, base, rank=4):
        super().__init__()
        self.base = base
        self.lora_a = nn.Linear(base.in_features, rank, bias=False)
        self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.lora_b.weight)

    def forward(self, x):
        return self.base(x) + self.lora_b(self.lora_a(x))


def backbone_with_lora():
    model, _ = get_llm_backbone_and_tokenizer(BACKBONE_ID)
    for layer in model.llm.model.layers:
        layer.self_attn.q_proj = LoRALinear(layer.self_attn.q_proj)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model

from vla_backbone.notebook import expect_error
lora_model = backbone_with_lora()
with expect_error(ValueError, match="uniform `requires_grad`"):
    fsdp1_one_rank(lora_model, auto_wrap_policy=lora_model.get_fsdp_wrapping_policy(), use_orig_params=False)

# %% [markdown]
# With `use_orig_params=True` FSDP1 keeps every original parameter, with its own `requires_grad`, as a view into
# the flat parameter, and the same model wraps and trains: after one backward pass exactly the adapter weights have
# gradients. (FSDP2 never has this problem, since it shards parameter by parameter.) OpenVLA passes
# `use_orig_params=True`, which keeps this door open.

# %%
lora_model = backbone_with_lora()
lora_fsdp = fsdp1_one_rank(lora_model, auto_wrap_policy=lora_model.get_fsdp_wrapping_policy(), use_orig_params=True)
lora_fsdp(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids).loss.backward()
with_grad = sorted(name.replace("_fsdp_wrapped_module.", "") for name, p in lora_fsdp.named_parameters() if p.grad is not None)
print(with_grad)
assert with_grad and all("lora_" in name for name in with_grad)
assert all((p.grad is not None) == p.requires_grad for p in lora_fsdp.parameters())

# %% [markdown]
# ## Activation checkpointing the FSDP way
#
# Under FSDP, OpenVLA does not call the backbone's `enable_gradient_checkpointing()` (HF's own checkpointing,
# notebook 08). It wraps every `transformer_layer_cls` module in PyTorch's non-reentrant `checkpoint_wrapper`
# with `apply_activation_checkpointing`, which recomputes each layer's activations during backward instead of
# storing them. It needs no process group, so we apply it to a plain tiny backbone and check: exactly the decoder
# layers are wrapped, the state-dict keys do not change (the wrapper hides its own name), the loss and gradients
# match the unwrapped model, and fewer activation bytes are saved for backward.

# %%
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointImpl, CheckpointWrapper, apply_activation_checkpointing, checkpoint_wrapper)
from vla_backbone.measure import saved_activation_bytes

plain, _ = get_llm_backbone_and_tokenizer(BACKBONE_ID)
checkpointed, _ = get_llm_backbone_and_tokenizer(BACKBONE_ID)
keys_before = list(checkpointed.state_dict())
apply_activation_checkpointing(
    checkpointed,
    checkpoint_wrapper_fn=functools.partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
    check_fn=lambda module: isinstance(module, checkpointed.transformer_layer_cls),
)
wrapped = [name for name, m in checkpointed.named_modules() if isinstance(m, CheckpointWrapper)]
print("wrapped:", wrapped)

losses = {}
def loss_of(name, model):
    def compute():
        losses[name] = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids).loss
        return losses[name]
    return compute

saved = {name: saved_activation_bytes(model, loss_of(name, model)) for name, model in (("plain", plain), ("checkpointed", checkpointed))}
print({name: f"{b / 1024:.0f} KiB" for name, b in saved.items()})

# %%
assert len(wrapped) == checkpointed.llm.config.num_hidden_layers == 2
assert all(isinstance(m._checkpoint_wrapped_module, checkpointed.transformer_layer_cls) for m in checkpointed.modules() if isinstance(m, CheckpointWrapper))
assert list(checkpointed.state_dict()) == keys_before
torch.testing.assert_close(losses["checkpointed"], losses["plain"])
for (name, p), (_, q) in zip(plain.named_parameters(), checkpointed.named_parameters()):
    torch.testing.assert_close(q.grad, p.grad, msg=name)
assert saved["checkpointed"] < saved["plain"]

# %% [markdown]
# ## The real run
#
# Back to the job started at the top. Rank 0 printed the plan (backend, world size, precision, the sharding
# strategy asked for and the one FSDP applied), the units (the same plan as our preview), how many parameters and
# bytes each rank holds after sharding (peak GPU memory is "n/a" on a CPU), and the loss of each step (the average
# over both ranks). Both ranks see the same batch, so the loss is the one a single process would compute.

# %%
import signal

def collect(process, timeout=120):
    try:
        stdout, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    if process.returncode != 0:
        process.log.seek(0)
        print(process.log.read()[-3000:])
    assert process.returncode == 0, f"torchrun exited with {process.returncode}"
    return stdout

outputs = {version: collect(process) for version, process in runs.items()}
for version, stdout in outputs.items():
    print(f"===== FSDP{version} =====\n{stdout}")


# %% [markdown]
# We parse the report and check it: FSDP1 was asked for OpenVLA's `HYBRID_SHARD` and kept it (two ranks on one
# node), and, just as `FULL_SHARD` would, it gave each of the two ranks half of the parameters; the units match
# `unit_parameter_counts`; the loss decreases at every step. The first loss must also equal what one process
# computes for the demo's prompt, since sharding changes where the weights live, not the arithmetic.

# %%
def parse_run(stdout):
    shares = {int(r): (int(n.replace(",", "")), int(t.replace(",", ""))) for r, n, t in re.findall(r"rank (\d+) holds ([\d,]+) of ([\d,]+) parameters", stdout)}
    losses = [float(loss) for _, loss in re.findall(r"step (\d+): loss ([\d.]+)", stdout)]
    units = {("" if u == "(root)" else u): int(n.replace(",", "")) for u, n in re.findall(r"unit (\S+): ([\d,]+) parameters", stdout)}
    return shares, losses, units

assert "sharding: full-shard -> FSDP1 HYBRID_SHARD" in outputs[1] and "effective HYBRID_SHARD" in outputs[1]
parsed = {version: parse_run(stdout) for version, stdout in outputs.items()}
for version, (shares, run_losses, units) in parsed.items():
    assert sorted(shares) == [0, 1], version
    for held, run_total in shares.values():
        assert run_total == total and abs(held / total - 0.5) < 0.01, (version, held)
    assert sum(held for held, _ in shares.values()) == total
    assert len(run_losses) == STEPS and all(b < a for a, b in zip(run_losses, run_losses[1:])), (version, run_losses)
    assert units == counts, version

single = tokenizer(["In: What action should the robot take to pick up the cup?\nOut: "] * 2, return_tensors="pt")
with torch.no_grad():
    single_loss = backbone(input_ids=single.input_ids, attention_mask=single.attention_mask, labels=single.input_ids).loss.item()
print(f"one process, same prompt as the demo: loss {single_loss:.4f}")
assert all(abs(parsed[v][1][0] - single_loss) < 1e-3 for v in parsed)

# %% [markdown]
# Now FSDP2 against the run. A fresh tiny backbone, sharded with FSDP2 exactly as above, trains here for the same
# steps as the demo: same prompt, same AdamW with learning rate 1e-2. Sharding decides where the weights live, not
# the arithmetic, so its losses must match the two-process FSDP1 run (up to rounding in the reductions), and so must
# a two-process FSDP2 run if one was started. Its gradients are DTensors, like its parameters.

# %%
# A fresh copy, sharded the same way, so that this cell starts from the demo's weights every time it runs.
trainee = fsdp2_one_rank(get_llm_backbone_and_tokenizer(BACKBONE_ID)[0])
optimizer = torch.optim.AdamW(trainee.parameters(), lr=1e-2)
fsdp2_losses = []
for step in range(STEPS):
    loss = trainee(input_ids=single.input_ids, attention_mask=single.attention_mask, labels=single.input_ids).loss
    loss.backward()
    assert all(isinstance(p.grad, DTensor) for p in trainee.parameters())
    optimizer.step()
    optimizer.zero_grad()
    fsdp2_losses.append(loss.item())

columns = {"FSDP1, 2 processes": parsed[1][1], "FSDP2, this process": fsdp2_losses}
if 2 in parsed:
    columns["FSDP2, 2 processes"] = parsed[2][1]
print(f"{'':12s}" + "".join(f"{name:>22s}" for name in columns))
for step in range(STEPS):
    print(f"{f'step {step} loss':12s}" + "".join(f"{column[step]:>22.4f}" for column in columns.values()))
for column in columns.values():
    assert all(abs(a - b) < 2e-3 for a, b in zip(column, parsed[1][1]))

# Done with this kernel's group; one_rank_group() starts a new one when a cell above runs again.
dist.destroy_process_group()

# %% [markdown]
# **Try it:** launch a run of your own in a new cell, for instance Qwen with FSDP2. Load it here once first, so
# its replica exists, then run
# `print(collect(launch(torchrun_command(2, "--fsdp", "2", "--backbone", "qwen25-0_5b-pure"), CPU_ENV)))` (a later
# `--backbone` overrides the earlier one). How does the root unit change with Qwen's tied embeddings, and do the
# shares stay at 50%?
#
# ## The GPU path
#
# On a machine with CUDA GPUs the same demo starts one process per GPU, uses the nccl backend, and trains with
# OpenVLA's precision recipe: bf16 where the GPU computes in bf16 natively (A100, L4, H100 and newer), fp16 mixed
# precision with loss scaling where it does not (Colab's free T4, V100), said in the report's `precision:` line.
# Asking for more processes than the machine has GPUs stops at once with a message that says what to run instead.
#
# One GPU (Colab) is not "the same path, only smaller". With one rank FSDP1 turns `HYBRID_SHARD` into `NO_SHARD`, as
# in this process above: no all-gather, no reduce-scatter, and the rank holds every parameter, so nothing is saved.
# FSDP2 still makes every parameter a DTensor, on a mesh of one. Sharding saves memory only from two GPUs on, where
# each rank's share drops to 1/N. The cell below runs FSDP1 and then FSDP2 with `torch.cuda.device_count()`
# processes and checks each rank's parameter bytes and peak GPU memory; on a machine without CUDA it prints what it
# skipped. `tests/gpu/run.sh` runs the same on a GPU machine and writes the figures to `docs/gpu.md`.

# %%
from vla_backbone.fsdp import ProcessCountError, device_for_rank

# What `torchrun --nproc_per_node 2` on Colab's one GPU would meet: rank 1 has no GPU of its own.
with expect_error(ProcessCountError, match="--nproc_per_node 1"):
    device_for_rank(local_rank=1, local_world_size=2, gpu_count=1)
assert device_for_rank(local_rank=1, local_world_size=2, gpu_count=0) == torch.device("cpu")

# %%
RANK_LINE = r"rank (\d+) holds ([\d,]+) of [\d,]+ parameters \([\d.]+%\), ([\d,]+) bytes on (\S+); peak GPU memory: ([\d.]+) MiB after sharding, ([\d.]+) MiB while training"

if torch.cuda.is_available():
    gpu_count = torch.cuda.device_count()
    expected_precision = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    gpu_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    gpu_outputs = {}
    for version in (1, 2):
        gpu_outputs[version] = collect(launch(torchrun_command(gpu_count, "--fsdp", str(version)), gpu_env), timeout=300)
        print(f"===== FSDP{version} on {gpu_count} GPU(s) =====\n{gpu_outputs[version]}")
    print(f"{'':6s}{'rank':>5s}{'parameter bytes':>18s}{'peak after sharding':>22s}{'peak while training':>22s}")
    for version, stdout in gpu_outputs.items():
        ranks = re.findall(RANK_LINE, stdout)
        for rank, _, nbytes, device, after, training in ranks:
            print(f"FSDP{version} {rank:>5s}{nbytes:>18s}{after + ' MiB':>22s}{training + ' MiB':>22s}")
        gpu_shares, gpu_losses, _ = parse_run(stdout)
        assert "backend=nccl" in stdout and f"world_size={gpu_count}" in stdout and f"precision: {expected_precision} " in stdout
        assert [int(rank) for rank, *_ in ranks] == list(range(gpu_count))
        assert all(device == f"cuda:{rank}" and float(after) > 0 and float(training) > 0 for rank, _, _, device, after, training in ranks)
        assert all(abs(held / total - 1 / gpu_count) < 0.01 for held, _ in gpu_shares.values())
        assert len(gpu_losses) == STEPS and gpu_losses[-1] < gpu_losses[0]
    assert ("effective NO_SHARD" in gpu_outputs[1]) == (gpu_count == 1)
else:
    SKIPPED = {
        "en": "No CUDA GPU here (torch.cuda.is_available() is False), so this cell skipped the GPU runs: FSDP1 and "
              "FSDP2 over nccl with one process per GPU, bf16 or fp16 mixed precision, and each rank's parameter bytes "
              "and peak GPU memory. Everything above ran on the CPU; tests/gpu/run.sh measures the GPU path into "
              "docs/gpu.md.",
        "zh": "这台机器没有 CUDA GPU（torch.cuda.is_available() 为 False），所以本单元跳过了 GPU 上的运行：每块 GPU 一个进程、"
              "走 nccl 的 FSDP1 和 FSDP2，bf16 或 fp16 混合精度，以及每个 rank 的参数字节数和显存峰值。上面的内容都在 CPU 上"
              "跑完了；GPU 路径由 tests/gpu/run.sh 测量，结果写进 docs/gpu.md。",
    }
    print(SKIPPED[LANG])

# %% [markdown]
# ## Summary
# - `get_fsdp_wrapping_policy()` is `transformer_auto_wrap_policy` bound to the decoder-layer class: descend
#   everywhere (`recurse=True`), make a unit of every decoder layer (`recurse=False`); the root owns the rest.
# - `wrap_plan` and `unit_parameter_counts` preview the units and their sizes without a process group; the real
#   runs print the same plan.
# - The VLM's policy is an `_or_policy` of the vision policy, the LLM policy and a `_module_wrap_policy` for the
#   projector; a class no policy names ends up in the root unit.
# - Two processes on a CPU shard the tiny backbone half and half and train it with FSDP1 (wrapper modules, one flat
#   parameter per unit); FSDP2 (`fully_shard`, a DTensor per parameter) trains to the same losses.
# - OpenVLA's `full-shard` is `HYBRID_SHARD` (shard within a node, replicate across nodes; on one node the same as
#   `FULL_SHARD`) and `shard-grad-op` is `_HYBRID_SHARD_ZERO2`; its precision is autocast to `half_precision_dtype`
#   plus FSDP's `MixedPrecision` (bf16 compute, fp32 reduction, fp32 master weights); it passes
#   `use_orig_params=True` (which makes mixed `requires_grad` inside a unit legal) and checkpoints activations with
#   `checkpoint_wrapper` on every decoder layer.
# - With one rank FSDP1 turns every strategy into `NO_SHARD`: one GPU runs the code, not the sharding. On GPUs the
#   demo uses nccl, one process per GPU, and bf16 only where the GPU has it (fp16 with loss scaling otherwise).
#
# ## Exercises
# 1. Give `unit_parameter_counts` the policy `functools.partial(_module_wrap_policy, module_classes={nn.Linear})`.
#    How many units does the tiny backbone get, and what does the root keep? Why would that be a poor plan?
# 2. Write a size-based policy with `torch.distributed.fsdp.wrap.size_based_auto_wrap_policy` (use
#    `min_num_params=30_000`) and compare its plan on the tiny backbone with the decoder-layer policy.
# 3. Extend `ToyVLM`'s policy so the vision encoder's `patch_embed` becomes a unit of its own, and assert the new
#    plan and counts.
# 4. Wrap `lora_model` with FSDP2 (`fully_shard` per layer, then the root) inside a world-size-1 process group and
#    check that it accepts the mixed `requires_grad` without any flag.
