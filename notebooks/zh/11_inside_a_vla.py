# %% [markdown]
# # 11 · VLA 里的骨干网络
#
# 前面的 notebook 都是把语言模型单独拿出来看。VLA 使用它的方式很固定：用 `embed_input_ids` 把提示词变成嵌入，把投影后的图像 patch 插到 BOS token 的紧后面，让这些 patch 不参与损失计算，再让模型预测几个*动作 token*——也就是词表里最后 256 个 id。本 notebook 围绕一个微型骨干网络把这条路径完整搭起来，视觉编码器只是一个一眼就能读完的玩具模型；每一步都和库的实际行为对照：拼接、标签、HF 算出来的损失、填充、动作区间，以及分词器没有 BOS 时会坏在哪里。
#
# **你将学到**
# - 玩具视觉编码器和投影器如何产出宽度为 `backbone.embed_dim` 的 patch 嵌入；
# - OpenVLA 的动作提示词、动作 token 和标签（除动作和 EOS 外全是 -100）是怎样拼在一起的；
# - patch 插在哪里（`[emb[:, :1], patches, emb[:, 1:]]`），以及这对注意力掩码和标签意味着什么；
# - HF 在模型内部对标签做了移位——用手写的交叉熵来核对；
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
# 本 notebook 里的张量都很小，所以 PyTorch 只用一个 CPU 线程（由 `setup()` 设置）：64 维的矩阵用多线程得不到任何好处，机器繁忙时，多个线程的时间反而都花在互相等待上。

# %%
import torch
from torch import nn

import vla_backbone

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
# 骨干网络通过 `prompt_builder_fn` 指明自己的提示词格式；`llama2-7b-pure` 用的是朴素的 `In: ... Out:` 模板。human 轮次是 OpenVLA 固定的问句，中间嵌入转成小写的指令。BOS（`<s>`）由分词器加在最前面：构造器自己不写 BOS，所以它只出现一次。

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
assert prompt_ids[0] == tokenizer.bos_token_id and prompt_ids.count(tokenizer.bos_token_id) == 1

# %% [markdown]
# ## 动作变成 token
#
# 我们的动作有七个数，和 OpenVLA 一样（位置增量、旋转增量，最后是夹爪）。`ActionTokenizer` 先把每个数裁剪到 [-1, 1]，再在 256 个区间（边界为 `torch.linspace(-1, 1, 256)`）里找到它所在的区间，把第 `b` 个区间写成 token id `vocab_size - b`。`vocab_size` 只算训练出来的词表，这里是 1024：家族后来添加的 `<PAD>`（id 1024）不算在内，所以动作占用的是 id 768 到 1023。

# %%
from vla_backbone.actions import ActionTokenizer

action_tokenizer = ActionTokenizer(tokenizer)
action = torch.tensor([0.12, -0.4, 0.75, 0.0, -0.9, 0.33, 1.0])
action_ids = action_tokenizer.encode(action)
print("action ids:", action_ids.tolist())
print("bins:      ", action_tokenizer.bin_index(action).tolist())
print("decoded:   ", [round(v, 4) for v in action_tokenizer.decode(action_ids).tolist()])

# %%
assert tokenizer.vocab_size == 1024 and len(tokenizer) == 1025 and tokenizer.pad_token_id == 1024
assert action_tokenizer.action_token_begin_idx == 768
assert torch.equal(action_ids, tokenizer.vocab_size - action_tokenizer.bin_index(action))
assert ((action_ids >= 768) & (action_ids < 1024)).all()
assert torch.equal(action_tokenizer.encode(torch.tensor([1.7, -3.0])), action_tokenizer.encode(torch.tensor([1.0, -1.0])))

# %% [markdown]
# 解码无法还原精确值，只能给出区间中心，所以误差最多是半个区间宽度，即 1/255。256 个边界其实只围出 255 个区间：第 256 个区间里只有恰好等于 +1.0 的值，它被解码成最后一个区间的中心，因此 id 768 和 769 解码出同一个值。

# %%
values = torch.linspace(-1.0, 1.0, 20001)
decoded = action_tokenizer.decode(action_tokenizer.encode(values))
half_bin = (action_tokenizer.bins[1] - action_tokenizer.bins[0]).item() / 2
print(f"half a bin: {half_bin:.6f}   largest round-trip error: {(decoded - values).abs().max():.6f}")

