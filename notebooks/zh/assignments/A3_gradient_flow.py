# %% [markdown]
# # A3 · 作业：梯度断流——诊断、修复与测量
#
# 一位同事用参数高效的方式微调 VLA：语言模型的权重全部冻结，只在注意力层里训练一些小的低秩适配器（LoRA 风格），同时打开梯度检查点来省显存。他的脚本是为上游 OpenVLA 锁定的 transformers 版本（4.40）写的。跑起来要么在 `backward()` 里直接崩溃，要么更糟：一连训练好几个小时，适配器却纹丝不动。你要找出原因，写一个诊断函数和一个修复函数，并测量梯度检查点究竟省下了多少。
#
# **你要完成的事**
# - 在微型副本上复现这两种故障（notebook 07 和 08 讲解了其中的各个环节）；
# - 编写 `missing_gradients`：一个诊断函数，列出所有拿不到梯度的可训练参数；
# - 编写 `fix_gradient_flow`：修好模型，既不解冻任何参数，也不关闭梯度检查点；
# - 借助 `vla_backbone.measure.saved_activation_bytes` 编写 `checkpointing_savings`，并画图展示序列变长时梯度检查点省下了多少。
#
# **如何评分。** 在写着 `# 在这里写你的代码` 的单元格里写代码，并删掉 `raise NotImplementedError` 那一行。运行每个检查单元格，它的分值写在上方的标题里；书面回答由老师人工评分。最后在仓库的克隆里运行评分程序，它会测试更多用例：
#
# `.venv/bin/python -m pytest tests/assignments/test_a3_gradient_flow.py --notebook path/to/A3_gradient_flow.ipynb`
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
# ## 同事的模型
#
# `LoRALinear` 包住一个冻结的 `nn.Linear`，并在旁边加一条可训练的低秩通路 `up(down(x))`。`make_broken_model` 在微型副本上重建同事的设置，每一项对应一行代码：
#
# 1. 语言模型的所有权重冻结（`requires_grad_(False)`）；
# 2. 在每个解码器层的 query 和 value 投影上加适配器：它们是唯一可训练的参数；
# 3. **可重入**的梯度检查点，这是 2024 年那一代 transformers 的默认设置；
# 4. 嵌入上没有输入梯度钩子：在 4.40 上，`resize_token_embeddings`（在 `enable_input_require_grads()` 之后添加 `<PAD>`）换掉了嵌入模块，钩子也就随之丢失。我们手动把它删掉，这样在任何版本上都能得到同样的状态。
#
# 当 `silent=True` 时，解码器层之外还有一个小模块（最终归一化层）也是可训练的，就像真实训练中的投影器或输出头那样。

# %%
import warnings

import torch
from torch import nn

from vla_backbone import compat, get_llm_backbone_and_tokenizer


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank path."""

    def __init__(self, base: nn.Linear, rank: int = 4) -> None:
        super().__init__()
        self.base = base
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        # Real LoRA starts `up` at zero; a small random start gives both matrices a gradient from step one.
        nn.init.normal_(self.up.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.up(self.down(x))


def final_norm(llm: nn.Module) -> nn.Module:
    """The last normalisation module outside the decoder layers (the final norm of every family here)."""
    return [m for name, m in llm.named_modules() if "norm" in type(m).__name__.lower() and ".layers." not in name][-1]


def make_broken_model(backbone_id: str = "llama2-7b-pure", silent: bool = False):
    """The teammate's language model (a HuggingFace ``*ForCausalLM``, in training mode) and its tokenizer."""
    torch.manual_seed(0)
    backbone, tokenizer = get_llm_backbone_and_tokenizer(backbone_id)
    llm = backbone.llm
    llm.requires_grad_(False)
    for layer in llm.modules():
        if isinstance(layer, backbone.transformer_layer_cls):
            layer.self_attn.q_proj = LoRALinear(layer.self_attn.q_proj)
            layer.self_attn.v_proj = LoRALinear(layer.self_attn.v_proj)
    if silent:
        final_norm(llm).requires_grad_(True)
    compat.enable_checkpointing(llm, use_reentrant=True)
    llm.get_input_embeddings()._forward_hooks.clear()
    llm.train()
    return llm, tokenizer


