# %% [markdown]
# # A5 · 作业：把图像 patch 拼接进语言模型的输入
#
# 在 OpenVLA 内部，语言骨干网络从来看不到图像。它看到的是一串嵌入：投影后的图像 patch 被插在 BOS token 之后，注意力掩码和标签也相应地拉长。这三者只要错一个，训练照样能跑：模型要么在关注填充，要么在学着预测图像 patch，要么对动作什么也没学到。在这份作业里，你要写出这一步的两个组成部分，并用骨干网络自己的损失证明它们是对的。
#
# **你要完成的事**
# - 编写 `action_labels`：保留动作 token 和 EOS 的标签，屏蔽其余部分（对应 notebook 11）；
# - 编写 `splice_patches`：在 BOS 之后插入 patch 嵌入，并扩展注意力掩码和标签；
# - 在结果上运行骨干网络，检查损失、填充和梯度。
#
# **如何评分。** 在写着 `# 在这里写你的代码` 的单元格里写代码，并删掉 `raise NotImplementedError` 那一行。运行每个检查单元格，它的分值写在上方的标题里。最后在仓库的克隆里运行评分程序，它会测试更多用例：
#
# `.venv/bin/python -m pytest tests/assignments/test_a5_splice_patches.py --notebook path/to/A5_splice_patches.ipynb`
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
# ## OpenVLA 怎样构造一个训练样本
#
# 一个训练样本由三段组成：推理时的提示词（`In: What action should the robot take to ...?\nOut:`），接着是写成 token 的机器人动作（每个动作维度一个 token：OpenVLA 把每个值映射到词表里最少使用的 256 个 id 之一，见 `vla_backbone.actions.ActionTokenizer`），最后是 EOS。把动作 token 打印成文本，看到的就是词表末尾那些很少用到的片段。

# %%
import numpy as np
import torch

from vla_backbone import get_llm_backbone_and_tokenizer
from vla_backbone.actions import ActionTokenizer
from vla_backbone.prompting import PurePromptBuilder, openvla_action_prompt

backbone, tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure")
action_tokenizer = ActionTokenizer(tokenizer)


def example_ids(instruction: str, action: list[float]) -> tuple[list[int], int]:
    """Token ids of one training example, and how many of them are action tokens."""
    builder = PurePromptBuilder("openvla")
    builder.add_turn("human", openvla_action_prompt(instruction))
    action_ids = action_tokenizer.token_ids(np.array(action)).tolist()
    return tokenizer(builder.get_prompt()).input_ids + action_ids + [tokenizer.eos_token_id], len(action_ids)


ids, n_action = example_ids("pick up the cup", [0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 1.0])
print(tokenizer.convert_ids_to_tokens(ids))
assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id and n_action == 7
assert all(i >= action_tokenizer.action_token_begin_idx for i in ids[-8:-1])

# %% [markdown]
# ## 任务 1 · 只给动作打标签
#
# 模型必须学会输出动作然后停下，而不该学着输出提示词。编写 `action_labels(input_ids, num_action_tokens)`：输入是一个一维 token id 张量，它以 `num_action_tokens` 个动作 token 和一个 EOS 结尾；返回一个形状和 dtype 都相同的新张量，最后 `num_action_tokens + 1` 个位置保留原来的 id，其余位置全是 `-100`。不要修改 `input_ids` 本身。

# %% nbgrader={"grade": false, "grade_id": "action_labels", "locked": false, "schema_version": 3, "solution": true, "task": false}
IGNORE_INDEX = -100


def action_labels(input_ids: torch.Tensor, num_action_tokens: int) -> torch.Tensor:
    """Labels that supervise only the trailing action tokens and the EOS after them."""
    ### BEGIN SOLUTION
    labels = input_ids.clone()
    labels[: -(num_action_tokens + 1)] = IGNORE_INDEX
    return labels
    ### END SOLUTION


# %% [markdown]
# ### 检查你的代码（4 分）

# %% nbgrader={"grade": true, "grade_id": "check_action_labels", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
ids_tensor = torch.tensor(ids)
labels = action_labels(ids_tensor, n_action)
assert labels.shape == ids_tensor.shape and labels.dtype == ids_tensor.dtype, \
    say("same shape and dtype as input_ids", "形状和 dtype 必须与 input_ids 相同")
