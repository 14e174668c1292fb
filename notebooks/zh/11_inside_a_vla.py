# %% [markdown]
# # 11 · VLA 里的骨干网络
#
# 前面的 notebook 都是把语言模型单独拿出来看。VLA 使用它的方式很固定：用 `embed_input_ids` 把提示词变成嵌入，把投影后的图像 patch（图像块）插到 BOS token 的紧后面，让这些 patch 不参与损失计算，再让模型预测几个*动作 token*，也就是训练词表里最后 256 个 id。本 notebook 围绕一个微型骨干网络（Llama-2 的真实分词器，加上一个 64 维的小模型）把这条路径完整搭起来，视觉编码器只是一个一眼就能读完的玩具模型；每一步都和库的实际行为对照：动作分词器、拼接、标签、HF 算出来的损失、填充，以及分词器没有 BOS 时会坏在哪里。途中还会实际测量：OpenVLA 把动作写成文本的做法，为什么在有些分词器上行得通，在另一些上却不行。
#
# **你将学到**
# - 玩具视觉编码器和投影器如何产出宽度为 `backbone.embed_dim` 的 patch 嵌入；
# - OpenVLA 的 `ActionTokenizer`：256 个区间，在 Llama-2 上是 id 31744–31999，`action_token_begin_idx` 比它们小一，以及它的 `vocab_size` 实际数的是什么；
# - 为什么动作文本在 SentencePiece 分词器（Llama-2、Mistral）上能原样变回同样的 id，在字节级 BPE（phi-2、Qwen、OPT）上却不能，以及 MiniVLA 的 `use_extra` 如何绕开这个问题；
# - OpenVLA 的动作提示词、动作 token 和标签（除动作和 EOS 外全是 -100）是怎样拼在一起的；
# - patch 插在哪里（`[emb[:, :1], patches, emb[:, 1:]]`），以及这对注意力掩码和标签意味着什么；
# - HF 在模型内部对标签做了移位，用手写的交叉熵来核对；
# - 右侧填充为什么能让一个 batch 里每一行的 BOS 都留在第 0 列；
# - 只训练投影器和最后一层相关模块，几步优化就能让模型学会一个动作；
# - 为什么 phi-2 和 Qwen 跳过 BOS 检查，它们改用什么办法。

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
# ## 玩具视觉编码器和投影器
#
# 真实的 VLA 里，视觉部分是一个大型的预训练视觉 Transformer；但语言模型从它那里拿到的只是一串向量，每个图像 patch 一个，宽度与模型的嵌入相同。要扮演这个角色，一个卷积核和步长都为 8 的 `Conv2d` 就够了：它把 3×32×32 的图像切成 4×4 个 8×8 的 patch，再把每个 patch 变成一个 32 维特征。投影器是一个两层的小 MLP，把这些特征映射到 `backbone.embed_dim`。
#
# 本 notebook 里的张量都不大，所以 PyTorch 只用一个 CPU 线程（由 `setup()` 设置）：64 维的矩阵用多线程得不到任何好处，机器繁忙时，多个线程的时间反而都花在互相等待上。最宽的张量是 logits：每个位置一行，共 32064 个分数（resize 之后的词表大小），所以 batch 始终保持很小。

# %%
import numpy as np
import torch
from torch import nn

import vla_backbone

assert torch.get_num_threads() == 1  # setup() set it
backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")


