# %% [markdown]
# # 10 · FSDP：包装策略、包装计划与一次真实的双进程运行
#
# 用 Adam 在 fp32 下训练一个 70 亿参数的 VLA，每个参数大约需要 16 字节（权重、梯度、两个优化器动量），合计超过 100 GB，没有哪块 GPU 单独装得下。OpenVLA 用 FSDP（全分片数据并行）来训练：每个 rank（进程编号）只保存权重、梯度和优化器状态的一个切片（即一个*分片*），并且每次只在某个 *FSDP 单元*即将运行前，才把这个单元的完整权重收集起来。哪些模块成为单元，是骨干网络唯一需要决定的事，通过 `get_fsdp_wrapping_policy()` 给出。本 notebook 先把这个策略拆开，在不启动 FSDP 的情况下预览各个单元，然后把一个微型骨干网络分片到两个真实进程上运行，再用 FSDP2 核对结果。
#
# **你将学到**
# - `get_fsdp_wrapping_policy()` 返回什么，FSDP 又是如何用 `recurse=True` 和 `recurse=False` 询问它的；
# - 如何用 `wrap_plan` 和 `unit_parameter_counts` 预览各个单元及其大小，无需进程组；
# - OpenVLA 的 VLM 如何用 `_or_policy` 组合多个策略（视觉 block、解码器层、投影器）；
# - 在 CPU 上（gloo）真实运行一次双进程 FSDP 并加以检查：每个 rank 各持一半参数、损失下降、FSDP2 结果一致；
# - FSDP1（包装模块、扁平参数）与 FSDP2（`fully_shard`、逐参数的 DTensor）的区别；
# - OpenVLA 的设置：混合分片（节点内分片、节点间复制）、autocast 加 bf16 混合精度与 fp32 归约、`use_orig_params=True`、用 `checkpoint_wrapper` 做激活检查点，以及 `use_orig_params` 所解决的 LoRA 陷阱；
# - 为什么单个 rank 并不是“同一条路径”：world size 为 1 时，FSDP1 会把任何策略都换成 `NO_SHARD`；
# - GPU 路径（nccl、每块 GPU 一个进程、bf16 或 fp16）：有 CUDA 时运行，并给出每个 rank 的参数字节数和 GPU 显存峰值。

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

# %% [markdown]
# ## 抢先一步：现在就启动双进程运行
#
# 一个真实的 FSDP 作业需要多个进程，每个 rank 一个，而且它们必须能找到彼此。`torchrun`（即 `torch.distributed.run` 模块）负责启动这些进程，并告诉每个进程它的 `RANK`、`LOCAL_RANK`、`WORLD_SIZE` 以及会合点（rendezvous）的地址；`--standalone` 让它自己挑一个空闲的本地端口，这样两个作业永远不会冲突。随后，包里的演示程序 `python -m vla_backbone.fsdp` 加入进程组（CPU 上用 gloo，GPU 上用 nccl），对骨干网络做分片，并训练几步。rank 0 会打印一份报告：计划（后端、world size、精度、分片策略、各个单元）、每个 rank 持有的参数份额及其 GPU 显存峰值，以及各步的损失。`--fsdp 2` 则把 FSDP1 的包装类换成 FSDP2。
#
# 每次运行都是一对全新的 Python 进程，干活之前要先导入 torch 和 transformers，这会让两个核心忙上好几秒。所以我们现在就在后台启动它，等到“真实运行”一节再读取输出。在双核机器上（Colab、测试机），时间预算只够跑一次：选 FSDP1，也就是 OpenVLA 使用的版本。FSDP2 则在后面直接在本 notebook 的进程里训练，并与这次运行的损失做比较。设置 `FSDP_VERSIONS = (1, 2)` 可以把 FSDP2 作业也一并并排启动（在四核及以上的机器上不会增加总耗时），下面的所有检查也会随之覆盖它。环境变量让这些运行保持离线、每个进程只用一个线程，并隐藏所有 GPU，所以这一部分在任何机器上表现都一样（GPU 路径单独成节）。我们先在本进程里加载骨干网络，确保各个 rank 启动之前，微型副本已经完整地写在磁盘上：如果由某个 rank 自己去构建，构建就发生在它的进程组之内，而 transformers 5.x 在那里只让 rank 0 写出模型文件。

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
# ## 包装策略
#
# `get_fsdp_wrapping_policy()` 返回的是 `torch.distributed.fsdp.wrap` 中的 `transformer_auto_wrap_policy`，并绑定了一个参数：骨干网络的 `transformer_layer_cls`，即解码器层的类。