assert torch.equal(ids_tensor, torch.tensor(ids)), say("action_labels changed input_ids in place", "action_labels 原地修改了 input_ids")
assert (labels[:-8] == IGNORE_INDEX).all(), say("every prompt position must be -100", "提示词的每个位置都必须是 -100")
assert torch.equal(labels[-8:], ids_tensor[-8:]), say("the 7 action tokens and EOS keep their ids", "7 个动作 token 和 EOS 保留各自的 id")
### BEGIN HIDDEN TESTS
assert torch.equal(action_labels(ids_tensor, 0)[-1:], ids_tensor[-1:]) and (action_labels(ids_tensor, 0)[:-1] == -100).all()
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## 一个 batch，再加一些 patch
#
# 两个长度不同的样本组成一个 batch。collator 用 PAD token 在右侧填充；填充位置的注意力掩码是 0，标签是 `-100`。视觉部分是伪造的：16 个宽度为 32 的随机 patch 特征，经过一个可训练的投影器映射到骨干网络的宽度 64，就像 OpenVLA 的投影器处理真实 ViT 特征那样。文本部分用 `backbone.embed_input_ids` 做嵌入。

# %%
from torch import nn

torch.manual_seed(0)
examples = [example_ids("pick up the cup", [0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 1.0]),
            example_ids("open the drawer and put the towel in it", [0.5, -0.5, 0.3, 0.0, 0.2, 0.0, -1.0])]
length = max(len(e) for e, _ in examples)
input_ids = torch.full((2, length), tokenizer.pad_token_id)
attention_mask = torch.zeros(2, length, dtype=torch.long)
labels = torch.full((2, length), IGNORE_INDEX)
for row, (example, n) in enumerate(examples):
    input_ids[row, : len(example)] = torch.tensor(example)
    attention_mask[row, : len(example)] = 1
    labels[row, : len(example)] = action_labels(torch.tensor(example), n)

projector = nn.Linear(32, backbone.embed_dim)
patch_embeds = projector(torch.randn(2, 16, 32))
text_embeds = backbone.embed_input_ids(input_ids)
print("text", tuple(text_embeds.shape), "| patches", tuple(patch_embeds.shape), "| mask", attention_mask.tolist()[0])
assert text_embeds.shape == (2, length, 64) and patch_embeds.shape == (2, 16, 64)
assert attention_mask[0].sum() < length and attention_mask[1].sum() == length


# %% [markdown]
# ## 任务 2 · `splice_patches`
#
# 编写 `splice_patches(input_embeds, patch_embeds, attention_mask, labels=None)`。记 `B` 为 batch 大小，`T` 为文本长度，`P` 为 patch 数量，`D` 为宽度：
#
# - `input_embeds` 形状为 `(B, T, D)`，`patch_embeds` 为 `(B, P, D)`，`attention_mask` 为 `(B, T)`（dtype 不限：bool 或整数），`labels` 为 `(B, T)` 或 `None`；
# - 返回 `(embeds, mask, labels)`：`embeds` 形状为 `(B, P + T, D)`，依次是文本的第一个位置（BOS）、`P` 个 patch、文本的其余部分；`mask` 形状为 `(B, P + T)`，dtype 与输入的掩码相同，所有 patch 位置都被关注；`labels` 形状为 `(B, P + T)`，所有 patch 位置都是 `-100`，如果传入的 `labels` 是 `None`，则返回 `None`；
# - 当 `input_embeds` 和 `patch_embeds` 的 batch 大小或宽度不一致时，抛出 `ValueError`，消息里要写明两边的大小（投影器输出宽度写错是个经典错误）；
# - 不要原地修改输入，并且要让梯度能流进 `patch_embeds`（投影器是要训练的）。