class ToyVisionEncoder(nn.Module):
    """3x32x32 image -> 16 patch features of width 32."""

    def __init__(self, patch: int = 8, width: int = 32) -> None:
        super().__init__()
        self.patchify = nn.Conv2d(3, width, kernel_size=patch, stride=patch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.patchify(images).flatten(2).transpose(1, 2)


torch.manual_seed(0)
vision = ToyVisionEncoder()
projector = nn.Sequential(nn.Linear(32, backbone.embed_dim), nn.GELU(), nn.Linear(backbone.embed_dim, backbone.embed_dim))
image = torch.rand(1, 3, 32, 32)

features = vision(image)
patches = projector(features)
print("features:", tuple(features.shape), " projected patches:", tuple(patches.shape))

# %% [markdown]
# 16 个 patch，每个都和这个骨干网络的 token 嵌入一样宽（微型副本是 64）：关于语言模型，投影器需要知道的只有这个宽度。

# %%
NUM_PATCHES = 16
assert features.shape == (1, NUM_PATCHES, 32)
assert patches.shape == (1, NUM_PATCHES, backbone.embed_dim) and backbone.embed_dim == 64
assert backbone.embed_input_ids(torch.tensor([[1]])).shape[-1] == patches.shape[-1]

# %% [markdown]
# ## 动作提示词
#
# 骨干网络通过 `prompt_builder_fn` 指明自己的提示词格式；`llama2-7b-pure` 用的是朴素的 `In: ... Out:` 模板。human 轮次是 OpenVLA 固定的问句，指令转成小写后填在问句中间。BOS（`<s>`，id 1）由分词器加在最前面：构造器自己不写 BOS，所以它只出现一次。

# %%
from vla_backbone.prompting import openvla_action_prompt

instruction = "Pick up the red cup"
builder = backbone.prompt_builder_fn("openvla")
builder.add_turn("human", openvla_action_prompt(instruction))
prompt = builder.get_prompt()
prompt_ids = tokenizer(prompt).input_ids
print(repr(prompt))
print(prompt_ids)
print(tokenizer.convert_ids_to_tokens(prompt_ids))

# %%
assert prompt == "In: What action should the robot take to pick up the red cup?\nOut:"
assert prompt_ids == [1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 2654, 18002, 29973, 13, 3744, 29901]
assert prompt_ids.count(tokenizer.bos_token_id) == 1

# %% [markdown]
# ## 动作变成 token
#
# 我们的动作有七个数，和 OpenVLA 一样（位置增量、旋转增量，最后是夹爪）。`ActionTokenizer` 就是上游的那个类，全程使用 numpy。它先把每个数裁剪到 [-1, 1]，再在 256 个区间里找到它所在的区间（边界为 `np.linspace(-1, 1, 256)`；`np.digitize` 把区间编号为 1 到 256），然后把第 `b` 个区间写成 token id `tokenizer.vocab_size - b`。`tokenizer.vocab_size` 只算训练过的词表，Llama-2 是 32000：家族后来添加的 `<PAD>`（id 32000）不算在内，所以动作占用的是 id 31744 到 31999。三个方法：`token_ids(action)` 给出 id（这是我们加的辅助方法，上游在 `__call__` 内部计算它们），直接调用动作分词器，得到 OpenVLA 写进回答里的文本，`decode_token_ids_to_actions(ids)` 则把 id 变回数值。

# %%
from vla_backbone.actions import ActionTokenizer

action_tokenizer = ActionTokenizer(tokenizer)
action = np.array([0.12, -0.4, 0.75, 0.0, -0.9, 0.33, 1.0])
action_ids = action_tokenizer.token_ids(action)
print("action ids:  ", action_ids.tolist())
print("bins:        ", (tokenizer.vocab_size - action_ids).tolist())
print("action text: ", repr(action_tokenizer(action)), tokenizer.convert_ids_to_tokens(action_ids.tolist()))
print("decoded:     ", action_tokenizer.decode_token_ids_to_actions(action_ids).round(4).tolist())

# %%
assert tokenizer.vocab_size == 32000 and len(tokenizer) == 32001 and tokenizer.pad_token_id == 32000
assert action_ids.tolist() == (32000 - np.digitize(action, np.linspace(-1, 1, 256))).tolist()
assert action_tokenizer(action) == tokenizer.decode(action_ids.tolist())
assert action_tokenizer.token_ids(np.array([1.7, -3.0])).tolist() == action_tokenizer.token_ids(np.array([1.0, -1.0])).tolist()
all_ids = action_tokenizer.token_ids(np.linspace(-1, 1, 10001))
assert (all_ids.min(), all_ids.max(), len(np.unique(all_ids))) == (31744, 31999, 256)

# %% [markdown]
# `vocab_size` 和 `action_token_begin_idx` 的含义都和名字不太一样。`action_tokenizer.vocab_size` 是区间个数 256，而不是分词器的词表大小。`action_token_begin_idx` 是 31743，比最小的动作 id *还小一*：OpenVLA 的训练循环用 `ids > action_token_begin_idx` 挑出动作所在的位置。+1.0 是第 256 个区间里唯一的值，对应 id 31744；如果起始索引再大一，这个掩码就会把所有“夹爪完全张开”的动作都漏掉。

# %%
top_bin = action_tokenizer.token_ids(np.array([1.0]))
print("vocab_size:", action_tokenizer.vocab_size, " action_token_begin_idx:", action_tokenizer.action_token_begin_idx,
      " id of +1.0:", top_bin.tolist())
assert action_tokenizer.vocab_size == action_tokenizer.n_bins == 256
assert action_tokenizer.action_token_begin_idx == 31743 == all_ids.min() - 1
assert (all_ids > action_tokenizer.action_token_begin_idx).all()
assert top_bin.tolist() == [31744] and not (top_bin > action_tokenizer.action_token_begin_idx + 1).any()

# %% [markdown]
# 解码无法还原精确值，只能给出区间中心，所以误差最多是半个区间宽度，即 1/255。256 个边界其实只围出 255 个区间：第 256 个区间里只有恰好等于 +1.0 的值，它被解码成最后一个区间的中心，因此 id 31744 和 31745 解码出同一个值。

# %%
values = np.linspace(-1.0, 1.0, 20001)
decoded = action_tokenizer.decode_token_ids_to_actions(action_tokenizer.token_ids(values))
half_bin = (action_tokenizer.bins[1] - action_tokenizer.bins[0]) / 2
print(f"half a bin: {half_bin:.6f}   largest round-trip error: {np.abs(decoded - values).max():.6f}")

# %%
assert abs(half_bin - 1 / 255) < 1e-12
assert np.abs(decoded - values).max() <= half_bin + 1e-12
assert action_tokenizer.bin_centers.shape == (255,) and len(np.unique(decoded)) == 255
assert (32000 - action_tokenizer.token_ids(np.array([1.0, 0.9999]))).tolist() == [256, 255]
assert action_tokenizer.decode_token_ids_to_actions(np.array([31744])) == action_tokenizer.decode_token_ids_to_actions(np.array([31745]))

# %% [markdown]
# 画成阶梯图一目了然：横轴是连续的动作值，纵轴是解码后的动作值。超出 [-1, 1] 的部分阶梯不再上升（裁剪）；右边的放大图能看清每一级台阶，宽 2/255。

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"x": "continuous action", "y": "decoded action (bin centre)", "full": "256 bins over [-1, 1]",
           "zoom": "zoom: a few bins", "ideal": "identity"},
    "zh": {"x": "连续动作值", "y": "解码后的动作值（区间中心）", "full": "[-1, 1] 上的 256 个区间",
           "zoom": "放大：几个区间", "ideal": "恒等线"},
}[LANG]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, (low, high), title in zip(axes, [(-1.3, 1.3), (0.0, 0.05)], [TEXT["full"], TEXT["zoom"]]):
    xs = np.linspace(low, high, 2001)
    ax.plot(xs, action_tokenizer.decode_token_ids_to_actions(action_tokenizer.token_ids(xs)), drawstyle="steps-post")
    ax.plot(xs, xs, "--", color="gray", linewidth=0.8, label=TEXT["ideal"])
    ax.set(xlabel=TEXT["x"], ylabel=TEXT["y"], title=title)
    ax.legend(loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## input ids 与标签
#
# OpenVLA 把动作写成文本 `action_tokenizer(action)`，作为提示词里的回答轮次，然后一次性对整条训练提示词分词，只给最后 `len(action) + 1` 个 token 打标签：七个动作 token 和 EOS。它们前面的所有位置（包括 BOS）都是 -100（损失会忽略这些位置）。在 Llama-2 上，训练 id 依次是推理提示词的 id、`▁`（29871，也就是 `Out:` 后面的空格，见 notebook 05）、七个动作 id，最后是 EOS。

# %%
IGNORE = -100


def make_example(instruction: str, action: np.ndarray) -> tuple[list[int], list[int]]:
    """Input ids and labels for one (instruction, action) pair, without the image, as OpenVLA's dataset makes them."""
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", openvla_action_prompt(instruction))
    builder.add_turn("gpt", action_tokenizer(action))
    input_ids = tokenizer(builder.get_prompt(), add_special_tokens=True).input_ids
    labels = [IGNORE] * (len(input_ids) - (len(action) + 1)) + input_ids[-(len(action) + 1):]
    return input_ids, labels


input_ids, labels = make_example(instruction, action)
for token, label in zip(tokenizer.convert_ids_to_tokens(input_ids), labels):
    print(f"{token!r:14} {label}")

# %%
assert input_ids == prompt_ids + [29871] + action_ids.tolist() + [tokenizer.eos_token_id]
assert labels[0] == IGNORE and sum(label != IGNORE for label in labels) == 7 + 1
assert labels[-8:] == action_ids.tolist() + [tokenizer.eos_token_id]

# %% [markdown]
# 从末尾倒着数，只有在动作文本恰好变回那七个动作 id 时才是对的。能不能做到取决于分词器，值得实际测一测。
#
# ## 动作文本能变回同样的 id 吗？
#
# 做法：随机抽 24 个 7 维动作，用骨干网络自己的提示词构造器把每个动作写成回答轮次，对整条提示词分词，数一数有多少条提示词里连续出现了这个动作的七个 id。下面用各家族的真实分词器来测（每种分词器加载一个骨干网络；这里只用到分词器和提示词构造器，所以用推理模式）：

# %%
ROUND_TRIP_IDS = ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]
others = {backbone_id: vla_backbone.get_llm_backbone_and_tokenizer(backbone_id, inference_mode=True)
          for backbone_id in ROUND_TRIP_IDS[1:] + ["qwen25-0_5b-extra"]}