# %%
import functools
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

policy = backbone.get_fsdp_wrapping_policy()
print(policy)
assert isinstance(policy, functools.partial) and policy.func is transformer_auto_wrap_policy
assert policy.keywords == {"transformer_layer_cls": {backbone.transformer_layer_cls}}

# %% [markdown]
# FSDP 从根模块开始遍历模块树，对每个模块调用策略，传入三个参数：`module`、`recurse` 和 `nonwrapped_numel`（尚未被下层单元认领的参数量）。`recurse=True` 时，问题是“要不要深入这个模块内部看看？”；`recurse=False` 时（子模块已处理完毕），问题是“这个模块要不要成为一个单元？”。`transformer_auto_wrap_policy` 对第一个问题总是回答“是”，对第二个问题则以 `isinstance(module, transformer_layer_cls)` 作答，表示大小的那个参数（`nonwrapped_numel`）根本不看。下面我们在几个模块上手动调用它。

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
# **动手试试：** 针对骨干网络中的任意模块、用任意一种模式询问策略。

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
# ## 包装计划：哪些模块会成为单元
#
# `vla_backbone.fsdp.wrap_plan(module, policy)` 不借助 FSDP 就能重放 FSDP 的遍历过程：`recurse=True` 说深入就深入，`recurse=False` 说成为单元就成为单元，根模块本身也是一个单元，因为它拥有所有没被其他单元认领的参数。`unit_parameter_counts` 再给出每个单元拥有的参数量（只算它自己的，不含嵌套在其中的单元）。下面把包装计划画成一棵树，根在最前。

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
# 根单元拥有嵌入、最终归一化层和 LM head：在微型副本上这占了模型的 98%，因为 Llama-2 的真实词表（添加 PAD token 并 resize 到 64 的倍数之后共 32064 行）远远大于两个宽度为 64 的层。真实的 Llama-2-7B 则是另一番景象。它的结构可以构建在 PyTorch 的 `meta` 设备上（只有形状、不占内存），包装计划在上面照样能用。

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
# 32 个层单元，每个 2.02 亿参数，根单元 2.63 亿。FSDP 每次只收集一个单元，所以最大的单元决定了峰值时收集起来的权重要占多少内存：好的策略会给出大小相近的单元，而一个什么都不认领的策略会把整个模型都留在根单元里。
#
# **动手试试：** 看看另一个模型家族的包装计划。

# %%
def plan_of(backbone_id):
    model, _ = get_llm_backbone_and_tokenizer(backbone_id)
    print(f"{backbone_id}: {type(model.llm).__name__}, wrapping {model.transformer_layer_cls.__name__}")
    return show_plan(model, model.get_fsdp_wrapping_policy())

first_plan = explore(plan_of, backbone_id=["llama2-7b-pure", "qwen25-0_5b-pure", "opt-125m", "phi-2-3b", "mistral-v0.1-7b-pure"])
assert first_plan == counts

# %% [markdown]
# ## 像 VLM 那样组合策略
#
# VLA 不只有语言模型。OpenVLA 的 VLM 用 `_or_policy` 构建自己的策略：只要列表中*任何一个*策略同意，模块就成为单元。这个列表包含视觉骨干网络的策略（它本身会包装每个 Transformer block，再包装整个视觉 Transformer）、LLM 的解码器层策略，以及一个点名投影器类的 `_module_wrap_policy`。我们在玩具模块上重建这一套：一个带两个 block 的视觉编码器、一个投影器，再加上微型骨干网络。

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
# 一共七个单元：根单元、视觉编码器（两个 block 嵌套在其中）、投影器，以及两个解码器层。投影器之所以成为单元，完全是因为 `_module_wrap_policy`；去掉它，投影器的参数就会落回根单元。各单元的参数量加起来仍然等于整个模型。

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
# ## 在一个进程里看 FSDP1 与 FSDP2
#
# 那次运行还在进行。这段时间里，本进程可以直接看看 FSDP 的内部。FSDP1 和 FSDP2 计算的东西相同，只是存放分片的方式不同：
#
# - **FSDP1**（`FullyShardedDataParallel`）给每个单元套上一层包装模块。在单元内部，它把所有参数展平并拼接成一个一维的 `FlatParameter`，再给每个 rank 分一段等长的连续切片，因此单个权重可能在任意位置被切开、分到不同 rank 上。同一个扁平参数中的所有张量共用一种 dtype；除非 `use_orig_params=True` 把原始参数保留为指向它的视图，否则它们的 `requires_grad` 也必须一致。
# - **FSDP2**（`fully_shard`）不套任何包装：它就地修改模块的类，并把每个参数替换成沿第 0 维分片（`Shard(0)`）的 `DTensor`。每个参数仍是独立的张量，拥有自己的 `requires_grad`、dtype 和优化器状态。
#
# 建一个 world size 为 1 的进程组（gloo，用内存里的 store 作为会合点），FSDP 就能在本 notebook 里运行。只有一个 rank 时没有谁可以分担，FSDP1 也清楚这一点：world size 为 1 时，不管传入什么策略，它都会换成 `NO_SHARD`（没有 all-gather，也没有 reduce-scatter，这个 rank 完整保留每个参数），并且每个单元警告一次。我们用 OpenVLA 的策略 `HYBRID_SHARD`（见下一节）来包装，把这些警告记录下来再打印，而不是任由它们以红字刷过：这正是要展示的行为，而不是噪声。结构（单元、扁平参数）与真正分片的运行相同，只是每个分片都是完整的。

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
# FSDP1：三个包装模块（根加两个层），每个都切换成了 `NO_SHARD` 并各警告一次；`parameters()` 给出三个扁平参数，它们的大小恰好等于包装计划中各单元的参数量：因为什么都没有分片，所以每个单元都是完整的。

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
# FSDP2：还是同一个对象，只是类变成了自动生成的 `FSDP<原类名>`；原来的参数名保持不变；每个参数都是沿第 0 维分片的 DTensor。FSDP2 没有切换到 `NO_SHARD` 这一步：在只有一个 rank 的网格上，唯一的那个分片就是整个张量。（后面会按同样的方式分片一个新副本来训练，并与真实运行的损失对照。）