# %% nbgrader={"grade": false, "grade_id": "splice_patches", "locked": false, "schema_version": 3, "solution": true, "task": false}
def splice_patches(input_embeds, patch_embeds, attention_mask, labels=None):
    """Insert ``patch_embeds`` right after BOS; stretch ``attention_mask`` and ``labels`` to match."""
    ### BEGIN SOLUTION
    if patch_embeds.shape[0] != input_embeds.shape[0]:
        raise ValueError(f"batch sizes differ: {input_embeds.shape[0]} text sequences but {patch_embeds.shape[0]} "
                         "sets of patches")
    if patch_embeds.shape[-1] != input_embeds.shape[-1]:
        raise ValueError(f"widths differ: text embeddings are {input_embeds.shape[-1]} wide, patches "
                         f"{patch_embeds.shape[-1]}; the projector must map to the backbone's embed_dim")
    batch, patches = patch_embeds.shape[:2]
    embeds = torch.cat([input_embeds[:, :1], patch_embeds, input_embeds[:, 1:]], dim=1)
    patch_mask = torch.ones(batch, patches, dtype=attention_mask.dtype, device=attention_mask.device)
    mask = torch.cat([attention_mask[:, :1], patch_mask, attention_mask[:, 1:]], dim=1)
    if labels is None:
        return embeds, mask, None
    patch_labels = torch.full((batch, patches), IGNORE_INDEX, dtype=labels.dtype, device=labels.device)
    return embeds, mask, torch.cat([labels[:, :1], patch_labels, labels[:, 1:]], dim=1)
    ### END SOLUTION


# %% [markdown]
# ### 检查你的代码（6 分）

# %% nbgrader={"grade": true, "grade_id": "check_splice", "locked": true, "points": 6, "schema_version": 3, "solution": false, "task": false}
from vla_backbone.notebook import expect_error

embeds, mask, spliced_labels = splice_patches(text_embeds, patch_embeds, attention_mask, labels)
P = patch_embeds.shape[1]
assert embeds.shape == (2, P + length, 64), say(f"embeds has shape {tuple(embeds.shape)}, expected {(2, P + length, 64)}",
                                                f"embeds 的形状是 {tuple(embeds.shape)}，应为 {(2, P + length, 64)}")
assert torch.equal(embeds[:, 0], text_embeds[:, 0]), say("position 0 must stay BOS", "位置 0 必须仍然是 BOS")
assert torch.equal(embeds[:, 1 : 1 + P], patch_embeds), say("the patches go right after BOS, in order",
                                                            "patch 要按顺序紧跟在 BOS 之后")
assert torch.equal(embeds[:, 1 + P :], text_embeds[:, 1:]), say("the rest of the text follows the patches",
                                                                "其余文本要跟在 patch 之后")
assert mask.dtype == attention_mask.dtype, say(f"mask dtype {mask.dtype}, expected the input's {attention_mask.dtype}",
                                               f"掩码的 dtype 是 {mask.dtype}，应与输入相同（{attention_mask.dtype}）")
assert (mask[:, 1 : 1 + P] == 1).all() and torch.equal(mask[:, 1 + P :], attention_mask[:, 1:]), \
    say("patches are attended to; the text keeps its mask", "patch 位置要参与注意力；文本保留原来的掩码")
assert (spliced_labels[:, : 1 + P] == IGNORE_INDEX).all(), say("BOS and every patch position must be -100",
                                                               "BOS 和每个 patch 位置都必须是 -100")
assert torch.equal(spliced_labels[:, 1 + P :], labels[:, 1:]), say("the text keeps its labels", "文本保留原来的标签")
assert splice_patches(text_embeds, patch_embeds, attention_mask)[2] is None, say("labels=None gives None",
                                                                                  "labels=None 时返回的标签应为 None")
with expect_error(ValueError, match="32"):
    splice_patches(text_embeds, torch.randn(2, 16, 32), attention_mask, labels)
### BEGIN HIDDEN TESTS
assert splice_patches(text_embeds, patch_embeds, attention_mask.bool())[1].dtype == torch.bool
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## 拼接后的一条序列长什么样
#
# 第一个样本，逐个位置来看：每个嵌入从哪里来，是否被关注，损失是否从它学习。只有真实文本最末尾的动作 token 和 EOS 带有标签。

# %%
import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap

