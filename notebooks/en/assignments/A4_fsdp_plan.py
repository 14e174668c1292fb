# %% [markdown]
# # A4 · Assignment: predict an FSDP wrap plan and each rank's share
#
# Before you spend GPU hours on an FSDP run, you should be able to say what FSDP will do with your model: which
# modules become FSDP units, and how many parameters each rank will hold. Both follow from two short rules. In this
# assignment you write those rules down as code, for a small VLA with a vision backbone, a projector and a language
# backbone, and check your predictions against FSDP itself.
#
# **What you will do**
# - predict the wrap plan that OpenVLA's combined wrapping policy produces (notebook 10), without asking FSDP;
# - predict how many parameters each rank holds under `FULL_SHARD`, for any number of ranks;
# - verify both against `vla_backbone.fsdp.wrap_plan` and against FSDP's own sharding code, run for each rank in turn.
#
# **How you are graded.** Write your code where a cell says `# YOUR CODE HERE` and delete the
# `raise NotImplementedError` line. Run each check cell: it is worth the points in the heading above it. Then, from a clone of the repository, run the grader,
# which tests more models and more ranks:
#
# `.venv/bin/python -m pytest tests/assignments/test_a4_fsdp_plan.py --notebook path/to/A4_fsdp_plan.ipynb`
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
# ## A small VLA
#
# OpenVLA's model has three parts: a vision backbone (a ViT: patch embedding, a stack of blocks, a norm), a
# projector (an MLP from the vision width to the language model's width) and the language backbone. `TinyVLA`
# has the same three parts at toy size, around a tiny Llama replica. Its forward pass is not needed here: FSDP's
# plan depends only on the module tree and the parameter sizes.

# %%
import functools

import torch
from torch import nn

from vla_backbone import get_llm_backbone_and_tokenizer


class PatchBlock(nn.Module):
    """One ViT block (attention and MLP, reduced to their weights)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.Linear(width, 3 * width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))


class TinyVisionBackbone(nn.Module):
    def __init__(self, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        self.patch_embed = nn.Linear(3 * 8 * 8, width)
        self.blocks = nn.ModuleList(PatchBlock(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)


class Projector(nn.Module):
    """Vision width -> language width, as OpenVLA's MLP projector."""

    def __init__(self, vision_width: int = 32, llm_width: int = 64) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(vision_width, llm_width), nn.GELU(), nn.Linear(llm_width, llm_width)


class TinyVLA(nn.Module):
    def __init__(self, backbone_id: str = "llama2-7b-pure") -> None:
        super().__init__()
        self.vision_backbone = TinyVisionBackbone()
        self.llm_backbone, _ = get_llm_backbone_and_tokenizer(backbone_id)
        self.projector = Projector(llm_width=self.llm_backbone.embed_dim)


vla = TinyVLA()
print(f"{sum(p.numel() for p in vla.parameters()):,} parameters in",
      [name for name, _ in vla.named_children()])
assert vla.projector.fc2.out_features == vla.llm_backbone.embed_dim == 64

# %% [markdown]
# ## OpenVLA's wrapping policy
#
# An FSDP *auto-wrap policy* is a function FSDP calls on every module: with `recurse=True` it asks "should I look
# inside?", with `recurse=False` it asks "should this module become its own unit?". OpenVLA combines three policies
# with `_or_policy`: the vision backbone's (wrap every ViT block), the language backbone's
# (`get_fsdp_wrapping_policy()`: wrap every decoder layer) and one for the projector class. Whatever no policy
# claims (embeddings, norms, the LM head) stays in the root unit, the model itself.
#
# `vla_backbone.fsdp.wrap_plan(model, policy)` replays FSDP's traversal without creating any process group and
# returns the names of the units, root (`""`) first. It is the reference your prediction is checked against.

# %%
from torch.distributed.fsdp.wrap import _module_wrap_policy, _or_policy, transformer_auto_wrap_policy

from vla_backbone.fsdp import wrap_plan


def openvla_policy(model: TinyVLA):
    return functools.partial(_or_policy, policies=[
        functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={PatchBlock}),
        model.llm_backbone.get_fsdp_wrapping_policy(),
        functools.partial(_module_wrap_policy, module_classes={Projector}),
    ])


def wrap_classes(model: TinyVLA) -> set:
    """The module classes the combined policy turns into units."""
    return {PatchBlock, model.llm_backbone.transformer_layer_cls, Projector}


reference_plan = wrap_plan(vla, openvla_policy(vla))
print(reference_plan)
assert reference_plan[0] == "" and len(reference_plan) == 6


# %% [markdown]
# ## Task 1 · Predict the wrap plan
#
# Write `predict_wrap_plan(model, classes)`: the list `wrap_plan` would return for a policy that wraps every
# module whose class is in `classes`. Work it out from the module tree, **without** calling `wrap_plan`,
# `unit_parameter_counts` or the policy itself (the grader blocks them). The rules:
#
# - the root is always a unit and comes first, as `""`;
# - every other module that is an instance of one of `classes` is a unit, named as in `model.named_modules()`,
#   even when it sits inside another unit;
# - units are listed in the order `named_modules()` visits them.

