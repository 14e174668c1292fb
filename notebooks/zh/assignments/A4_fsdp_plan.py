# %% [markdown]
# # A4 · 作业：预测 FSDP 的包装计划和每个 rank 分到的参数
#
# 在一次 FSDP 训练上花掉 GPU 时长之前，你应该能说清楚 FSDP 会怎样处理你的模型：哪些模块会成为 FSDP 单元，每个 rank 会持有多少参数。这两件事都由两条简短的规则决定。在这份作业里，你要为一个由视觉骨干网络、投影器和语言骨干网络组成的小型 VLA，把这两条规则写成代码，再拿 FSDP 本身来核对你的预测。
#
# **你要完成的事**
# - 不借助 FSDP，预测 OpenVLA 组合包装策略产生的包装计划（对应 notebook 10）；
# - 预测在 `FULL_SHARD` 下、rank 数量任意时，每个 rank 持有多少参数；
# - 用 `vla_backbone.fsdp.wrap_plan`，以及逐个 rank 运行的 FSDP 自身的分片代码，验证这两项预测。
#
# **如何评分。** 在写着 `# 在这里写你的代码` 的单元格里写代码，并删掉 `raise NotImplementedError` 那一行。运行每个检查单元格，它的分值写在上方的标题里。最后在仓库的克隆里运行评分程序，它会测试更多的模型和更多的 rank 数量：
#
# `.venv/bin/python -m pytest tests/assignments/test_a4_fsdp_plan.py --notebook path/to/A4_fsdp_plan.ipynb`
#
# （评分程序直接读取 `.ipynb`；用 jupytext 导出的 `.py` 也可以。）

# %%
# Set-up, the same in every notebook: on Colab install the package; everywhere print versions and seed.
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "vla-backbone[notebooks] @ git+https://github.com/vla-backbone/vla-backbone-notebooks"], check=True)
from vla_backbone.notebook import setup
setup()

# %%
LANG = "zh"  # the language of this notebook's prose and plot labels
from vla_backbone.notebook import use_language
use_language(LANG)


# %%
def say(en: str, zh: str) -> str:
    """A check's message, in the language of this notebook."""
    return zh if LANG == "zh" else en


# %% [markdown]
# ## 一个小型 VLA
#
# OpenVLA 的模型由三部分组成：视觉骨干网络（一个 ViT：patch 嵌入、一叠 block、一个 norm）、投影器（把视觉宽度映射到语言模型宽度的 MLP），以及语言骨干网络。`TinyVLA` 以玩具规模具备同样的三部分，语言部分是一个微型 Llama 副本。这里用不到它的前向传播：FSDP 的包装计划只取决于模块树和参数大小。

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
# ## OpenVLA 的包装策略
#
# FSDP 的*自动包装策略*是一个函数，FSDP 会对每个模块调用它：`recurse=True` 时问的是“要不要往里看？”，`recurse=False` 时问的是“这个模块要不要成为一个独立的单元？”。OpenVLA 用 `_or_policy` 组合了三个策略：视觉骨干网络的（包装每个 ViT block）、语言骨干网络的（`get_fsdp_wrapping_policy()`：包装每个解码器层），以及一个针对投影器类的策略。没有被任何策略认领的部分（嵌入、norm、输出头）留在根单元，也就是模型本身。
#
# `vla_backbone.fsdp.wrap_plan(model, policy)` 不创建任何进程组，只是重演一遍 FSDP 的遍历过程，返回各个单元的名字，根单元（`""`）排在最前。你的预测就拿它作参照。

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
# ## 任务 1 · 预测包装计划
#
# 编写 `predict_wrap_plan(model, classes)`：假设某个策略会包装所有类在 `classes` 之中的模块，返回 `wrap_plan` 对这个策略给出的列表。要根据模块树自己推出来，**不许**调用 `wrap_plan`、`unit_parameter_counts` 或策略本身（评分程序会把它们屏蔽掉）。规则如下：
#
# - 根模块永远是一个单元，排在最前，记作 `""`；
# - 其他模块只要是 `classes` 中某个类的实例，就是一个单元，名字与 `model.named_modules()` 中的一致，即使它位于另一个单元内部；
# - 单元按 `named_modules()` 的遍历顺序排列。

# %% nbgrader={"grade": false, "grade_id": "predict_wrap_plan", "locked": false, "schema_version": 3, "solution": true, "task": false}
def predict_wrap_plan(model: nn.Module, classes) -> list[str]:
    """The FSDP units a policy wrapping ``classes`` would create: ``""`` (the root), then in module order."""
    ### BEGIN SOLUTION
    classes = tuple(classes)
    return [""] + [name for name, module in model.named_modules() if name and isinstance(module, classes)]
    ### END SOLUTION