llm, tokenizer = make_broken_model()
batch = tokenizer(["pick up the red cup", "open the drawer now"], return_tensors="pt", padding=True)
ids = batch.input_ids
trainable = [name for name, p in llm.named_parameters() if p.requires_grad]
print(len(trainable), "trainable tensors, e.g.", trainable[0])
assert all(".down." in name or ".up." in name for name in trainable) and len(trainable) == 8
assert compat.is_checkpointing(llm) and not compat.has_input_grad_hook(llm)

# %% [markdown]
# ## 两种故障
#
# 普通版本会崩溃：损失不需要梯度，`backward()` 无事可做。

# %%
from vla_backbone.notebook import expect_error

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torch also warns: "None of the inputs have requires_grad=True"
    loss = llm(input_ids=ids, labels=ids).loss
    print("loss requires grad:", loss.requires_grad)
    with expect_error(RuntimeError, match="does not require grad"):
        loss.backward()
assert not loss.requires_grad

# %% [markdown]
# 静默版本不会崩溃。最终归一化层是可训练的，所以损失需要梯度，`backward()` 正常返回。但只有 norm 拿到了梯度，每个适配器的梯度都还是 `None`。训练循环会报告一个不断下降的损失（norm 在学习），而适配器永远不会动。唯一的线索是 torch 在下面打印的那条警告，只出现一次，混在长长的训练日志里很容易被忽略。

# %%
silent_llm, _ = make_broken_model(silent=True)
silent_llm(input_ids=ids, labels=ids).loss.backward()
with_grad = [name for name, p in silent_llm.named_parameters() if p.grad is not None]
print("got a gradient:", with_grad)
assert with_grad and all("norm" in name for name in with_grad)
assert all(p.grad is None for name, p in silent_llm.named_parameters() if ".down." in name or ".up." in name)


# %% [markdown]
# ## 任务 1 · 诊断函数 `missing_gradients`
#
# 先别急着修，写一个在任何微调设置上都值得跑一遍的检查。`missing_gradients(model, compute_loss)` 必须：
#
# - 先清空每个参数的 `.grad`（上一步遗留的梯度会把问题掩盖掉）；
# - 调用一次 `compute_loss()`；如果损失不需要梯度，那么任何参数都拿不到梯度：返回所有可训练参数的名字，**不要**抛出异常；
# - 否则执行 `backward()`，返回那些 `.grad` 仍为 `None` 的可训练参数的名字（名字与 `model.named_parameters()` 中的一致，并按它的顺序排列）。
#
# 返回空列表，说明每个可训练参数都拿到了梯度。

# %% nbgrader={"grade": false, "grade_id": "missing_gradients", "locked": false, "schema_version": 3, "solution": true, "task": false}
def missing_gradients(model: nn.Module, compute_loss) -> list[str]:
    """Names of the trainable parameters of ``model`` that get no gradient from ``compute_loss()``."""
    ### BEGIN SOLUTION
    for parameter in model.parameters():
        parameter.grad = None
    loss = compute_loss()
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    if not loss.requires_grad:
        return trainable
    loss.backward()
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad and parameter.grad is None]
    ### END SOLUTION


# %% [markdown]
# ### 检查你的代码（3 分）

# %% nbgrader={"grade": true, "grade_id": "check_missing_gradients", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
adapters = [name for name, p in llm.named_parameters() if p.requires_grad]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    plain_missing = missing_gradients(llm, lambda: llm(input_ids=ids, labels=ids).loss)
    silent_missing = missing_gradients(silent_llm, lambda: silent_llm(input_ids=ids, labels=ids).loss)
print("plain:", len(plain_missing), "missing | silent:", len(silent_missing), "missing")
assert plain_missing == adapters, say(f"plain variant: expected every adapter ({len(adapters)}), got {plain_missing}",
                                      f"崩溃的那种：应为全部适配器（{len(adapters)} 个），实际为 {plain_missing}")