others["llama2-7b-pure"] = (backbone, tokenizer)


def training_prompt_ids(family_backbone, family_tokenizer, actions, sample):
    """The whole OpenVLA training prompt for `sample`, tokenized in one call."""
    family_builder = family_backbone.prompt_builder_fn("openvla")
    family_builder.add_turn("human", openvla_action_prompt(instruction))
    family_builder.add_turn("gpt", actions(sample))
    return family_tokenizer(family_builder.get_prompt()).input_ids


def survives(family_backbone, family_tokenizer, actions, sample):
    """Whether the action's seven ids come back, in a row, from the tokenized training prompt."""
    ids = actions.token_ids(sample).tolist()
    tokens = training_prompt_ids(family_backbone, family_tokenizer, actions, sample)
    return any(tokens[i : i + len(ids)] == ids for i in range(len(tokens)))


samples = np.random.default_rng(0).uniform(-1, 1, size=(24, 7))
round_trips = {}
for backbone_id in ROUND_TRIP_IDS:
    family_backbone, family_tokenizer = others[backbone_id]
    actions = ActionTokenizer(family_tokenizer)
    round_trips[backbone_id] = sum(survives(family_backbone, family_tokenizer, actions, sample) for sample in samples)
    print(f"{backbone_id:22s} {type(family_tokenizer).__name__:20s} action ids "
          f"{actions.action_token_begin_idx + 1}..{actions.action_token_end_idx - 1}: "
          f"{round_trips[backbone_id]:2d}/{len(samples)} come back")

# %% [markdown]
# 在 Llama-2 和 Mistral 上每个动作都能变回来；在 phi-2、Qwen-2.5 和 OPT 上则有一些不能。后三者的具体数目取决于抽样，换个随机种子就会变。不随抽样变化的是：Llama-2 和 Mistral 能把所有可能的动作都原样还原（下一个单元格说明原因），而字节级分词器里存在无法还原的动作（再下一个单元格给出一例）。

# %%
assert round_trips["llama2-7b-pure"] == round_trips["mistral-v0.1-7b-pure"] == len(samples)
assert all(round_trips[backbone_id] < len(samples) for backbone_id in ("phi-2-3b", "qwen25-0_5b-pure", "opt-125m"))

# %% [markdown]
# **SentencePiece 为什么能保住它们。** Llama-2 和 Mistral 词表末尾的 256 个 token，每个都是模型很少见到的文字（汉字、谚文、马拉雅拉姆文等）里的单个字符，而且两个词表里都没有由两个或更多这类字符组成的片段，也没有由 `▁` 加其中一个字符组成的片段。SentencePiece 只能输出词表里已有的片段，所以一串动作字符无从合并：每个字符都原样变回它自己。