# %% [markdown]
# ### 检查你的代码（4 分）

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
# ## FULL_SHARD 怎样切分一个单元
#
# 每个单元拥有其内部、且不属于任何嵌套单元的参数；其余参数归根单元所有。FSDP（这里是 FSDP1，`use_orig_params=True`，和 OpenVLA 的用法一致）把每个单元自己的参数展平成一个扁平参数，用零填充到 rank 数量的整数倍，再切成等长的连续块：rank 0 拿第一块，rank 1 拿下一块，依此类推。一个 rank 分到的份额，就是它在各个单元里分到的那一块中真实（非填充）元素的个数之和。被两个模块共享的参数（绑定在一起的嵌入和输出头）只存一份。
#
# （FSDP 还会在参数*之间*填充，让每个参数都从 16 字节边界开始。这里每个参数的元素个数都是 8 的倍数，所以不论 float32 还是 bfloat16，这种填充都是零。）
#
# 举个例子：一个 10 个元素的单元放在 4 个 rank 上，会被填充到 12，切成每块 3 个，于是各 rank 分别持有 3、3、3、1 个真实元素。

# %%
assert all(p.numel() % 8 == 0 for p in vla.parameters())
chunks = torch.arange(12).chunk(4)
assert [int((chunk < 10).sum()) for chunk in chunks] == [3, 3, 3, 1]

# %% [markdown]
# ## 任务 2 · 预测每个 rank 分到多少
#
# 编写 `predict_rank_share(model, classes, world_size)`：FSDP 用针对 `classes` 的策略、在 `FULL_SHARD` 下包装 `model` 之后，每个 rank 持有的参数元素个数，以包含 `world_size` 个 int 的列表返回。用你的 `predict_wrap_plan` 找出各个单元；同样，不许调用 `wrap_plan` 或 `unit_parameter_counts`。

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
# ## 直接问 FSDP
#
# 要核对预测，我们就让 FSDP 真刀真枪地跑一遍。一个*假的*进程组（来自 PyTorch 自己的测试工具）可以让一个进程扮演 *N* 个 rank 中的第 *r* 个：FSDP 会像在那个 rank 上一样包装并切分模型，集合通信则什么也不做——这没关系，因为我们只数每个 rank 留下了什么。`fsdp_shares` 依次为每个 rank 构建一个新模型，返回统计结果，全部在当前这一个进程里完成。

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
# ### 检查你的代码（6 分）

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
# ## 各个 rank 分到的参数
#
# 每个 rank 分到的参数大约按 1/N 缩小。当某个单元的大小不是 N 的整数倍时，它的最后一块会短一些，所以靠后的 rank 可能比 rank 0 少几个元素，但绝不会更多。动手试试：往 `world_sizes` 里加上 5 或 7，或者用 `TinyVLA("opt-125m")` 代替 `vla`。

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
# 绑定的权重只算一次。Qwen-2.5 的输出头*就是*它的嵌入矩阵，同一个张量可以从两个模块访问到；`parameters()` 只返回它一次，FSDP 也只存一份：各 rank 的份额加起来，正好等于去重后的总数。

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
# ## 两个真实进程
#
# 包里的演示程序用 `torchrun` 启动两个真实进程（CPU 上用 gloo，GPU 上用 nccl），用 FSDP1 包装语言骨干网络，并打印每个 rank 分到的参数。每个进程都要导入 torch 并构建模型，所以即使在很快的 CPU 上也要好几秒，默认关闭。把 `RUN_TORCHRUN` 设为 `True` 并重新运行这个单元格，就可以和你对单独语言骨干网络的预测作比较。

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
# ## 小结
# - 包装计划就是根单元，加上所有属于被包装类的模块，按模块顺序排列；嵌套的单元也是单元。
# - 每个单元自己的参数被展平、填充到 rank 数量的整数倍，再切成等长的块；一个 rank 分到的，就是它那些块里的真实元素。
# - 假的进程组可以在一个进程里逐个 rank 运行 FSDP 真正的分片代码：在为集群掏钱之前，这是核对包装计划的快捷办法。
#
# ## 练习
# 1. 把 `nn.LayerNorm` 加进 `classes`。会出现哪些新单元？根单元分到的参数有什么变化？
# 2. 用 `ShardingStrategy.NO_SHARD` 时，每个 rank 持有什么？用 `fsdp_shares` 验证一下（把策略改掉）。
# 3. 在 2 个 rank 上切分两个 `PatchBlock(30)` 组成的堆叠：`fsdp_shares(lambda: nn.Sequential(PatchBlock(30), PatchBlock(30)), lambda m: functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={PatchBlock}), 2)`。你的预测还对吗？上面哪条说明解释了这个差异？你会怎样扩展 `predict_rank_share` 来覆盖这种情况？