assert silent_missing == adapters, say(f"silent variant: expected every adapter ({len(adapters)}) and not the norm, got {silent_missing}",
                                       f"静默的那种：应为全部适配器（{len(adapters)} 个），不含 norm，实际为 {silent_missing}")
### BEGIN HIDDEN TESTS
for parameter in silent_llm.parameters():
    if parameter.requires_grad:
        parameter.grad = torch.ones_like(parameter)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    assert missing_gradients(silent_llm, lambda: silent_llm(input_ids=ids, labels=ids).loss) == adapters
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## 为什么会失败
#
# 三个条件凑到一起才会出问题：
#
# - **权重全部冻结。** 进入第一个解码器层的隐藏状态来自一个冻结的嵌入，所以它们不需要梯度。
# - **可重入的梯度检查点。** 它在 `torch.no_grad()` 下运行每一层的前向传播，然后依靠 autograd 在反向传播时回调它。只有当这一层的某个*输入*需要梯度时，autograd 才会这样做；适配器的权重在层内部，不是输入，所以它根本看不见。
# - **没有输入梯度钩子。** `enable_input_require_grads()` 会在嵌入模块上注册一个前向钩子，把它的输出标记为需要梯度，专门用来打破这个僵局。
#
# 去掉其中任何一个条件，梯度就又能流动了。解冻不可取（那就失去了用适配器的意义），关掉梯度检查点就放弃了它省下的显存。剩下的两条路并不等价：钩子只有在输入*经过*嵌入模块时才会触发，而 VLA 会自己构造 `inputs_embeds`，把图像 patch 拼接进去（notebook 11），再把结果交给模型。
#
# 用你的诊断函数在静默模型上就能看到这一点：装回钩子、梯度检查点仍是可重入的，`input_ids` 能到达每个适配器，但直接从嵌入矩阵取出的 `inputs_embeds` 一个也到达不了。

# %%
silent_llm.enable_input_require_grads()
direct_embeds = silent_llm.get_input_embeddings().weight[ids].detach()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    through_embedding = missing_gradients(silent_llm, lambda: silent_llm(input_ids=ids, labels=ids).loss)
    around_embedding = missing_gradients(silent_llm, lambda: silent_llm(inputs_embeds=direct_embeds, labels=ids).loss)
print("missing with input_ids:", len(through_embedding), "| with inputs_embeds:", len(around_embedding))
assert through_embedding == [] and around_embedding == adapters, say(
    f"your missing_gradients gives {through_embedding} with input_ids and {around_embedding} with inputs_embeds; "
    "expected none and every adapter. Does it call backward() on the loss, as Task 1 asks?",
    f"你的 missing_gradients 在输入 input_ids 时给出 {through_embedding}，在输入 inputs_embeds 时给出 {around_embedding}；"
    "应分别为空列表和全部适配器。它有没有按任务 1 的要求对损失调用 backward()？")


# %% [markdown]
# ## 任务 2 · 修复：`fix_gradient_flow`
#
# 编写 `fix_gradient_flow(model)`。它运行之后：
#
# - 每个适配器都能拿到梯度，而且和不开梯度检查点时得到的完全相同；无论损失来自 `input_ids`，还是来自不经过嵌入模块的 `inputs_embeds`，都是如此；
# - 梯度检查点仍然开着（`compat.is_checkpointing(model)`），模型仍处于训练模式；
# - 原本冻结的没有变成可训练，原本可训练的也没有被冻结；
# - 再调用一次不会改变任何东西。
#
# 它必须适用于每个模型家族（评分程序还会试 OPT、Qwen-2.5 和 Phi-2）。请使用 `vla_backbone.compat`，不要调用只适用于某个 transformers 版本的接口。

# %% nbgrader={"grade": false, "grade_id": "fix_gradient_flow", "locked": false, "schema_version": 3, "solution": true, "task": false}
def fix_gradient_flow(model: nn.Module) -> None:
    """Make gradients reach the trainable parameters inside checkpointed layers, in place."""
    ### BEGIN SOLUTION
    # Non-reentrant checkpointing follows the saved tensors, not the inputs, so it sees the adapters' weights
    # whatever enters the layer; the input hook alone would miss inputs_embeds built outside the embeddings.
    compat.enable_checkpointing(model, use_reentrant=False)
    ### END SOLUTION