# %% nbgrader={"grade": false, "grade_id": "predict_wrap_plan", "locked": false, "schema_version": 3, "solution": true, "task": false}
def predict_wrap_plan(model: nn.Module, classes) -> list[str]:
    """The FSDP units a policy wrapping ``classes`` would create: ``""`` (the root), then in module order."""
    ### BEGIN SOLUTION
    classes = tuple(classes)
    return [""] + [name for name, module in model.named_modules() if name and isinstance(module, classes)]
    ### END SOLUTION


# %% [markdown]
# ### Check your work (4 points)

# %% nbgrader={"grade": true, "grade_id": "check_wrap_plan", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
predicted = predict_wrap_plan(vla, wrap_classes(vla))
assert predicted == reference_plan, say(f"predicted {predicted}\nwrap_plan says {reference_plan}",
                                         f"预测为 {predicted}\nwrap_plan 给出的是 {reference_plan}")
backbone = vla.llm_backbone
assert predict_wrap_plan(backbone, {backbone.transformer_layer_cls}) == wrap_plan(backbone, backbone.get_fsdp_wrapping_policy()), \
    say("the plan for the language backbone alone differs", "只包装语言骨干网络时，预测的包装计划不一致")
### BEGIN HIDDEN TESTS
assert predict_wrap_plan(vla, {nn.Linear})[:2] == ["", "vision_backbone.patch_embed"]
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## How FULL_SHARD splits a unit
#
# Each unit owns the parameters inside it that no nested unit owns; the root owns the rest. FSDP (here FSDP1 with
# `use_orig_params=True`, as OpenVLA runs it) flattens each unit's own parameters into one flat parameter, pads it
# with zeros to a multiple of the number of ranks, and cuts it into equal contiguous chunks: rank 0 gets the first,
# rank 1 the next, and so on. A rank's share is the real (non-padding) elements of its chunks, summed over units.
# A parameter shared by two modules (a tied embedding and LM head) is stored once.
#
# (FSDP also pads *between* parameters so that each starts on a 16-byte boundary. Every parameter size here is a
# multiple of 8 elements, so that padding is zero in float32 and in bfloat16.)
#
# A worked example: a unit of 10 elements on 4 ranks is padded to 12 and cut into chunks of 3, so the ranks hold
# 3, 3, 3 and 1 real elements.

# %%
assert all(p.numel() % 8 == 0 for p in vla.parameters())
chunks = torch.arange(12).chunk(4)
assert [int((chunk < 10).sum()) for chunk in chunks] == [3, 3, 3, 1]

# %% [markdown]
# ## Task 2 · Predict each rank's share
#
# Write `predict_rank_share(model, classes, world_size)`: the number of parameter elements each rank holds after
# FSDP wraps `model` with a policy for `classes` under `FULL_SHARD`, as a list of `world_size` ints. Use your
# `predict_wrap_plan` to find the units; again, do not call `wrap_plan` or `unit_parameter_counts`.

# %% nbgrader={"grade": false, "grade_id": "predict_rank_share", "locked": false, "schema_version": 3, "solution": true, "task": false}
import math


def predict_rank_share(model: nn.Module, classes, world_size: int) -> list[int]:
    """Parameters held by each rank under FULL_SHARD, rank 0 first."""
    ### BEGIN SOLUTION
    units = predict_wrap_plan(model, classes)
    owned = dict.fromkeys(units, 0)
    for name, parameter in model.named_parameters():
        owner = max((unit for unit in units if unit == "" or name.startswith(unit + ".")), key=len)
        owned[owner] += parameter.numel()
    shares = [0] * world_size
    for numel in owned.values():
        chunk = math.ceil(numel / world_size)
        for rank in range(world_size):
            shares[rank] += min(chunk, max(0, numel - rank * chunk))
    return shares
    ### END SOLUTION


# %% [markdown]
# ## Ask FSDP itself
#
# To check a prediction we let FSDP do the real thing. A *fake* process group (from PyTorch's own test utilities)
# lets one process pretend to be rank *r* of *N*: FSDP wraps and shards the model exactly as it would on that rank,
# and the collectives do nothing, which is fine because we only count what each rank keeps. `fsdp_shares` builds a
# fresh model for each rank in turn and returns the counts, all in this one process.

# %%
import warnings

import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp import ShardingStrategy
from torch.testing._internal.distributed.fake_pg import FakeStore


def fsdp_shares(build, policy_for, world_size: int) -> list[int]:
    """What FSDP1 (FULL_SHARD, use_orig_params=True) leaves on each rank, one fake rank at a time."""
    shares = []
    for rank in range(world_size):
        dist.init_process_group("fake", rank=rank, world_size=world_size, store=FakeStore())
        try:
            model = build()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sharded = FSDP(model, auto_wrap_policy=policy_for(model), sharding_strategy=ShardingStrategy.FULL_SHARD,
                               device_id=torch.device("cpu"), use_orig_params=True)
            shares.append(sum(p.numel() for p in sharded.parameters()))
        finally:
            dist.destroy_process_group()
    return shares