# %%
for backbone_id in ("llama2-7b-pure", "mistral-v0.1-7b-pure"):
    family_tokenizer = others[backbone_id][1]
    tail = set(family_tokenizer.convert_ids_to_tokens(list(range(31744, 32000))))
    joined = [piece for piece in family_tokenizer.get_vocab()
              if len(piece) >= 2 and any(c in tail for c in piece) and all(c in tail or c == "▁" for c in piece)]
    print(f"{backbone_id:22s} single characters: {all(len(piece) == 1 for piece in tail)}, "
          f"pieces joining them: {len(joined)}")
    assert all(len(piece) == 1 for piece in tail) and not joined

# %% [markdown]
# **字节级 BPE 为什么保不住。** GPT-2 风格的分词器（phi-2、Qwen、OPT）先在空格和标点处把文本切成一个个词，再在每个词内部合并字节。它们词表末尾的 256 个 token 都是普通的词片段，其中很多不以空格开头（开头的空格显示为 `Ġ`）。这样的片段会粘到相邻片段上，分词器再把粘成的整个词从头切分。在 phi-2 上，第 102 个区间对应的片段是 `======`：如果一个动作有两个相邻的值落在这个区间，写出来就是 `======` + `======`，分词器读到的是 `============`，而它本身就是一个 token。写进去的是七个动作，读出来却只有六个 token，“给最后八个 token 打标签”就会标错位置。

# %%
phi, phi_tokenizer = others["phi-2-3b"]
phi_actions = ActionTokenizer(phi_tokenizer)
merging = np.array([0.0, -0.2, -0.2, 0.0, 0.0, 0.0, 1.0])
written = phi_actions.token_ids(merging).tolist()
read_back = training_prompt_ids(phi, phi_tokenizer, phi_actions, merging)[-8:]
print("written:", written, phi_tokenizer.convert_ids_to_tokens(written))
print("read:   ", read_back, phi_tokenizer.convert_ids_to_tokens(read_back))

# %%
assert phi_tokenizer.convert_ids_to_tokens(written[1:3]) == ["======", "======"]
assert phi_tokenizer.convert_ids_to_tokens(read_back[1]) == "============" and written[1] not in read_back
# Seven in, six out: the two pieces became one, the other five came back as written (then phi-2's "\n" and EOS).
assert len(written) == 7 and read_back[:6] == [written[0], read_back[1], *written[3:]]
assert not survives(phi, phi_tokenizer, phi_actions, merging)

# %% [markdown]
# **phi-2 还有第二个坑。** 它训练词表的最后一个 token 是 `<|endoftext|>`（id 50256），而这个 token 同时是它的 BOS 和 EOS。第 1 个区间（从 -1.0 到略小于 -0.992 的值，以及裁剪后变成 -1.0 的所有值）写成 `vocab_size - 1`，恰好就是这个 token：只要某个动作维度落在这个区间，回答中间就会出现 EOS，生成到这里便停止了。这是上游的公式，我们原样保留（OpenVLA 从没训练过 phi-2 的 VLA）；五个家族里，只有 phi-2 的动作 id 中混有特殊 token。要把 OpenVLA 移植到 phi-2，就得像 MiniVLA 为 Qwen 所做的那样（见下文），给动作准备专用的 token。

# %%
lowest = phi_actions.token_ids(np.array([-1.0])).tolist()
print("phi-2: -1.0 ->", lowest, phi_tokenizer.convert_ids_to_tokens(lowest), "| EOS id:", phi_tokenizer.eos_token_id)
for backbone_id in ROUND_TRIP_IDS:
    family_tokenizer = others[backbone_id][1]
    family_actions = ActionTokenizer(family_tokenizer)
    bin_ids = range(family_actions.action_token_begin_idx + 1, family_actions.action_token_end_idx)
    clash = sorted(set(bin_ids) & set(family_tokenizer.all_special_ids))
    print(f"{backbone_id:22s} special tokens among the 256 action ids: {family_tokenizer.convert_ids_to_tokens(clash)}")
    assert bool(clash) == (backbone_id == "phi-2-3b")
assert lowest == [phi_tokenizer.eos_token_id] == [50256]

# %% [markdown]
# **MiniVLA 的办法：`use_extra`。** MiniVLA 是 OpenVLA 基于 Qwen-2.5 的后继，它给 Qwen 的分词器添加了 256 个 token `<|extra_0|>` … `<|extra_255|>`（骨干网络 `qwen25-0_5b-extra`），并用 `use_extra=True` 构建动作分词器：区间从 `len(tokenizer)` 往下数，而不是从训练词表的末尾往下数，第 `b` 个区间变成 id `len(tokenizer) - b`，也就是某个新添加的 token。添加的 token 在任何合并发生之前就从文本里被切出来，所以永远不会和相邻片段合并，每个动作都能变回来。

# %%
extra, extra_tokenizer = others["qwen25-0_5b-extra"]
extra_actions = ActionTokenizer(extra_tokenizer, use_extra=True)
ends = extra_actions.token_ids(np.array([1.0, -1.0])).tolist()
extra_round_trips = sum(survives(extra, extra_tokenizer, extra_actions, sample) for sample in samples)
print(f"len(tokenizer) = {len(extra_tokenizer)}; +1.0 -> {ends[0]} {extra_tokenizer.convert_ids_to_tokens(ends[0])}, "
      f"-1.0 -> {ends[1]} {extra_tokenizer.convert_ids_to_tokens(ends[1])}; {extra_round_trips}/{len(samples)} come back")