# %% [markdown]
# ### 检查你的代码（4 分）

# %% nbgrader={"grade": true, "grade_id": "check_fix", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
import copy

from vla_backbone.measure import saved_activation_bytes


def adapter_grads(model, compute_loss):
    for parameter in model.parameters():
        parameter.grad = None
    compute_loss().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad and p.grad is not None}


fix_gradient_flow(llm)
assert compat.is_checkpointing(llm), say("checkpointing must stay on", "梯度检查点必须保持开启")
assert llm.training, say("the model must stay in training mode", "模型必须保持训练模式")
assert [n for n, p in llm.named_parameters() if p.requires_grad] == adapters, \
    say("the fix must not freeze or unfreeze anything", "修复不能冻结或解冻任何参数")
assert missing_gradients(llm, lambda: llm(input_ids=ids, labels=ids).loss) == [], \
    say("adapters still get no gradient from input_ids", "用 input_ids 时，适配器仍然得不到梯度")
embeds = llm.get_input_embeddings().weight[ids].detach()
assert missing_gradients(llm, lambda: llm(inputs_embeds=embeds, labels=ids).loss) == [], \
    say("adapters get no gradient when inputs_embeds bypass the embedding module",
        "inputs_embeds 绕过嵌入模块时，适配器得不到梯度")
with_checkpointing = adapter_grads(llm, lambda: llm(input_ids=ids, labels=ids).loss)
unchecked = copy.deepcopy(llm)
compat.disable_checkpointing(unchecked)
reference = adapter_grads(unchecked, lambda: unchecked(input_ids=ids, labels=ids).loss)
kept, kept_unchecked = (saved_activation_bytes(model, lambda: model(input_ids=ids, labels=ids).loss)
                        for model in (llm, unchecked))
assert kept < kept_unchecked, say(
    f"checkpointing must really run: the fixed model keeps {kept:,} bytes for backward, as many as without it",
    f"梯度检查点必须真正生效：修复后的模型为反向传播保存了 {kept:,} 字节，和不开梯度检查点时一样多")
for name in reference:
    torch.testing.assert_close(with_checkpointing[name], reference[name], msg=lambda m, name=name: say(
        f"{name}: gradient differs from the one without checkpointing\n{m}", f"{name}：梯度与不开梯度检查点时不同\n{m}"))
### BEGIN HIDDEN TESTS
fix_gradient_flow(llm)
assert compat.is_checkpointing(llm)
for compute_loss in (lambda: llm(input_ids=ids, labels=ids).loss, lambda: llm(inputs_embeds=embeds, labels=ids).loss):
    for parameter in llm.parameters():
        parameter.grad = None
    compute_loss().backward()  # the reference diagnostic: the grade does not depend on the answer to Task 1
    assert all(p.grad is not None for p in llm.parameters() if p.requires_grad)
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# 用一两句话回答：你的修复去掉了三个条件中的哪一个？为什么恰恰是它也能覆盖 `inputs_embeds` 的情况？（2 分，人工评分）

# %% [markdown] nbgrader={"grade": true, "grade_id": "why_the_fix_works", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# 改成非可重入的梯度检查点。非可重入的梯度检查点通过 saved-tensor 钩子记录层内的计算图，而不是依赖输入需要梯度，所以无论什么进入这一层，适配器的权重都能被触达；单靠钩子，只有输入经过嵌入模块时才管用，而 VLA 拼接出来的 `inputs_embeds` 恰恰不经过它。
# ### END SOLUTION

# %% [markdown]
# ## 任务 3 · 梯度检查点省下了什么
#
# 梯度检查点用计算换显存：在每个做了检查点的层里，autograd 只保留这一层的输入，其余的在反向传播时重新计算。`vla_backbone.measure.saved_activation_bytes(model, compute_loss)` 统计 `compute_loss()` 运行期间 autograd 为反向传播保留的字节数（不含参数），然后执行反向传播。
#
# 编写 `checkpointing_savings(model, compute_loss)`，返回 `(bytes_without, bytes_with)`：分别是关闭梯度检查点时、以及按你的修复重新开启梯度检查点后，autograd 为反向传播保留的字节数。调用它时模型已经修复过，梯度检查点是开着的；返回时也必须保持开着。