# %%
assert fsdp2 is fsdp2_backbone and type(fsdp2).__name__ == "FSDP" + type(backbone).__name__
assert [name for name, _ in fsdp2.named_parameters()] == [name for name, _ in backbone.named_parameters()]
assert all(isinstance(p, DTensor) and p.placements == (Shard(0),) for p in fsdp2.parameters())
assert all(p.to_local().shape == p.shape for p in fsdp2.parameters())

# %% [markdown]
# ## OpenVLA 的设置：分片策略与混合精度
#
# OpenVLA 的 VLA 训练（以及照着它写的 `vla_backbone/fsdp.py`）这样包装模型：
#
# - 一种**混合**分片策略。OpenVLA 的选项 `full-shard`（VLA 的默认值）传入的是 `sharding_strategy=ShardingStrategy.HYBRID_SHARD`：参数、梯度和优化器状态在*同一节点*的各块 GPU 之间分片，在节点之间复制，这样 all-gather 只走节点内部的高速互联。在单个节点上，它就等同于 `FULL_SHARD`。另一个选项 `shard-grad-op` 传入 `ShardingStrategy._HYBRID_SHARD_ZERO2`，它还会在前向与反向之间保留已收集的参数（更快，但更占内存）。world size 为 1 时，任何策略都会变成 `NO_SHARD`，上面已经看到了；
# - `mixed_precision=MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.float32)`：收集起来的参数转成 bf16 参与计算，梯度在各 rank 间以 fp32 归约，分片保存的主权重保持 fp32；
# - 训练步本身还在 `torch.autocast("cuda", dtype=half_precision_dtype)` 之下运行，所以 OpenVLA 的精度是 autocast *加上* FSDP 的策略：autocast 在运行时为每个运算选定 dtype（即使输入是 fp32，矩阵乘法也用 bf16；交叉熵损失用 fp32），而策略决定存储和通信用什么精度；
# - `use_orig_params=True`（见下文的 LoRA 陷阱）和 `limit_all_gathers=True`（已有两个 all-gather 在进行时，CPU 线程会等待，从而让收集单元所占的内存有上限）。
#
# 只要每个节点有多块 GPU，演示程序对这两个选项就做同样的映射，它的双进程运行报告的也是 `HYBRID_SHARD`（在“真实运行”一节中检查）。每个节点只有一块 GPU 时，它有意和 OpenVLA 不同：混合策略会在只有一块 GPU 的组内分片，FSDP1 会把它变成 `NO_SHARD`，而且只在这个单卡组内同步梯度，各节点就会各训各的；所以演示程序改为跨节点分片（`FULL_SHARD`、`SHARD_GRAD_OP`）。同样的配置也能放进这个单进程的进程组，在 CPU 上以 `torch.autocast("cpu", ...)` 运行。我们在第一个注意力投影上挂一个钩子，记录它计算时所用权重的 dtype 以及 autocast 的状态。

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
# 在前向传播内部，权重是 bf16（来自 FSDP 的策略），autocast 也以同样的 dtype 开启；logits 是 bf16，损失是 fp32（transformers 用 fp32 计算交叉熵），而存储的参数及其梯度仍是 fp32。参与计算的 bf16 正是骨干网络的 `half_precision_dtype`（见 notebook 09）。FSDP2 用 `fully_shard(module, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32))` 做同样的选择，在支持 bf16 的 GPU 上，演示程序传入的正是这个策略。在 OpenVLA 中，除 `full-finetune`、`vla-full-train` 和 `vla-sandwich-train` 这三个阶段外，*冻结的*视觉编码器都会在包装之前直接转成 bf16，因为没有优化器需要它的 fp32 副本（见 `prismatic/training/strategies/fsdp.py` 中的 `FSDPStrategy.run_setup`）。
#
# ## LoRA 陷阱：“uniform requires_grad”
#
# 参数高效微调会把可训练的小适配器放进冻结层的*内部*。有一个 Prismatic 的分支在被 FSDP1 包装的解码器层里加入 LoRA，结果遇到了“FlatParameter requires uniform requires_grad”错误，因为同一个单元的扁平参数要同时装下可训练和冻结的张量。我们在每个 query 投影上加一个最小的 LoRA 适配器来复现它（torch 2.13 中的报错措辞略有不同）。

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
# 在 `use_orig_params=True` 下，FSDP1 把每个原始参数连同它自己的 `requires_grad` 保留为扁平参数上的视图，同一个模型就能正常包装和训练：一次反向传播之后，恰好只有适配器的权重有梯度。（FSDP2 从来没有这个问题，因为它是逐参数分片的。）OpenVLA 传入了 `use_orig_params=True`，也就给这种做法（在 FSDP1 单元里加 LoRA）留了余地。