# %% [markdown]
# ### Check your work (6 points)

# %% nbgrader={"grade": true, "grade_id": "check_rank_share", "locked": true, "points": 6, "schema_version": 3, "solution": false, "task": false}
for world_size in (2, 3):
    predicted = predict_rank_share(vla, wrap_classes(vla), world_size)
    actual = fsdp_shares(TinyVLA, openvla_policy, world_size)
    print(f"{world_size} ranks: predicted {predicted}, FSDP {actual}")
    assert predicted == actual, say(f"{world_size} ranks: predicted {predicted}, FSDP holds {actual}",
                                    f"{world_size} 个 rank：预测为 {predicted}，FSDP 实际持有 {actual}")
total = sum(p.numel() for p in vla.parameters())
assert sum(predict_rank_share(vla, wrap_classes(vla), 4)) == total, \
    say("the shares must add up to every parameter, once", "各 rank 的份额加起来必须恰好是全部参数，每个只算一次")
### BEGIN HIDDEN TESTS
assert predict_rank_share(vla, wrap_classes(vla), 1) == [total]
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## What the shares look like
#
# Each rank's share shrinks like 1/N. When a unit's size is not a multiple of N, its last chunk is short, so the
# last ranks can hold a few elements less than rank 0, never more.
# Try it: add 5 or 7 to `world_sizes`, or use `TinyVLA("opt-125m")` instead of `vla`.

# %%
world_sizes = [1, 2, 3, 4, 8, 16]
predictions = [predict_rank_share(vla, wrap_classes(vla), n) for n in world_sizes]
print(f"{'ranks':>5} {'rank 0':>9} {'last rank':>9} {'total / ranks':>14}")
for n, shares in zip(world_sizes, predictions, strict=True):
    print(f"{n:5d} {shares[0]:9,d} {shares[-1]:9,d} {total / n:14,.1f}")
assert all(p[0] == max(p) and sum(p) == total for p in predictions)
assert all(p[0] - total / n <= len(reference_plan) for n, p in zip(world_sizes, predictions, strict=True))
assert predictions[2][0] > predictions[2][-1]

# %% [markdown]
# A tied weight counts once. Qwen-2.5's LM head *is* its embedding matrix, one tensor reached from two modules;
# `parameters()` yields it once, and FSDP stores it once: the shares add up to the deduplicated total.

# %%
qwen_vla = TinyVLA("qwen25-0_5b-pure")
qwen_llm = qwen_vla.llm_backbone.llm
qwen_total = sum(p.numel() for p in qwen_vla.parameters())
qwen_shares = fsdp_shares(lambda: TinyVLA("qwen25-0_5b-pure"), openvla_policy, 2)
print(f"Qwen TinyVLA: {qwen_total:,} parameters | FSDP shares {qwen_shares}")
assert qwen_llm.lm_head.weight is qwen_llm.get_input_embeddings().weight
assert sum(qwen_shares) == qwen_total
assert qwen_shares == predict_rank_share(qwen_vla, wrap_classes(qwen_vla), 2)

# %% [markdown]
# ## Two real processes
#
# The package's demo starts two real processes with `torchrun` (gloo on a CPU, nccl on GPUs), wraps the language
# backbone with FSDP1 and prints each rank's share. Each process imports torch and builds the model, so it takes
# several seconds even on a fast CPU; it is off by default. Set `RUN_TORCHRUN = True` and re-run the cell to compare it with your prediction for the backbone alone.

# %%
import re

RUN_TORCHRUN = False
if RUN_TORCHRUN:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "vla_backbone.fsdp",
               "--backbone", "llama2-7b-pure", "--steps", "1"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    reported = [int(n.replace(",", "")) for n in re.findall(r"rank \d+ holds ([\d,]+) of", result.stdout)]
    print(result.stdout)
    assert reported == predict_rank_share(backbone, {backbone.transformer_layer_cls}, 2)
else:
    print("RUN_TORCHRUN is False: skipping the two-process run (set it to True to see it).")

# %% [markdown]
# ## Summary
# - A wrap plan is the root plus every module of a wrapped class, in module order; nested units are units too.
# - Each unit's own parameters are flattened, padded to a multiple of the number of ranks and cut into equal
#   chunks; a rank's share is the real elements in its chunks.
# - A fake process group runs FSDP's real sharding code for one rank at a time, in one process: a fast way to check
#   a plan before paying for a cluster.
#
# ## Exercises
# 1. Add `nn.LayerNorm` to the classes. Which new units appear, and how does the root's share change?
# 2. With `ShardingStrategy.NO_SHARD`, what does each rank hold? Check it with `fsdp_shares` (change the strategy).
# 3. Shard a stack of two `PatchBlock(30)` on 2 ranks: `fsdp_shares(lambda: nn.Sequential(PatchBlock(30),
#    PatchBlock(30)), lambda m: functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={PatchBlock}), 2)`.
#    Does your prediction still match? Which note above explains the difference, and how would you extend
#    `predict_rank_share` to cover it?