TEXT = {
    "en": {"rows": ["source", "attention mask", "label"], "title": "Spliced sequence (example 1)",
           "x": "position", "legend": ["BOS", "patch", "prompt", "action / EOS", "padding"]},
    "zh": {"rows": ["来源", "注意力掩码", "标签"], "title": "拼接后的序列（第 1 个样本）",
           "x": "位置", "legend": ["BOS", "patch", "提示词", "动作 / EOS", "填充"]},
}[LANG]
row = 0
source = np.full(P + length, 2)
source[0], source[1 : 1 + P] = 0, 1
source[(spliced_labels[row] != IGNORE_INDEX).numpy()] = 3
source[(mask[row] == 0).numpy()] = 4
grid = np.stack([source, np.where(mask[row].numpy() == 1, 2, 4), np.where(spliced_labels[row].numpy() != IGNORE_INDEX, 3, 4)])
colors = ["tab:red", "tab:orange", "tab:blue", "tab:green", "lightgrey"]
fig, ax = plt.subplots(figsize=(10, 2.2))
ax.imshow(grid, cmap=ListedColormap(colors), vmin=0, vmax=4, aspect="auto", interpolation="nearest")
ax.set_yticks(range(3), TEXT["rows"])
ax.set_xlabel(TEXT["x"])
ax.set_title(TEXT["title"])
ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colors], labels=TEXT["legend"],
          loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=5, fontsize=8)
plt.show()
assert (source == 3).sum() == 8 and (source == 4).sum() == length - len(examples[0][0])

# %% [markdown]
# ## 在它上面运行骨干网络
#
# VLM 调用骨干网络时传入 `input_ids=None` 和拼接好的 `inputs_embeds`。下面三项检查说明这次拼接是对的，而不仅仅是形状对：
#
# 1. **损失只从动作中学习。** 在有标签的位置上（像 HuggingFace 那样错开一位）手工重算损失，得到同样的值，参与计算的是 16 个 token：7 个动作加一个 EOS，两个样本各一组。
# 2. **填充是看不见的。** 第一个样本单独运行（没有填充）得到的 logits，和它在填充后的 batch 里得到的一样。
# 3. **投影器在学习。** 反向传播经由 patch 到达了投影器的权重。

# %%
import torch.nn.functional as F

output = backbone(input_ids=None, inputs_embeds=embeds, attention_mask=mask, labels=spliced_labels)
shift_logits, shift_labels = output.logits[:, :-1], spliced_labels[:, 1:]
keep = shift_labels != IGNORE_INDEX
by_hand = F.cross_entropy(shift_logits[keep], shift_labels[keep])
print(f"loss {output.loss.item():.4f} | by hand {by_hand.item():.4f} over {int(keep.sum())} labelled tokens")
torch.testing.assert_close(output.loss, by_hand)
assert int(keep.sum()) == 16

real = int(mask[0].sum())
alone = splice_patches(text_embeds[:1, : len(examples[0][0])], patch_embeds[:1], attention_mask[:1, : len(examples[0][0])])
alone_logits = backbone(inputs_embeds=alone[0], attention_mask=alone[1]).logits
torch.testing.assert_close(alone_logits[0], output.logits[0, :real], atol=1e-5, rtol=1e-4)

output.loss.backward()
print("projector gradient norm:", f"{projector.weight.grad.norm().item():.4f}")
assert projector.weight.grad is not None and projector.weight.grad.abs().sum() > 0

# %% [markdown]
# ## 小结
# - patch 放在 BOS 之后：`[BOS, patch, 其余文本]`，嵌入、掩码和标签都按这个顺序排列。
# - patch 总是被关注、从不带标签；填充无论移到哪里，掩码都是 0、标签都是 -100。
# - 只有动作 token 和 EOS 带标签，所以损失教给模型的只有两件事：输出动作，然后停下。
#
# ## 练习
# 1. 改为把 patch 放在 BOS *之前*。上面哪项检查仍然通过？推理时模型在位置 0 上会看到什么？
# 2. 把掩码中 patch 位置设为 0。损失会怎样？为什么它仍然是有限值？
# 3. OpenVLA 的训练文本在 `Out:` 后面有一个空格，而推理提示词里没有（openvla#104）。在 `example_ids` 里加上这个空格，看看 token 有什么变化。