# %%
lora_model = backbone_with_lora()
lora_fsdp = fsdp1_one_rank(lora_model, auto_wrap_policy=lora_model.get_fsdp_wrapping_policy(), use_orig_params=True)
lora_fsdp(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids).loss.backward()
with_grad = sorted(name.replace("_fsdp_wrapped_module.", "") for name, p in lora_fsdp.named_parameters() if p.grad is not None)
print(with_grad)
assert with_grad and all("lora_" in name for name in with_grad)
assert all((p.grad is not None) == p.requires_grad for p in lora_fsdp.parameters())

# %% [markdown]
# ## FSDP 下的激活检查点
#
# 在 FSDP 下，OpenVLA 并不调用骨干网络的 `enable_gradient_checkpointing()`（HF 自带的检查点机制，见 notebook 08），而是用 `apply_activation_checkpointing` 把每个 `transformer_layer_cls` 模块包进 PyTorch 的非可重入 `checkpoint_wrapper`：反向传播时重新计算每一层的激活，而不是把它们存下来。这一步不需要进程组，所以我们直接把它应用到一个普通的微型骨干网络上并检查：被包装的恰好是各个解码器层；state dict 的键不变（包装器隐藏了自己的名字）；损失和梯度与未包装的模型一致；为反向传播保存的激活字节数变少了。

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
# ## 真实运行
#
# 回到开头启动的那个作业。rank 0 打印了计划（后端、world size、精度、请求的分片策略以及 FSDP 实际采用的策略）、各个单元（与我们预览的包装计划相同）、分片后每个 rank 持有的参数量和字节数（在 CPU 上，GPU 显存峰值显示为“n/a”），以及每一步的损失（两个 rank 的平均值）。两个 rank 看到的是同一个 batch，所以这个损失就是单个进程会算出的损失。

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
# 我们解析这份报告并逐项检查：FSDP1 收到的是 OpenVLA 的 `HYBRID_SHARD`，并且保持不变（一个节点上的两个 rank），它和 `FULL_SHARD` 一样让两个 rank 各持有一半参数；各单元与 `unit_parameter_counts` 一致；损失每一步都在下降。此外，第一步的损失必须等于单个进程对演示用提示词算出的损失，因为分片改变的只是权重存放的位置，而不是计算本身。

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
# 现在把 FSDP2 和那次运行放在一起比较。这里新加载一个微型骨干网络，按上面的方式用 FSDP2 分片，再按演示程序的设置训练同样的步数：相同的提示词、相同的 AdamW、学习率 1e-2。分片决定的是权重放在哪里，而不是计算本身，所以它的损失必须与双进程 FSDP1 运行一致（差别只在归约中的舍入），如果启动了双进程 FSDP2 运行，它的损失也应如此。它的梯度和参数一样，也是 DTensor。

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
# **动手试试：** 在新的单元格里自己启动一次运行，比如用 FSDP2 跑 Qwen。先在这里加载它一次，让它的微型副本就位，然后运行 `print(collect(launch(torchrun_command(2, "--fsdp", "2", "--backbone", "qwen25-0_5b-pure"), CPU_ENV)))`（后出现的 `--backbone` 会覆盖前面的）。Qwen 的绑定嵌入会让根单元怎样变化？各 rank 的份额还是 50% 吗？
#
# ## GPU 路径
#
# 在带 CUDA GPU 的机器上，同一个演示程序每块 GPU 起一个进程，使用 nccl 后端，并按 OpenVLA 的精度方案训练：GPU 原生支持 bf16 计算时（A100、L4、H100 及更新的型号）用 bf16，不支持时（Colab 免费的 T4、V100）改用带损失缩放的 fp16 混合精度，报告的 `precision:` 一行会写明。如果请求的进程数多于机器上的 GPU 数，程序会立即停下，并告诉你应该改为运行什么。
#
# 单块 GPU（Colab）并不是“同一条路径，只是规模更小”。只有一个 rank 时，FSDP1 会把 `HYBRID_SHARD` 换成 `NO_SHARD`，和上面在本进程里看到的一样：没有 all-gather，没有 reduce-scatter，这个 rank 持有全部参数，什么也没省下。FSDP2 仍会把每个参数变成 DTensor，只是放在只有一个 rank 的网格上。分片要从两块 GPU 起才能省显存，那时每个 rank 的份额降到 1/N。下面的单元格用 `torch.cuda.device_count()` 个进程先后运行 FSDP1 和 FSDP2，并检查每个 rank 的参数字节数和 GPU 显存峰值；在没有 CUDA 的机器上，它会打印跳过了哪些内容。`tests/gpu/run.sh` 会在 GPU 机器上运行同样的内容，并把数据写进 `docs/gpu.md`。

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
# ## 小结
# - `get_fsdp_wrapping_policy()` 就是绑定了解码器层类的 `transformer_auto_wrap_policy`：处处深入（`recurse=True`），把每个解码器层做成一个单元（`recurse=False`），其余参数归根单元。
# - `wrap_plan` 和 `unit_parameter_counts` 无需进程组就能预览各单元及其大小；真实运行打印出的是同一份计划。
# - VLM 的策略是视觉策略、LLM 策略和投影器的 `_module_wrap_policy` 三者的 `_or_policy`；没有任何策略点名的类最终落在根单元里。
# - 两个进程在 CPU 上把微型骨干网络各分一半并用 FSDP1（包装模块，每个单元一个扁平参数）完成训练；FSDP2（`fully_shard`，每个参数一个 DTensor）训练出的损失也相同（至多相差归约中的舍入误差）。
# - OpenVLA 的 `full-shard` 对应 `HYBRID_SHARD`（节点内分片、节点间复制；在单个节点上等同于 `FULL_SHARD`），`shard-grad-op` 对应 `_HYBRID_SHARD_ZERO2`；它的精度是 autocast 到 `half_precision_dtype` 再加上 FSDP 的 `MixedPrecision`（bf16 计算、fp32 归约、fp32 主权重）；它传入 `use_orig_params=True`（有了它，同一单元内才允许混用不同的 `requires_grad`），并用 `checkpoint_wrapper` 对每个解码器层做激活检查点。
# - 只有一个 rank 时，FSDP1 会把任何策略都换成 `NO_SHARD`：单块 GPU 跑通的是代码，而不是分片。在 GPU 上，演示程序使用 nccl、每块 GPU 一个进程，并且只在 GPU 支持时才用 bf16（否则用带损失缩放的 fp16）。
#
# ## 练习
# 1. 把策略 `functools.partial(_module_wrap_policy, module_classes={nn.Linear})` 交给 `unit_parameter_counts`。微型骨干网络会得到多少个单元？根单元保留了什么？为什么这是个糟糕的计划？
# 2. 用 `torch.distributed.fsdp.wrap.size_based_auto_wrap_policy`（取 `min_num_params=30_000`）写一个按大小划分的策略，并在微型骨干网络上把它的计划与解码器层策略做比较。
# 3. 扩展 `ToyVLM` 的策略，让视觉编码器的 `patch_embed` 自成一个单元，并为新的计划和参数量写上断言。
# 4. 在一个 world size 为 1 的进程组里用 FSDP2 包装 `lora_model`（先对每层调用 `fully_shard`，再对根调用），验证它无需任何额外参数就能接受混合的 `requires_grad`。