# %% nbgrader={"grade": false, "grade_id": "checkpointing_savings", "locked": false, "schema_version": 3, "solution": true, "task": false}
from vla_backbone.measure import saved_activation_bytes


def checkpointing_savings(model: nn.Module, compute_loss) -> tuple[int, int]:
    """``(bytes saved for backward without checkpointing, with checkpointing)``; checkpointing is on afterwards."""
    ### BEGIN SOLUTION
    compat.disable_checkpointing(model)
    try:
        without = saved_activation_bytes(model, compute_loss)
    finally:
        compat.enable_checkpointing(model, use_reentrant=False)
    return without, saved_activation_bytes(model, compute_loss)
    ### END SOLUTION


# %% [markdown]
# ### 检查你的代码（3 分）

# %% nbgrader={"grade": true, "grade_id": "check_savings", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
without, with_ = checkpointing_savings(llm, lambda: llm(input_ids=ids, labels=ids).loss)
print(f"without checkpointing {without:,} bytes | with {with_:,} bytes")
assert compat.is_checkpointing(llm), say("checkpointing must be on again afterwards", "结束时梯度检查点必须重新开启")
assert isinstance(without, int) and isinstance(with_, int), say("return two ints (bytes)", "请返回两个整数（字节数）")
assert 0 < with_ < without, say(f"checkpointing should save something: {with_:,} is not below {without:,}",
                                f"梯度检查点应该省下一些内存：{with_:,} 并不小于 {without:,}")
### BEGIN HIDDEN TESTS
assert (without, with_) == checkpointing_savings(llm, lambda: llm(input_ids=ids, labels=ids).loss)
longer = torch.randint(3, 1000, (2, 24), generator=torch.Generator().manual_seed(1))
measured_longer = checkpointing_savings(llm, lambda: llm(input_ids=longer, labels=longer).loss)
reference_with = saved_activation_bytes(llm, lambda: llm(input_ids=longer, labels=longer).loss)
compat.disable_checkpointing(llm)
reference_without = saved_activation_bytes(llm, lambda: llm(input_ids=longer, labels=longer).loss)
compat.enable_checkpointing(llm, use_reentrant=False)
assert measured_longer == (reference_without, reference_with)
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## 序列变长时省下多少
#
# 激活值随序列长度增长，参数则不会。下图测量了两种设置，每个 batch 是两条长度为 16 到 64 个 token 的随机序列。动手试试：往 `lengths` 里加上 128；或者用 `make_broken_model("qwen25-0_5b-pure")` 构建模型，先修好再测。

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"title": "Tensors saved for backward (tiny Llama, batch 2)", "x": "sequence length (tokens)",
           "y": "saved for backward (KiB)", "off": "checkpointing off", "on": "checkpointing on"},
    "zh": {"title": "为反向传播保存的张量（微型 Llama，batch 2）", "x": "序列长度（token）",
           "y": "为反向传播保存的数据（KiB）", "off": "关闭梯度检查点", "on": "开启梯度检查点"},
}[LANG]
lengths = [16, 32, 64]


def measure(model, length):
    torch.manual_seed(0)
    sample = torch.randint(3, 1000, (2, length))
    return checkpointing_savings(model, lambda: model(input_ids=sample, labels=sample).loss)


measured = [measure(llm, length) for length in lengths]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(lengths, [m[0] / 1024 for m in measured], "o-", label=TEXT["off"])
ax.plot(lengths, [m[1] / 1024 for m in measured], "o-", label=TEXT["on"])
ax.set_xlabel(TEXT["x"])
ax.set_ylabel(TEXT["y"])
ax.set_title(TEXT["title"])
ax.legend()
plt.show()
for length, (a, b) in zip(lengths, measured, strict=True):
    print(f"{length:4d} tokens: {a / 1024:8.1f} KiB -> {b / 1024:7.1f} KiB ({1 - b / a:.0%} less)")