# %%
assert abs(half_bin - 1 / 255) < 1e-7
assert (decoded - values).abs().max() <= half_bin + 1e-6
assert action_tokenizer.bin_centers.numel() == 255 and decoded.unique().numel() == 255
assert action_tokenizer.bin_index(torch.tensor([1.0, 0.9999])).tolist() == [256, 255]
assert action_tokenizer.decode(torch.tensor([768])) == action_tokenizer.decode(torch.tensor([769]))

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
sweep = torch.linspace(-1.3, 1.3, 5001)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, (low, high), title in zip(axes, [(-1.3, 1.3), (0.0, 0.05)], [TEXT["full"], TEXT["zoom"]]):
    xs = sweep if low < -1 else torch.linspace(low, high, 2001)
    ax.plot(xs, action_tokenizer.decode(action_tokenizer.encode(xs)), drawstyle="steps-post")
    ax.plot(xs, xs, "--", color="gray", linewidth=0.8, label=TEXT["ideal"])
    ax.set(xlabel=TEXT["x"], ylabel=TEXT["y"], title=title)
    ax.legend(loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## input ids 与标签
#
# 训练序列依次是提示词、动作 id、EOS。标签在需要模型学习的位置照抄 id，其余位置一律填 -100（损失会忽略它）：只有七个动作 token 和 EOS 带标签，提示词（包括 BOS）全是 -100。
#
# 我们直接把动作 id 接在后面。OpenVLA 的做法则是先把它们写成文本（`action_tokenizer(action)`），再对整条提示词重新分词，然后给最后 `len(action) + 1` 个 token 打标签。这只有在文本能原样变回同样的 id 时才行得通。微型副本把词表末尾的 256 个 token 注册成了独立的 token，所以能做到这一点，下面用 50 个随机动作验证；换成你自己的分词器时，先检查这一步，再决定能不能走文本这条路。

# %%
IGNORE = -100


def make_example(instruction: str, action: torch.Tensor) -> tuple[list[int], list[int]]:
    """Input ids and labels for one (instruction, action) pair, without the image."""
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", openvla_action_prompt(instruction))
    prompt_ids = tokenizer(builder.get_prompt()).input_ids
    target = action_tokenizer.encode(action).tolist() + [tokenizer.eos_token_id]
    return prompt_ids + target, [IGNORE] * len(prompt_ids) + target


input_ids, labels = make_example(instruction, action)
for token, label in zip(tokenizer.convert_ids_to_tokens(input_ids), labels):
    print(f"{token!r:48} {label}")

# %%
assert input_ids[: len(prompt_ids)] == prompt_ids and input_ids[-1] == tokenizer.eos_token_id
assert labels[0] == IGNORE and sum(label != IGNORE for label in labels) == 7 + 1
assert labels[-8:] == action_ids.tolist() + [tokenizer.eos_token_id]

torch.manual_seed(0)
samples = torch.rand(50, 7) * 2 - 1
same = 0
for sample in samples:
    text_builder = backbone.prompt_builder_fn("openvla")
    text_builder.add_turn("human", openvla_action_prompt(instruction))
    text_builder.add_turn("gpt", action_tokenizer(sample))
    same += tokenizer(text_builder.get_prompt()).input_ids[-8:-1] == action_tokenizer.encode(sample).tolist()
print(f"text round trip gives the same action ids for {same} of {len(samples)} random actions")
assert same == len(samples)

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
    values = torch.tensor(ACTIONS[action])
    ids, labels = make_example(instruction, values)
    decoded = action_tokenizer.decode(action_tokenizer.encode(values))
    print(f"{len(ids)} tokens, {sum(label != IGNORE for label in labels)} labelled")
    print("labelled ids:", [label for label in labels if label != IGNORE])
    print("decoded action:", [round(v, 3) for v in decoded.tolist()])
    return sum(label != IGNORE for label in labels)


labelled = explore(show_example, instruction=["Pick up the red cup", "Open the top drawer and put the sponge inside"], action=list(ACTIONS))
assert labelled == 8


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
# VLM 根本不传 id，只传拼接好的嵌入：`backbone(input_ids=None, inputs_embeds=..., attention_mask=..., labels=...)`。标签和输入位于同样的位置，由模型自己做移位，于是位置 *t* 的 logits 对应的是位置 *t + 1* 的标签。我们自己写一遍移位后的交叉熵来验证这一点。

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
assert output.logits.shape == (1, T + NUM_PATCHES, backbone.llm.config.vocab_size)
assert torch.isfinite(output.loss)
torch.testing.assert_close(output.loss, by_hand)
assert not torch.allclose(output.loss, unshifted)

# %% [markdown]
# 第一个参与计算的 logits 位于提示词的最后一个 token（`Out:` 里的 `:`）：它预测第一个动作 token。BOS、patch 以及提示词其余位置上的 logits 都不计入损失。

# %%
scored = (vlm_labels[0, 1:] != IGNORE).nonzero().flatten()
last_prompt_position = NUM_PATCHES + len(prompt_ids) - 1
print("positions whose logits are scored:", scored.tolist(), " last prompt token at", last_prompt_position)
assert scored.tolist() == list(range(last_prompt_position, last_prompt_position + 8))
assert tokenizer.convert_ids_to_tokens(input_ids[last_prompt_position - NUM_PATCHES]).endswith(":")


# %% [markdown]
# ## 右侧填充的 batch
#
# 指令长短不一，组成 batch 就需要填充。collator 在**右侧**填充：id 用 `backbone.pad_token_id`，标签用 -100，注意力掩码用 0。正是右侧填充让拼接能对整个 batch 一次完成：每一行仍然以 BOS 开头，所以位置 1 在每一行都是“BOS 紧后面”。如果改成左侧填充，较短那一行的第 0 列会是 PAD，它的 patch 就会落在 PAD 之后。

# %%
def collate(examples):
    """Right-pad (input_ids, labels) pairs into tensors, as OpenVLA's collator does."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.tensor([ids + [backbone.pad_token_id] * (width - len(ids)) for ids, _ in examples])
    labels = torch.tensor([labels + [IGNORE] * (width - len(labels)) for _, labels in examples])
    return ids, (ids != backbone.pad_token_id).long(), labels


short = make_example("pick up the cup", torch.tensor([0.1, 0.2, -0.3, 0.0, 0.0, 0.0, 1.0]))
long = make_example("open the top drawer and put the sponge inside", torch.tensor([-0.5, 0.4, 0.2, 0.1, 0.0, -0.1, -1.0]))
batch_ids, batch_mask, batch_labels = collate([short, long])
images = torch.rand(2, 3, 32, 32)
batch_embeds, batch_attention, batch_vlm_labels = splice(
    backbone.embed_input_ids(batch_ids), batch_mask, batch_labels, projector(vision(images))
)
print("lengths:", len(short[0]), len(long[0]), "-> padded ids", tuple(batch_ids.shape), "-> spliced", tuple(batch_embeds.shape))
print("mask of the short row after splicing:", batch_attention[0].tolist())

# %%
pad = len(long[0]) - len(short[0])
assert pad > 0 and backbone.pad_token_id == 1024
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
# 现在来做最小的 VLA 训练：一个（图像，指令，动作）样本，20 步 AdamW。语言模型除了 `last_layer_finetune_modules`（输入嵌入、最后一个解码器层、LM head）之外全部冻结，这和 OpenVLA 的 `last-layer-finetune` 阶段一样；不同的是我们同时训练投影器，让图像特征也能随之调整。视觉编码器保持冻结。

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
# 把贪心解码逐步写出来：从拼接好的提示词（BOS、patch、提示词文本）出发，取 arg-max 的 token，把它的嵌入接到序列末尾，重复七次。解码出的 id 再交给 `ActionTokenizer.decode`。

# %%
target_ids = action_ids.tolist()


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
    return (action_tokenizer.decode(torch.tensor(ids)) - action_tokenizer.decode(torch.tensor(target_ids))).abs().mean().item()


before = greedy_action_ids(image, prompt_ids)
print("target:", target_ids)
print("before:", before, f"mean action error {action_error(before):.3f}")

# %%
torch.manual_seed(0)
optimizer = torch.optim.AdamW(trainable, lr=1e-2)
ids_t, labels_t = torch.tensor([input_ids]), torch.tensor([labels])
losses = []
for step in range(20):
    embeds, mask, step_labels = splice(backbone.embed_input_ids(ids_t), torch.ones_like(ids_t), labels_t, projector(vision(image)))
    loss = backbone(input_ids=None, inputs_embeds=embeds, attention_mask=mask, labels=step_labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
after = greedy_action_ids(image, prompt_ids)
print("losses:", [round(v, 2) for v in losses])
print("after: ", after, f"mean action error {action_error(after):.3f}")
print("correct action tokens:", sum(a == b for a, b in zip(before, target_ids)), "->", sum(a == b for a, b in zip(after, target_ids)))

# %%
TEXT = {"en": {"step": "step", "loss": "loss (action tokens + EOS)", "title": "20 AdamW steps on one example"},
        "zh": {"step": "步数", "loss": "损失（动作 token + EOS）", "title": "在一个样本上做 20 步 AdamW"}}[LANG]
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
# **动手试试。** 把 `lr=1e-2` 改成 `3e-2`，或者把步数改成 40，然后从头重新运行 notebook（只重跑训练单元格的话，会在上次留下的权重上继续训练）。再把投影器也冻结（从 `trainable` 里去掉）：这时只能靠最后一层相关模块，用原样的 patch 完成全部学习。
#
# ## 没有 BOS 的分词器：phi-2 与 Qwen
#
# 拼接的前提是位置 0 上是 BOS。骨干网络加载时由 `check_bos` 来保证这一点：分词器必须在带特殊 token 时、且只在这时在开头加上 BOS。有两个家族按设计就通不过，它们被列在 `SPECIAL_CASES` 里，因此跳过这项检查：
# - **phi-2**：唯一的特殊 token `<|endoftext|>` 同时充当 BOS、EOS 和 UNK，分词器什么都不添加；
# - **Qwen-2.5**（MiniVLA 的那些 id）：根本没有 BOS token。

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error

qwen, qwen_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("qwen25-0_5b-pure")
phi, phi_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("phi-2-3b")
print("qwen bos_token_id:", qwen_tokenizer.bos_token_id, "  phi bos_token:", repr(phi_tokenizer.bos_token), "=", phi_tokenizer.bos_token_id)
for name, tok in [("qwen", qwen_tokenizer), ("phi", phi_tokenizer)]:
    with expect_error(TokenizerBOSError, match="does not prepend BOS"):
        check_bos(tok, f"my-{name}")

# %%
assert {"phi-2-3b", "qwen25-0_5b-pure", "qwen25-7b-pure"} <= SPECIAL_CASES
assert qwen_tokenizer.bos_token_id is None
assert phi_tokenizer.bos_token == phi_tokenizer.eos_token == "<|endoftext|>"

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
# Qwen 没有 BOS 可写。基于 Qwen 的 VLA（例如 MiniVLA）把自己的 id 列进 `SPECIAL_CASES`，让骨干网络能够加载，第一个 token 则交给提示词构造器：`QwenPromptBuilder` 的每条提示词都以系统轮次开头，所以第一个 id 是 `<|im_start|>`，在位置 1 拼接时，图像落在 `<|im_start|>` 和角色名 `system` 之间。下面是具体的 id（微型副本的词表很小，`system` 被拆成了几段）：

# %%
qwen_builder = qwen.prompt_builder_fn("openvla")
qwen_builder.add_turn("human", openvla_action_prompt(instruction))
qwen_ids = qwen_tokenizer(qwen_builder.get_prompt()).input_ids
im_start = qwen_tokenizer.convert_tokens_to_ids("<|im_start|>")
print(qwen_ids[:8], qwen_tokenizer.convert_ids_to_tokens(qwen_ids[:8]))
qwen_embeds, _, _ = splice(qwen.embed_input_ids(torch.tensor([qwen_ids])), torch.ones(1, len(qwen_ids), dtype=torch.long),
                           torch.full((1, len(qwen_ids)), IGNORE), torch.zeros(1, NUM_PATCHES, qwen.embed_dim))
assert qwen_ids[0] == im_start and qwen_builder.get_prompt().startswith("<|im_start|>system\n")
torch.testing.assert_close(qwen_embeds[:, 0], qwen.embed_input_ids(torch.tensor([[im_start]]))[:, 0])

# %% [markdown]
# 所以这项检查是被跳过了，而不是被满足了：对这些 id 来说，“图像前面总是一个固定的 token”这一保证来自提示词构造器，加载时没有任何东西去验证它。给这样的骨干网络一条不是由它的构造器生成的提示词，patch 又会跟在一个普通的词后面。
#
# ## 小结
# - 视觉部分以 `NUM_PATCHES` 个宽为 `backbone.embed_dim` 的向量进入语言模型，按 `[emb[:, :1], patches, emb[:, 1:]]` 拼接；每个 patch 的注意力掩码为 True，标签为 -100。
# - 只有动作 token（`vocab_size - bin`，[-1, 1] 上 256 个区间）和 EOS 带标签；解码返回区间中心，误差最多半个区间（1/255）。
# - `backbone(input_ids=None, inputs_embeds=..., attention_mask=..., labels=...)` 在模型内部移位标签；collator 在右侧填充，BOS 因此留在第 0 列。
# - 只训练投影器和 `last_layer_finetune_modules` 20 步，贪心解码出的动作就已经向目标靠拢。
# - phi-2 和 Qwen 跳过 BOS 检查（`SPECIAL_CASES`），改由提示词构造器写出第一个 token。
#
# ## 练习
# 1. 挪动拼接位置：把 patch 放在位置 0（BOS 之前），再放到提示词末尾。未训练模型的损失会变吗？训练 20 步后，哪种放法最先达到目标动作？
# 2. 为 `phi-2-3b` 和 `qwen25-0_5b-pure` 写出 `make_example`，重做一遍训练。patch 在两者中分别落在哪里？`ActionTokenizer(tokenizer).action_token_begin_idx` 和 Llama-2 的一样吗？
# 3. 在一个填充后的 batch 里用两个样本训练，图像不同、动作也不同。训练 40 步后，贪心解码能区分这两张图像吗？如果两张图像相同又会怎样？
# 4. 把线性的 patch 切分换成输出 64 个 patch 的版本（卷积核 4）。本 notebook 里哪些行必须改，哪些行因为读取的是 `NUM_PATCHES` 或 `patches.shape` 而保持不变？