# %%
assert len(extra_tokenizer) == extra_actions.action_token_end_idx == 151921
assert ends == [151665, 151920] and extra_tokenizer.convert_ids_to_tokens(ends) == ["<|extra_0|>", "<|extra_255|>"]
assert extra_actions.action_token_begin_idx == 151664
assert extra_round_trips == len(samples)

# %% [markdown]
# **动手试试。** 选一条指令和一个动作，看看 VLA 训练时用到的 id 和标签。指令再长，也只是多出一些提示词 token（全为 -100）；带标签的位置始终是 8 个。

# %%
from vla_backbone.notebook import explore

ACTIONS = {
    "reach forward, gripper open": [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    "lift, gripper closed": [0.0, 0.0, 0.8, 0.0, 0.0, 0.0, -1.0],
    "out of range (clipped)": [1.5, -2.0, 0.0, 0.0, 0.0, 0.0, 1.0],
}


def show_example(instruction: str, action: str) -> int:
    values = np.array(ACTIONS[action])
    ids, labels = make_example(instruction, values)
    decoded = action_tokenizer.decode_token_ids_to_actions(action_tokenizer.token_ids(values))
    print(f"{len(ids)} tokens, {sum(label != IGNORE for label in labels)} labelled")
    print("labelled ids:", [label for label in labels if label != IGNORE])
    print("decoded action:", decoded.round(3).tolist())
    return sum(label != IGNORE for label in labels)


labelled = explore(show_example, instruction=["Pick up the red cup", "Open the top drawer and put the sponge inside"], action=list(ACTIONS))
assert labelled == 8
assert all(sum(label != IGNORE for label in make_example(instruction, values)[1]) == 8
           for instruction in ("Pick up the red cup", "Open the top drawer and put the sponge inside")
           for values in map(np.array, ACTIONS.values()))


# %% [markdown]
# ## 把 patch 拼接在 BOS 紧后面
#
# VLM 用 `backbone.embed_input_ids` 得到文本嵌入，然后在第一个位置之后切开序列：`[emb[:, :1], patches, emb[:, 1:]]`。注意力掩码为每个 patch 补上 True，因为模型必须关注它们；标签为每个 patch 补上 -100，因为没有人要求模型去预测像素。BOS 在位置 0 上的标签仍然是 -100。下面这一个函数就把三件事一起做完，而且支持整个 batch。

# %%
def splice(embeddings, attention_mask, labels, patches):
    """Insert `patches` after position 0 (BOS) in the embeddings, the attention mask and the labels."""
    batch, num_patches = patches.shape[:2]
    patch_mask = torch.full((batch, num_patches), True, dtype=attention_mask.dtype)
    patch_labels = torch.full((batch, num_patches), IGNORE, dtype=labels.dtype)
    return (
        torch.cat([embeddings[:, :1], patches, embeddings[:, 1:]], dim=1),
        torch.cat([attention_mask[:, :1], patch_mask, attention_mask[:, 1:]], dim=1),
        torch.cat([labels[:, :1], patch_labels, labels[:, 1:]], dim=1),
    )


ids_t = torch.tensor([input_ids])
embeddings = backbone.embed_input_ids(ids_t)
inputs_embeds, attention_mask, vlm_labels = splice(embeddings, torch.ones_like(ids_t), torch.tensor([labels]), patches)
print("text:", tuple(embeddings.shape), "-> with patches:", tuple(inputs_embeds.shape))

# %% [markdown]
# 位置 0 仍然是 BOS，位置 1 到 16 是 patch，之后是整体右移了 16 位的文本。

# %%
T = len(input_ids)
assert inputs_embeds.shape == (1, T + NUM_PATCHES, backbone.embed_dim)
torch.testing.assert_close(inputs_embeds[:, 0], backbone.embed_input_ids(torch.tensor([[tokenizer.bos_token_id]]))[:, 0])
torch.testing.assert_close(inputs_embeds[:, 1 : 1 + NUM_PATCHES], patches)
torch.testing.assert_close(inputs_embeds[:, 1 + NUM_PATCHES :], embeddings[:, 1:])
assert attention_mask.shape == vlm_labels.shape == (1, T + NUM_PATCHES) and attention_mask.all()
assert (vlm_labels[:, : 1 + NUM_PATCHES] == IGNORE).all()
assert vlm_labels[0, 1 + NUM_PATCHES :].tolist() == labels[1:]

# %% [markdown]
# ## 像 VLM 那样调用前向传播
#
# VLM 根本不传 id，只传拼接好的嵌入：`backbone(input_ids=None, inputs_embeds=..., attention_mask=..., labels=...)`。标签和输入位于同样的位置，由模型自己做移位，于是位置 *t* 的 logits 对应的是位置 *t + 1* 的标签。我们自己写一遍移位后的交叉熵来验证这一点。logits 的列数等于 resize 之后嵌入矩阵的行数，即 32064。

# %%
import torch.nn.functional as F

output = backbone(input_ids=None, inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=vlm_labels)


def shifted_cross_entropy(logits, labels):
    """Mean cross-entropy of logits[:, t] against labels[:, t + 1], skipping -100."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)


by_hand = shifted_cross_entropy(output.logits, vlm_labels)
unshifted = F.cross_entropy(output.logits.flatten(0, 1), vlm_labels.flatten(), ignore_index=IGNORE)
print(f"HF loss {output.loss.item():.5f}   shifted by hand {by_hand.item():.5f}   not shifted {unshifted.item():.5f}")

# %%
assert output.logits.shape == (1, T + NUM_PATCHES, 32064) and backbone.llm.config.vocab_size == 32064
assert torch.isfinite(output.loss)
torch.testing.assert_close(output.loss, by_hand)
assert not torch.allclose(output.loss, unshifted)

# %% [markdown]
# 第一个计入损失的 logits 位于 `Out:` 后面的 `▁` 上：它预测第一个动作 token。BOS、patch 以及提示词其余位置上的 logits 都不计入损失。

# %%
scored = (vlm_labels[0, 1:] != IGNORE).nonzero().flatten()
space_position = NUM_PATCHES + len(prompt_ids)
print("positions whose logits are scored:", scored.tolist(), " the ▁ after Out: at", space_position)
assert scored.tolist() == list(range(space_position, space_position + 8))
assert input_ids[space_position - NUM_PATCHES] == 29871


# %% [markdown]
# ## 右侧填充的 batch
#
# 指令长短不一，组成 batch 就需要填充。collator 在**右侧**填充：id 用 `backbone.pad_token_id`（`<PAD>`，32000），标签用 -100，注意力掩码用 0。正是右侧填充让拼接能对整个 batch 一次完成：每一行仍然以 BOS 开头，所以位置 1 在每一行都是“BOS 紧后面”。如果改成左侧填充，较短那一行的第 0 列会是 PAD，它的 patch 就会落在 PAD 之后。

# %%
def collate(examples):
    """Right-pad (input_ids, labels) pairs into tensors, as OpenVLA's collator does."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.tensor([ids + [backbone.pad_token_id] * (width - len(ids)) for ids, _ in examples])
    labels = torch.tensor([labels + [IGNORE] * (width - len(labels)) for _, labels in examples])
    return ids, (ids != backbone.pad_token_id).long(), labels


short = make_example("pick up the cup", np.array([0.1, 0.2, -0.3, 0.0, 0.0, 0.0, 1.0]))
long = make_example("open the top drawer and put the sponge inside", np.array([-0.5, 0.4, 0.2, 0.1, 0.0, -0.1, -1.0]))
batch_ids, batch_mask, batch_labels = collate([short, long])
images = torch.rand(2, 3, 32, 32)
batch_embeds, batch_attention, batch_vlm_labels = splice(
    backbone.embed_input_ids(batch_ids), batch_mask, batch_labels, projector(vision(images))
)
print("lengths:", len(short[0]), len(long[0]), "-> padded ids", tuple(batch_ids.shape), "-> spliced", tuple(batch_embeds.shape))
print("mask of the short row after splicing:", batch_attention[0].tolist())

# %%
pad = len(long[0]) - len(short[0])
assert pad > 0 and backbone.pad_token_id == tokenizer.pad_token_id == 32000
assert (batch_ids[:, 0] == tokenizer.bos_token_id).all()
assert batch_ids[0, -pad:].eq(backbone.pad_token_id).all() and (batch_labels[0, -pad:] == IGNORE).all()
assert batch_attention[0].tolist() == [1] * (len(short[0]) + NUM_PATCHES) + [0] * pad
assert (batch_vlm_labels[:, 1 : 1 + NUM_PATCHES] == IGNORE).all()
left_padded_short_row = [backbone.pad_token_id] * pad + short[0]
assert left_padded_short_row[0] == backbone.pad_token_id != tokenizer.bos_token_id

# %% [markdown]
# 在填充后的 batch 里，短的那一行得到的 logits 与它单独计算时完全相同（因果注意力从不往右看，掩码又遮住了填充位置）；batch 的损失仍然是移位后的交叉熵，在两行共 16 个带标签的 token 上取平均。

# %%
with torch.no_grad():
    batch_out = backbone(input_ids=None, inputs_embeds=batch_embeds, attention_mask=batch_attention, labels=batch_vlm_labels)
    alone = backbone(input_ids=None, inputs_embeds=batch_embeds[:1, : len(short[0]) + NUM_PATCHES])
real = len(short[0]) + NUM_PATCHES
torch.testing.assert_close(batch_out.logits[0, :real], alone.logits[0], atol=1e-5, rtol=1e-4)
torch.testing.assert_close(batch_out.loss, shifted_cross_entropy(batch_out.logits, batch_vlm_labels))
assert (batch_vlm_labels != IGNORE).sum() == 16
print(f"batch loss {batch_out.loss.item():.4f}; the short row's logits match its unpadded forward pass")

# %% [markdown]
# ## 训练几步
#
# 现在来做最小的 VLA 训练：一个（图像，指令，动作）样本，40 步 AdamW。语言模型除了 `last_layer_finetune_modules`（输入嵌入、最后一个解码器层、LM head）之外全部冻结，这和 OpenVLA 的 `last-layer-finetune` 阶段一样；不同的是我们同时训练投影器，让图像特征也能随之调整。视觉编码器保持冻结。

# %%
backbone.requires_grad_(False)
for module in backbone.last_layer_finetune_modules:
    module.requires_grad_(True)
vision.requires_grad_(False)
trainable = [p for p in backbone.parameters() if p.requires_grad] + list(projector.parameters())
frozen_layer = backbone.llm.model.layers[0]
print(f"trainable parameters: {sum(p.numel() for p in trainable):,} of {sum(p.numel() for p in backbone.parameters()) + sum(p.numel() for p in projector.parameters()):,}")
assert not any(p.requires_grad for p in frozen_layer.parameters())
assert all(p.requires_grad for p in backbone.llm.model.layers[-1].parameters())

# %% [markdown]
# 把贪心解码逐步写出来：从拼接好的推理提示词（BOS、patch、提示词文本，以及上游 `predict_action` 补上的 `▁`）出发，取 arg-max 的 token，把它的嵌入接到序列末尾，重复七次。解码出的 id 再交给 `decode_token_ids_to_actions`。

# %%
target_ids = action_ids.tolist()
inference_ids = prompt_ids + [29871]
assert inference_ids == input_ids[: len(inference_ids)]


@torch.no_grad()
def greedy_action_ids(image, prompt_ids, steps=7):
    text = backbone.embed_input_ids(torch.tensor([prompt_ids]))
    sequence = torch.cat([text[:, :1], projector(vision(image)), text[:, 1:]], dim=1)
    generated = []
    for _ in range(steps):
        next_id = backbone(input_ids=None, inputs_embeds=sequence).logits[:, -1].argmax(-1)
        generated.append(next_id.item())
        sequence = torch.cat([sequence, backbone.embed_input_ids(next_id[:, None])], dim=1)
    return generated


def action_error(ids):
    decode = action_tokenizer.decode_token_ids_to_actions
    return float(np.abs(decode(np.array(ids)) - decode(np.array(target_ids))).mean())


before = greedy_action_ids(image, inference_ids)
print("target:", target_ids)
print("before:", before, f"mean action error {action_error(before):.3f}")

# %%
torch.manual_seed(0)
optimizer = torch.optim.AdamW(trainable, lr=1e-2)
ids_t, labels_t = torch.tensor([input_ids]), torch.tensor([labels])
losses = []
for step in range(40):
    embeds, mask, step_labels = splice(backbone.embed_input_ids(ids_t), torch.ones_like(ids_t), labels_t, projector(vision(image)))
    loss = backbone(input_ids=None, inputs_embeds=embeds, attention_mask=mask, labels=step_labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
after = greedy_action_ids(image, inference_ids)
print("losses:", [round(v, 2) for v in losses])
print("after: ", after, f"mean action error {action_error(after):.3f}")
print("correct action tokens:", sum(a == b for a, b in zip(before, target_ids)), "->", sum(a == b for a, b in zip(after, target_ids)))

# %%
TEXT = {"en": {"step": "step", "loss": "loss (action tokens + EOS)", "title": "40 AdamW steps on one example"},
        "zh": {"step": "步数", "loss": "损失（动作 token + EOS）", "title": "在一个样本上做 40 步 AdamW"}}[LANG]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(losses, marker="o", markersize=3)
ax.set(xlabel=TEXT["step"], ylabel=TEXT["loss"], title=TEXT["title"])
plt.tight_layout()
plt.show()

# %% [markdown]
# 损失降到一半以下，贪心解码得到的动作也向目标靠拢：猜对的动作 token 更多了，动作空间里的误差也更小了。

# %%
assert losses[-1] < 0.5 * losses[0]
assert sum(a == b for a, b in zip(after, target_ids)) > sum(a == b for a, b in zip(before, target_ids))
assert action_error(after) < action_error(before)
assert not any(p.grad is not None for p in frozen_layer.parameters())

# %% [markdown]
# **动手试试。** 把 `lr=1e-2` 改成 `3e-2`，或者把步数改成 20，然后从头重新运行 notebook（只重跑训练单元格的话，会在上次留下的权重上继续训练）。再把投影器也冻结（从 `trainable` 里去掉）：这时只能靠最后一层相关模块，用原样的 patch 完成全部学习。
#
# ## 没有 BOS 的分词器：phi-2 与 Qwen
#
# 拼接的前提是位置 0 上是 BOS。骨干网络加载时由 `check_bos` 来保证这一点：分词器在添加特殊 token 时必须在开头加上 BOS，而且只有这时才加。有两个家族按设计就通不过，它们被列在 `SPECIAL_CASES` 里，因此跳过这项检查：
# - **phi-2**：唯一的特殊 token `<|endoftext|>`（id 50256）同时充当 BOS、EOS 和 UNK，分词器什么都不添加；
# - **Qwen-2.5**（MiniVLA 的那些 id）：根本没有 BOS token。

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error

qwen, qwen_tokenizer = others["qwen25-0_5b-pure"]
print("qwen bos_token_id:", qwen_tokenizer.bos_token_id, "  phi bos_token:", repr(phi_tokenizer.bos_token), "=", phi_tokenizer.bos_token_id)
for name, tok in [("qwen", qwen_tokenizer), ("phi", phi_tokenizer)]:
    with expect_error(TokenizerBOSError, match="does not prepend BOS"):
        check_bos(tok, f"my-{name}")

# %%
assert {"phi-2-3b", "qwen25-0_5b-pure", "qwen25-7b-pure"} <= SPECIAL_CASES
assert qwen_tokenizer.bos_token_id is None
assert phi_tokenizer.bos_token == phi_tokenizer.eos_token == "<|endoftext|>" and phi_tokenizer.bos_token_id == 50256

# %% [markdown]
# 不加处理会出什么问题：用 Qwen 的分词器对朴素的 `In: ... Out:` 提示词分词，第一个 id 就已经是一个词 `In`。在位置 1 拼接，图像就会落在这个词*之后*。

# %%
plain_ids = qwen_tokenizer(prompt).input_ids
print(plain_ids[:6], qwen_tokenizer.convert_ids_to_tokens(plain_ids[:6]))
assert qwen_tokenizer.convert_ids_to_tokens(plain_ids[0]) == "In"
assert plain_ids == qwen_tokenizer(prompt, add_special_tokens=False).input_ids

# %% [markdown]
# 解决办法在提示词构造器里：由它自己写出第一个 token。`PhiPromptBuilder` 让文本以 phi-2 的 BOS `<|endoftext|>` 开头，所以 patch 正好落在它后面，和 Llama-2 完全一样。

# %%
phi_builder = phi.prompt_builder_fn("openvla")
phi_builder.add_turn("human", openvla_action_prompt(instruction))
phi_ids = phi_tokenizer(phi_builder.get_prompt()).input_ids
print(repr(phi_builder.get_prompt()))
print(phi_ids[:5], phi_tokenizer.convert_ids_to_tokens(phi_ids[:5]))
assert phi_builder.get_prompt().startswith("<|endoftext|>Input: ")
assert phi_ids[0] == phi_tokenizer.bos_token_id and phi_ids[1] != phi_tokenizer.bos_token_id

# %% [markdown]
# Qwen 没有 BOS 可写。基于 Qwen 的 VLA（例如 MiniVLA）把自己的 id 列进 `SPECIAL_CASES`，让骨干网络能够加载，第一个 token 则交给提示词构造器：`QwenPromptBuilder` 的每条提示词都以系统轮次开头，所以第一个 id 是 `<|im_start|>`（151644），在位置 1 拼接时，图像落在 `<|im_start|>` 和角色名 `system`（单个 token，8948）之间：

# %%
qwen_builder = qwen.prompt_builder_fn("openvla")
qwen_builder.add_turn("human", openvla_action_prompt(instruction))
qwen_ids = qwen_tokenizer(qwen_builder.get_prompt()).input_ids
im_start = qwen_tokenizer.convert_tokens_to_ids("<|im_start|>")
print(qwen_ids[:6], qwen_tokenizer.convert_ids_to_tokens(qwen_ids[:6]))
qwen_embeds, _, _ = splice(qwen.embed_input_ids(torch.tensor([qwen_ids])), torch.ones(1, len(qwen_ids), dtype=torch.long),
                           torch.full((1, len(qwen_ids)), IGNORE), torch.zeros(1, NUM_PATCHES, qwen.embed_dim))
assert qwen_ids[:2] == [im_start, 8948] == [151644, 8948] and qwen_builder.get_prompt().startswith("<|im_start|>system\n")
torch.testing.assert_close(qwen_embeds[:, 0], qwen.embed_input_ids(torch.tensor([[im_start]]))[:, 0])

# %% [markdown]
# 所以这项检查只是被跳过，并没有真正通过：对这些 id 来说，“图像前面总是一个固定的 token”这一保证来自提示词构造器，加载时没有任何东西去验证它。给这样的骨干网络一条不是由它的构造器生成的提示词，patch 又会跟在一个普通的词后面。
#
# ## 小结
# - 视觉部分以 `NUM_PATCHES` 个宽为 `backbone.embed_dim` 的向量进入语言模型，按 `[emb[:, :1], patches, emb[:, 1:]]` 拼接；每个 patch 的注意力掩码为 True，标签为 -100。
# - `ActionTokenizer` 把第 `b` 个区间（[-1, 1] 上的 1..256）写成 id `tokenizer.vocab_size - b`，在 Llama-2 上就是 31744–31999。它的 `vocab_size` 是区间个数（256）；`action_token_begin_idx`（31743）比最小的动作 id 小一，这样 `ids > action_token_begin_idx` 才能保住最高的那个区间。解码返回区间中心，误差最多半个区间（1/255）。
# - 在提示词里分词后，动作文本在 SentencePiece 分词器（Llama-2、Mistral：都是单个字符，没有片段能把它们连起来）上能变回同样的 id，在字节级 BPE（phi-2、Qwen、OPT：片段会粘到相邻片段上再被重新切分）上则不一定。MiniVLA 的 `use_extra=True` 把区间放到 256 个新添加的 `<|extra_i|>` token 上，它们永远不会合并。
# - 只有动作 token 和 EOS 带标签；`backbone(input_ids=None, inputs_embeds=..., attention_mask=..., labels=...)` 在模型内部移位标签；collator 在右侧填充，BOS 因此留在第 0 列。
# - 只训练投影器和 `last_layer_finetune_modules` 40 步，贪心解码出的动作就已经向目标靠拢。
# - phi-2 和 Qwen 跳过 BOS 检查（`SPECIAL_CASES`），改由提示词构造器写出第一个 token。
#
# ## 练习
# 1. 挪动拼接位置：把 patch 放在位置 0（BOS 之前），再放到提示词末尾。未训练模型的损失会变吗？训练 40 步后，哪种放法最先达到目标动作？
# 2. 为 `phi-2-3b` 和 `qwen25-0_5b-pure` 写一个不经过文本的 `make_example`：直接用提示词的 id 和 `token_ids(action)` 拼出 `input_ids`。两者的 patch 各插在哪里？每个分词器的 `ActionTokenizer(tokenizer).action_token_begin_idx` 是多少？
# 3. 在 OPT 上找出一对会被分词器合并成单个 token 的相邻动作 token（遍历 `action_token_begin_idx` 以上的 id 对）。上面 24 个随机动作里，哪些包含这样的 token 对？
# 4. 在一个填充后的 batch 里，用两个图像不同、动作也不同的样本训练。训练 80 步后，贪心解码能区分这两张图像吗？如果两张图像相同，又会怎样？