# %% [markdown]
# 两条线都是直的，或者说几乎是直的：这里几乎每个字节都是激活值，和 token 数成正比。（在 transformers 4.57 上，不开梯度检查点的那条线会略微向上弯，因为每一层还额外保存了一个 token 数 × token 数的 float 注意力掩码；transformers 5 不保存它。）不管序列多长，梯度检查点省下的比例都一样。省不掉的那部分主要是 logits：每个 token 对词表里的每一项都有一个 float32 分数，要留给损失使用，而它们在梯度检查点覆盖的解码器层之外。

# %%
import math

vocab = llm.config.vocab_size
print("vocabulary (embedding rows):", vocab, "| hidden size:", llm.config.hidden_size)
shares = [1 - b / a for a, b in measured]
logits_share = [2 * length * vocab * 4 / b for length, (_, b) in zip(lengths, measured, strict=True)]
print("share saved:", [f"{s:.1%}" for s in shares], "| logits in what is left:", [f"{s:.0%}" for s in logits_share])
proportional = say("the bytes should grow in proportion to the length: does checkpointing_savings measure the "
                   "compute_loss it is given?", "字节数应当与长度成正比：checkpointing_savings 测的是传给它的 compute_loss 吗？")
for length, (a, b) in zip(lengths, measured, strict=True):
    assert math.isclose(a / length, measured[0][0] / lengths[0], rel_tol=0.01 if compat.IS_V5 else 0.05), proportional
    assert math.isclose(b / length, measured[0][1] / lengths[0], rel_tol=0.01), proportional
assert max(shares) - min(shares) < (0.01 if compat.IS_V5 else 0.05) and all(s > 0.5 for s in logits_share), proportional

# %% [markdown]
# 真实模型有几十层，输出头却只有一个，所以层占了大头，梯度检查点省下的比例也就大得多。同样的宽度、把 2 层换成 8 层，就已经能看出这个趋势：

# %%
from transformers import LlamaConfig, LlamaForCausalLM

torch.manual_seed(0)
deeper = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=8,
                                      num_attention_heads=4, num_key_value_heads=2, use_cache=False))
deeper.train()
compat.enable_checkpointing(deeper, use_reentrant=True)
fix_gradient_flow(deeper)
deep_without, deep_with = measure(deeper, 32)
print(f"8 layers: {deep_without / 1024:.1f} KiB -> {deep_with / 1024:.1f} KiB ({1 - deep_with / deep_without:.0%} less)")
assert 1 - deep_with / deep_without > shares[1] + 0.1, say(
    "8 layers should save a larger share than 2: are fix_gradient_flow and checkpointing_savings done?",
    "8 层应当比 2 层省下更大的比例：fix_gradient_flow 和 checkpointing_savings 都完成了吗？")

# %% [markdown]
# ## 小结
# - 权重冻结 + 可重入梯度检查点 + 没有输入梯度钩子 = 层内的任何参数都拿不到梯度；如果层外还有一个可训练模块，这个故障就是静默的。
# - 写一个诊断函数，列出所有拿不到梯度的参数，一步就能同时抓到这两种故障；任何长时间的微调开始之前都值得先跑一次。
# - 剩下可以去掉的两个条件里，只有一个能让 `input_ids` 和 `inputs_embeds` 都恢复梯度；单靠钩子覆盖不了后者。
# - 梯度检查点省下的张量与序列长度成正比；由于 logits 不在它的覆盖范围内，省下的比例随层数增加而变大。
#
# ## 练习
# 1. 在 `make_broken_model` 里改为去掉另一个条件，而不是你的修复去掉的那个。现在分别用 `input_ids` 和 `inputs_embeds` 作为输入时，`missing_gradients` 各报告什么？
# 2. 用 `vla_backbone.measure.median_seconds` 分别测量开启和关闭梯度检查点时一步训练的耗时。慢了多少？和 notebook 08 的结果相比如何？
# 3. 把适配器放到 MLP 上，而不是注意力上。你的诊断函数或修复函数需要做任何改动吗？
