# %% [markdown]
# # 07 · `enable_input_require_grads`：故障、钩子与修复
#
# OpenVLA 为训练加载语言模型时，构造函数里有一行看似可有可无的代码：`llm.enable_input_require_grads()`。把它删掉，再把语言模型连同输入嵌入一起冻结、在解码器层里训练小型适配器、并开启可重入的梯度检查点，训练就会出问题：进入检查点块的张量都不需要梯度，于是反向传播要么在 `backward()` 处抛出 `RuntimeError`，当场报错；要么静默失败，适配器永远拿不到梯度，也就永远学不到东西。本 notebook 在一个微型骨干网络上复现这两种故障，拆开那个防止故障的钩子（它把嵌入输出标记为需要梯度），并比较三种修复办法：钩子、非可重入梯度检查点、不用梯度检查点。全量微调从来不需要它。有两个陷阱会让钩子失效：绕过嵌入模块的 `inputs_embeds`，以及在注册钩子之后被替换掉的嵌入模块。
#
# **你将学到**
# - 在当前 transformers 版本下具体会出现什么警告和报错，以及静默失败的那种变体；
# - 这个钩子挂在哪里、做了什么（只有一行）、怎样移除；
# - 三种修复（钩子、非可重入梯度检查点、不用梯度检查点）以及各自为什么有效；
# - 为什么在嵌入模块之外算出来的 `inputs_embeds` 会绕过钩子；
# - 为什么上游在 transformers 4.40 上调用 `resize_token_embeddings` 之后钩子就丢了，transformers 5.x 替你做了什么，以及骨干网络为什么不依赖两者中的任何一个，而是自己检查钩子在不在。

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
# ## 一个冻结的骨干网络，外加 LoRA 式适配器
#
# 我们像 OpenVLA 一样，以训练模式（`inference_mode=False`，即默认值）加载 Llama-2 的微型副本。它的构造函数已经注册好了输入梯度钩子（`HFCausalLLMBackbone.__init__` 的第 5 步）。我们先确认这一点，因为本 notebook 剩下的内容讲的都是这个钩子防住了什么。和所有 notebook 一样，这里只用一个 CPU 线程（由 `setup()` 设置）：张量都很小，单线程能让它在共享机器上也跑得快。

# %%
import warnings

import torch
from torch import nn

import vla_backbone
from vla_backbone import compat
from vla_backbone.notebook import expect_error, explore

backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
model = backbone.llm
print(type(model).__name__, "| transformers 5.x:", compat.IS_V5)
print("input-grad hook on the embedding after loading:", compat.has_input_grad_hook(model))
assert compat.has_input_grad_hook(model)
assert torch.get_num_threads() == 1  # setup() set it


# %% [markdown]
# 参数高效微调让预训练权重保持冻结，只在其中一部分权重旁边训练一个小小的*适配器*。LoRA 式适配器给线性层加一条低秩旁路：`y = W x + up(down(x))`，其中 `down` 把输入压到很少的几维（即秩），`up` 再映射回去。我们用几行代码写一个，套在每个解码器层的 `q_proj` 和 `v_proj` 投影外面。真正的 LoRA 把 `up` 初始化为零；这里用很小的随机值初始化，好让每个适配器权重从第一步起就拿到非零梯度（换成零会怎样，见练习 1）。

# %%
class LowRankAdapter(nn.Module):
    """A frozen linear layer plus a trainable low-rank path: base(x) + up(down(x))."""

    def __init__(self, base: nn.Linear, rank: int = 4):
        super().__init__()
        self.base = base
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.normal_(self.up.weight, std=0.02)

    def forward(self, x):
        return self.base(x) + self.up(self.down(x))


model.requires_grad_(False)
adapters = []
for layer in model.model.layers:
    for name in ("q_proj", "v_proj"):
        current = getattr(layer.self_attn, name)
        # Run again, this cell replaces the adapter of the earlier run instead of wrapping it.
        adapter = LowRankAdapter(getattr(current, "base", current))
        setattr(layer.self_attn, name, adapter)
        adapters.append(adapter)
adapter_params = [p for adapter in adapters for p in (adapter.down.weight, adapter.up.weight)]

trainable = {name for name, p in model.named_parameters() if p.requires_grad}
print(f"{len(adapters)} adapters, {sum(p.numel() for p in adapter_params)} trainable parameters "
      f"of {sum(p.numel() for p in model.parameters())}")
assert trainable == {name for name, p in model.named_parameters() if ".down." in name or ".up." in name}
assert all(p.requires_grad for p in adapter_params) and len(adapter_params) == 2 * len(adapters)


# %% [markdown]
# ## 复现故障
#
# 还差三样东西故障才会出现：可重入梯度检查点（transformers 4.57 及以前 `gradient_checkpointing_enable()` 的默认做法）、没有输入梯度钩子、训练模式（eval 模式下梯度检查点会被跳过；这两点都在 notebook 08 中验证）。我们用 `compat.input_grad_hooks` 返回的句柄移除钩子。移除要做两次：开启梯度检查点之前一次，之后再一次，因为在 transformers 5.x 上开启梯度检查点会自动重新注册这个钩子（本 notebook 最后一节细说）。做完之后，嵌入模块上一个前向钩子都不剩。

# %%
def remove_input_grad_hooks(model):
    for handle in compat.input_grad_hooks(model):
        handle.remove()


remove_input_grad_hooks(model)
compat.enable_checkpointing(model, use_reentrant=True)
remove_input_grad_hooks(model)
model.train()

print("checkpointing:", compat.is_checkpointing(model), "| training:", model.training,
      "| hooks on the embedding:", dict(model.get_input_embeddings()._forward_hooks))
assert compat.is_checkpointing(model) and model.training
assert not compat.has_input_grad_hook(model) and not model.get_input_embeddings()._forward_hooks

# %% [markdown]
# 在一个 batch 上做一次前向传播：两条随机的 32 token 序列（梯度怎么流动，和句子内容无关）。我们用 `warnings.catch_warnings(record=True)` 在局部记录警告：torch 的可重入检查点会为每个做了检查点的解码器层各发一条警告，说它的输入没有一个需要梯度。得到的损失没有 `grad_fn`：计算图里没有任何东西把它和可训练参数连起来。

# %%
generator = torch.Generator().manual_seed(0)
ids = torch.randint(3, 1000, (2, 32), generator=generator)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    loss = model(input_ids=ids, labels=ids).loss
messages = [str(w.message) for w in caught]
for message in messages:
    print("warning:", message)
print("loss:", loss.item(), "| requires_grad:", loss.requires_grad, "| grad_fn:", loss.grad_fn)

reentrant_warnings = [m for m in messages if "None of the inputs have requires_grad=True" in m]
assert len(reentrant_warnings) == model.config.num_hidden_layers
assert not loss.requires_grad and loss.grad_fn is None

# %% [markdown]
# 训练日志里的警告很容易被忽略，但 `backward()` 处的报错不会：

# %%
with expect_error(RuntimeError, match="element 0 of tensors does not require grad and does not have a grad_fn"):
    loss.backward()
assert all(p.grad is None for p in adapter_params)

# %% [markdown]
# 原因在于：可重入检查点是一个自定义的 `autograd.Function`。前向传播时，它在 `torch.no_grad()` 下运行解码器层，只通过自己的张量*输入*接入计算图。层里面的适配器权重并不是这个函数的输入，所以当没有任何输入需要梯度时（冻结的嵌入产生的隐藏状态就不需要梯度），层的输出也不需要梯度，适配器就被切断了。用纯 PyTorch 能写出最小的可运行例子：对一个可训练的 `nn.Linear` 做检查点，输入不需要梯度。非可重入的实现照常记录计算图，权重就留在图里。

# %%
from torch.utils.checkpoint import checkpoint

linear = nn.Linear(4, 4)
x = torch.randn(2, 4)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    reentrant_out = checkpoint(linear, x, use_reentrant=True)
non_reentrant_out = checkpoint(linear, x, use_reentrant=False)
print("weight requires grad:", linear.weight.requires_grad, "| input requires grad:", x.requires_grad)
print("output requires grad: reentrant", reentrant_out.requires_grad, "| non-reentrant", non_reentrant_out.requires_grad)
assert linear.weight.requires_grad and not x.requires_grad
assert not reentrant_out.requires_grad and non_reentrant_out.requires_grad
assert any("None of the inputs have requires_grad=True" in str(w.message) for w in caught)

# %% [markdown]
# **动手试试：** 把适配器改放到 MLP 里：在适配器那个单元格中，用 `layer.mlp` 替换 `layer.self_attn`，名字改成 `("gate_proj", "up_proj", "down_proj")`，然后从加载模型的单元格开始重新运行。故障和适配器放在哪里无关，只取决于它们是否位于做了检查点的层之内。

# %% [markdown]
# ## 静默失败的变体
#
# 现在在解码器层*之外*加一个可训练参数。LM head 是很自然的选择：OpenVLA 的最后一层微调就会训练它。这时损失有了 `grad_fn`（经由 LM head），`backward()` 顺利完成，训练循环可以一连跑上几个小时。可是每个适配器的 `.grad` 依然是 `None`：它们什么也学不到，而且没有任何报错。

# %%
head = model.get_output_embeddings().weight
head.requires_grad_(True)
model.zero_grad(set_to_none=True)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()

print("loss grad_fn:", type(loss.grad_fn).__name__, "| backward succeeded; LM head grad norm:", head.grad.norm().item())
print("adapter grads:", [p.grad for p in adapter_params])
assert any(module is model.get_output_embeddings() for module in backbone.last_layer_finetune_modules)
assert loss.grad_fn is not None and head.grad is not None and head.grad.norm() > 0
assert all(p.grad is None for p in adapter_params)
assert any("None of the inputs have requires_grad=True" in str(w.message) for w in caught)
head.requires_grad_(False)

# %% [markdown]
# ## 拆开这个钩子
#
# **挂在哪里。** `enable_input_require_grads()` 在 `model.get_input_embeddings()` 返回的模块上注册一个*前向钩子*，这里就是 `model.model.embed_tokens`。前向钩子是 PyTorch 在模块的 `forward` 之后调用的函数，参数是模块本身、它的输入和输出；模块把这些函数存在有序字典 `_forward_hooks` 里，键是句柄的 id。句柄由模型保管（5.x 是列表 `_require_grads_hooks`，4.57 是单个的 `_require_grads_hook`）；`compat.input_grad_hooks(model)` 在两个版本上都能把它们取出来。

# %%
import inspect

remove_input_grad_hooks(model)  # so that running this cell again does not stack a second hook
model.enable_input_require_grads()
embedding = model.get_input_embeddings()
handles = compat.input_grad_hooks(model)
hook_function = embedding._forward_hooks[handles[0].id]
print("embedding module:", type(embedding).__name__, "| hooks:",
      {hook_id: function.__qualname__ for hook_id, function in embedding._forward_hooks.items()})
print(inspect.getsource(hook_function))

assert embedding is model.model.embed_tokens
assert len(embedding._forward_hooks) == 1 and compat.has_input_grad_hook(model)
assert "output.requires_grad_(True)" in inspect.getsource(hook_function)

# %% [markdown]
# **做了什么。** 只有一行：`output.requires_grad_(True)`。嵌入权重是冻结的，所以它的输出本来不需要梯度；钩子把输出张量上的这个标志翻了过来。这个输出没有 `grad_fn`，是一个叶子张量：梯度反向传到它*这里*就停住，冻结的权重照样什么也拿不到。但进入第一个检查点层的隐藏状态现在需要梯度了，可重入检查点也就接进了计算图。

# %%
remove_input_grad_hooks(model)
model.enable_input_require_grads()  # as the cell above left it, so that this cell can run again on its own
hooked = embedding(ids)
remove_input_grad_hooks(model)
plain = embedding(ids)
print("with the hook:    requires_grad =", hooked.requires_grad, "| is_leaf =", hooked.is_leaf)
print("without the hook: requires_grad =", plain.requires_grad)
assert hooked.requires_grad and hooked.is_leaf and hooked.grad_fn is None
assert not plain.requires_grad and not embedding.weight.requires_grad
torch.testing.assert_close(hooked, plain)


# %% [markdown]
# **移除它。** 每个句柄的 `.remove()` 会把对应的条目从 `_forward_hooks` 里删掉，上面那个单元格在计算 `plain` 之前做的就是这件事。再做一个最小的可运行检验：我们自己写的一行钩子，手动注册之后，效果必须和库里的钩子完全一样。我们分别在两种钩子下跑一步，比较适配器的梯度。

# %%
def backward_step(**inputs):
    """Forward and backward on the batch; returns the adapters' gradients and the warnings raised."""
    model.zero_grad(set_to_none=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(**inputs, labels=ids).loss.backward()
    return [p.grad for p in adapter_params], [str(w.message) for w in caught]


def our_hook(module, inputs, output):
    output.requires_grad_(True)


handle = embedding.register_forward_hook(our_hook)
ours, _ = backward_step(input_ids=ids)
handle.remove()
remove_input_grad_hooks(model)  # a hook from an earlier run of this cell would stay behind, unreachable, on 5.x
model.enable_input_require_grads()
library, _ = backward_step(input_ids=ids)
print("norm of each adapter's `up` gradient, our hook:    ", [round(g.norm().item(), 5) for g in ours[1::2]])
print("norm of each adapter's `up` gradient, library hook:", [round(g.norm().item(), 5) for g in library[1::2]])
assert all(g is not None and g.norm() > 0 for g in ours)
torch.testing.assert_close(ours, library)


# %% [markdown]
# ## 三种修复
#
# 以下每一种都能让 autograd 找到一条从损失通往适配器的路径：
# 1. **钩子**（`model.enable_input_require_grads()`）：层的输入需要梯度，可重入检查点于是接进计算图，反向传播就能到达适配器；
# 2. **非可重入梯度检查点**（`use_reentrant=False`）：它不在 `no_grad` 下运行层；autograd 照常记录这一层，检查点只决定丢掉哪些保存的张量、之后再重算，所以不管输入如何，层内的参数都在图里；
# 3. **不用梯度检查点**：普通的计算图，每个参数都看得见。
#
# 下面的 `configure` 在同一个模型上从头搭出每种配置（和前面一样，钩子要移除两次），`backward_step` 跑一步。每种修复都让每个适配器拿到非零梯度，而且三者给出的梯度完全相同：梯度检查点改变的是存什么，从不改变结果。

# %%
def configure(checkpointing=None, hook=False, trainable_head=False):
    """checkpointing: "reentrant", "non-reentrant" or None (off)."""
    compat.disable_checkpointing(model)
    remove_input_grad_hooks(model)
    if checkpointing is not None:
        compat.enable_checkpointing(model, use_reentrant=(checkpointing == "reentrant"))
        remove_input_grad_hooks(model)
    if hook:
        model.enable_input_require_grads()
    model.get_output_embeddings().weight.requires_grad_(trainable_head)
    model.train()
    assert len(model.get_input_embeddings()._forward_hooks) == int(hook)
    assert compat.is_checkpointing(model) == (checkpointing is not None)


fixes = {"hook": ("reentrant", True), "non-reentrant": ("non-reentrant", False), "no checkpointing": (None, False)}
fixed_grads = {}
for fix, (checkpointing, hook) in fixes.items():
    configure(checkpointing, hook)
    fixed_grads[fix], warned = backward_step(input_ids=ids)
    print(f"{fix:17s} `up` gradient norms:", [round(g.norm().item(), 5) for g in fixed_grads[fix][1::2]],
          "| warnings:", len(warned))
    assert all(g is not None and g.norm() > 0 for g in fixed_grads[fix]) and not warned

torch.testing.assert_close(fixed_grads["hook"], fixed_grads["non-reentrant"])
torch.testing.assert_close(fixed_grads["hook"], fixed_grads["no checkpointing"])


# %% [markdown]
# 一张表看全貌：每种检查点模式，有无钩子，LM head 是否可训练。只有“可重入检查点 + 没有钩子”会出故障：LM head 不可训练时当场报错，可训练时则静默失败。

# %%
def outcome(checkpointing=None, hook=False, trainable_head=False):
    configure(checkpointing, hook, trainable_head)
    try:
        grads, _ = backward_step(input_ids=ids)
    except RuntimeError:
        return "RuntimeError at backward"
    if all(g is None for g in grads):
        return "silent: adapters get no gradient"
    return "adapters get gradients" if all(g is not None and g.norm() > 0 for g in grads) else "mixed"


table = {}
for checkpointing in ("reentrant", "non-reentrant", None):
    for hook in (False, True):
        for trainable_head in (False, True):
            table[checkpointing, hook, trainable_head] = outcome(checkpointing, hook, trainable_head)
            print(f"{str(checkpointing):14s} hook={hook!s:5s} trainable head={trainable_head!s:5s} -> "
                  f"{table[checkpointing, hook, trainable_head]}")

assert table["reentrant", False, False] == "RuntimeError at backward"
assert table["reentrant", False, True] == "silent: adapters get no gradient"
assert all(v == "adapters get gradients" for k, v in table.items() if k[:2] != ("reentrant", False))

# %% [markdown]
# 全量微调为什么从来用不着这个钩子：那时嵌入矩阵本身就在训练，嵌入的输出自然需要梯度，可重入检查点看到的输入也就需要梯度。下面重跑表里最糟的那一行，只是用可训练的嵌入矩阵代替钩子：

# %%
configure("reentrant", hook=False)
embedding.weight.requires_grad_(True)
full_grads, _ = backward_step(input_ids=ids)
embedding.weight.requires_grad_(False)
print("reentrant, no hook, trainable embeddings: adapter gradient norms", [round(g.norm().item(), 5) for g in full_grads[1::2]])
assert all(g is not None and g.norm() > 0 for g in full_grads) and embedding.weight.grad is not None
torch.testing.assert_close(full_grads, fixed_grads["no checkpointing"])


# %% [markdown]
# **动手试试：** 选一个组合，看看会发生什么（在 Jupyter 里会出现下拉菜单；作为脚本运行时，每项取第一个选项）。

# %%
def show_outcome(checkpointing, hook, trainable_head):
    result = outcome(checkpointing, hook, trainable_head)
    print(f"checkpointing={checkpointing}, hook={hook}, trainable head={trainable_head}:", result)
    return result


first_outcome = explore(show_outcome,
                        checkpointing=["reentrant", "non-reentrant", None], hook=[False, True], trainable_head=[False, True])
assert first_outcome == table["reentrant", False, False]

# %% [markdown]
# ## `inputs_embeds` 的陷阱
#
# 钩子挂在嵌入*模块*上：只有调用这个模块时它才会触发。VLM 并不把 `input_ids` 传给语言模型，而是传入拼接了图像 patch 的 `inputs_embeds`（见 notebook 11）。如果文本嵌入是用别的方式算出来的，比如直接对权重矩阵做索引，那么嵌入模块根本没有运行，钩子也不会触发；在可重入检查点下，不管有没有钩子，故障又回来了。

# %%
configure("reentrant", hook=True)
bypassed = model.get_input_embeddings().weight[ids]
print("embeddings by indexing the weight: requires_grad =", bypassed.requires_grad)
assert not bypassed.requires_grad and compat.has_input_grad_hook(model)
with expect_error(RuntimeError, match="element 0 of tensors does not require grad"):
    backward_step(inputs_embeds=bypassed)

# %% [markdown]
# 修复办法是经由嵌入模块来计算嵌入，而 `backbone.embed_input_ids` 做的正是这件事（`llm.get_input_embeddings()(input_ids)`），所以钩子会触发。两种做法得到的数值完全相同，只有那个标志不同；适配器拿到的梯度也和直接传 `input_ids` 时一样。

# %%
through_module = backbone.embed_input_ids(ids)
print("embeddings from embed_input_ids: requires_grad =", through_module.requires_grad)
grads, _ = backward_step(inputs_embeds=through_module)
assert "get_input_embeddings()(input_ids)" in inspect.getsource(type(backbone).embed_input_ids)
assert through_module.requires_grad
torch.testing.assert_close(through_module, bypassed)
torch.testing.assert_close(grads, fixed_grads["hook"])

# %% [markdown]
# ## 上游为什么在 transformers 4.40 上丢了钩子
#
# OpenVLA 的构造函数先注册钩子，之后 Llama-2 家族才添加 `<PAD>` token 并调用 `resize_token_embeddings`（我们的实现也一样：Llama-2 的 32000 个词加上 `<PAD>` 共 32001 个 token，补齐到 32064 行，即 64 的倍数）。在 transformers 4.40 上，resize 会新建一个 `nn.Embedding` 并装进模型；钩子却留在旧模块上，而模型已经不再调用旧模块了。transformers 4.57 和 5.x 则把 resize 后的权重写进*同一个*模块对象，所以钩子得以保留。在当前版本上：

# %%
extra_rows = 64
configure("reentrant", hook=True)
before = model.get_input_embeddings()
rows_before = before.weight.shape[0]
print("hook before the resize:", compat.has_input_grad_hook(model), "| rows:", rows_before)
model.resize_token_embeddings(rows_before + extra_rows, mean_resizing=False)
after = model.get_input_embeddings()
print("hook after the resize: ", compat.has_input_grad_hook(model), "| rows:", after.weight.shape[0],
      "| same module:", after is before)
assert tokenizer.pad_token == "<PAD>" and len(tokenizer) == 32000 + 1
assert after.weight.shape[0] == rows_before + extra_rows
assert compat.has_input_grad_hook(model) and after is before
grads, _ = backward_step(input_ids=ids)
assert all(g is not None and g.norm() > 0 for g in grads)

# %% [markdown]
# 为了看到 4.40 的行为，我们手动做一遍它的 resize 所做的事：新建一个 `nn.Embedding`，拷入权重（和模型其余部分一样冻结），再用 `model.set_input_embeddings` 装进模型。旧模块还挂着钩子，新模块上什么也没有，于是故障又回来了。

# %%
fresh = nn.Embedding(after.num_embeddings, after.embedding_dim, padding_idx=after.padding_idx)
fresh.weight.data.copy_(after.weight.data)
fresh.requires_grad_(False)
model.set_input_embeddings(fresh)
print("hooks on the old module:", len(after._forward_hooks), "| on the new one:", len(fresh._forward_hooks),
      "| has_input_grad_hook:", compat.has_input_grad_hook(model))
assert len(after._forward_hooks) == 1 and not fresh._forward_hooks and not compat.has_input_grad_hook(model)
with expect_error(RuntimeError, match="element 0 of tensors does not require grad"):
    backward_step(input_ids=ids)

# %% [markdown]
# 在任何版本上都适用的对策：在对嵌入模块做完最后一次改动*之后*再调用 `enable_input_require_grads()`（或者在开始训练之前用 `compat.has_input_grad_hook` 检查一下）。

# %%
remove_input_grad_hooks(model)
model.enable_input_require_grads()
grads, _ = backward_step(input_ids=ids)
assert compat.has_input_grad_hook(model) and all(g is not None and g.norm() > 0 for g in grads)

# %% [markdown]
# **动手试试：** 在 resize 那个单元格里把 `extra_rows` 设为 `1`（或者设为 `-64` 来缩小），然后重新运行：不管新尺寸是多少，模块还是同一个对象，钩子也还在。

# %% [markdown]
# ## transformers 5.x 替你做了什么
#
# 在我们测试过的 transformers 5.x 版本上，开启梯度检查点（`activation_checkpointing_enable`，即 `gradient_checkpointing_enable` 的新名字）时会顺带自己调用 `enable_input_require_grads()`（它的默认实现也改成了非可重入，见 notebook 08）；4.57 不会。`compat.CHECKPOINTING_REGISTERS_INPUT_HOOK` 记录的就是这个观察结果。我们从一个没有钩子的模型出发，开启*可重入*梯度检查点，看看结果：在 5.x 上钩子出现了，适配器可以训练；在 4.57 上故障依旧。这个单元格在两个版本上都能运行。

# %%
configure(None, hook=False)
compat.enable_checkpointing(model, use_reentrant=True)
registered = compat.has_input_grad_hook(model)
print(f"transformers {compat.TRANSFORMERS_VERSION}: enabling checkpointing registered the hook: {registered}")
assert registered == compat.CHECKPOINTING_REGISTERS_INPUT_HOOK
if compat.CHECKPOINTING_REGISTERS_INPUT_HOOK:
    grads, _ = backward_step(input_ids=ids)
    assert all(g is not None and g.norm() > 0 for g in grads)
else:
    with expect_error(RuntimeError, match="element 0 of tensors does not require grad"):
        backward_step(input_ids=ids)


# %% [markdown]
# 5.x 上有一个副作用：骨干网络的构造函数已经注册过一次钩子，如果再直接调用库函数开启梯度检查点，就会注册*第二个*，而模型的句柄列表只记得最新的那个。两个钩子设置同一个标志，本身无害；但这时通过句柄移除“那个钩子”，就会漏掉一个。`backbone.enable_gradient_checkpointing()` 调用的 `compat.enable_checkpointing` 会先移除旧句柄，开启梯度检查点之后再检查钩子是否还在，如果库没有注册（4.57 就不会），就重新加上。所以原本有钩子的骨干网络，在两个版本上最后都恰好只有一个钩子，而且模型记得它的句柄。（本 notebook 在开启梯度检查点之后仍会再移除一次钩子，因为那些地方要的是一个钩子都没有。）下面的单元格在调用库函数之前先留住第一个钩子的句柄，事后就能把两个钩子都移除，让模型回到上面的控件所需要的状态。

# %%
def hooks_after(enable) -> tuple[int, int]:
    """(hooks on the embedding module, handles the model remembers) after hook + `enable()`."""
    configure(None, hook=True)
    before = compat.input_grad_hooks(model)
    enable()
    counts = len(model.get_input_embeddings()._forward_hooks), len(compat.input_grad_hooks(model))
    compat.disable_checkpointing(model)
    # We kept the first hook's handle, so both hooks go: the model is left as `configure` expects it.
    for handle in [*before, *compat.input_grad_hooks(model)]:
        handle.remove()
    return counts


through_backbone = hooks_after(backbone.enable_gradient_checkpointing)
library_call = getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)
raw = hooks_after(library_call)
print("library call: hooks, handles =", raw, "| backbone.enable_gradient_checkpointing():", through_backbone)
assert raw == ((2, 1) if compat.CHECKPOINTING_REGISTERS_INPUT_HOOK else (1, 1))
assert through_backbone == (1, 1)
assert not model.get_input_embeddings()._forward_hooks

# %% [markdown]
# 这个检查不依赖于库碰巧怎么做。为了在 5.x 上也看到这一点，我们替换掉库的开启方法，让它把库自己注册的钩子再移除掉，也就是模拟 4.57 的行为：骨干网络的模型最后仍然恰好有一个钩子，适配器在可重入梯度检查点下照样能训练。最后，这个单元格也会把这个钩子移除，让模型回到上面的控件所需要的状态。

# %%
from unittest import mock

def enable_without_hook(**kwargs):
    library_call(**kwargs)
    remove_input_grad_hooks(model)


configure(None, hook=True)
with mock.patch.object(model, library_call.__name__, enable_without_hook):
    compat.enable_checkpointing(model, use_reentrant=True)
model.train()
counts = len(model.get_input_embeddings()._forward_hooks), len(compat.input_grad_hooks(model))
grads, _ = backward_step(input_ids=ids)
print("library without the hook, then compat.enable_checkpointing: hooks, handles =", counts)
assert counts == (1, 1) and compat.has_input_grad_hook(model)
assert all(g is not None and g.norm() > 0 for g in grads)
compat.disable_checkpointing(model)
remove_input_grad_hooks(model)
assert not model.get_input_embeddings()._forward_hooks

# %% [markdown]
# ## 小结
# - 冻结的 LLM + 层内的适配器 + 可重入梯度检查点 + 没有输入梯度钩子：先是警告“None of the inputs have requires_grad=True”，然后是 `RuntimeError: element 0 of tensors does not require grad`；只要在这些层之后有任何可训练参数，就完全不报错，适配器却永远拿不到梯度。
# - 这个钩子是挂在 `get_input_embeddings()` 上的前向钩子，只有一行：`output.requires_grad_(True)`；`compat.input_grad_hooks` 给出它的句柄，`compat.has_input_grad_hook` 检查它是否挂在当前的嵌入模块上。
# - 钩子、非可重入梯度检查点、不用梯度检查点，三者都能修复，而且梯度完全相同。
# - 钩子只在嵌入模块运行时触发：用 `embed_input_ids` 构造 `inputs_embeds`；替换嵌入模块之后要重新注册钩子（4.40 的 resize 就是在背后做了这种替换）。
# - transformers 5.x 在开启梯度检查点时会自己注册钩子；如果骨干网络已经有一个，就会变成两个，按句柄移除时会漏掉一个。`compat.enable_checkpointing` 会先移除旧句柄，事后再检查钩子，所以骨干网络在每个版本上都恰好只有一个钩子。
#
# ## 练习
# 1. 像真正的 LoRA 那样把 `up` 初始化为零。在有钩子的情况下，第一步里哪些适配器权重的梯度为零、哪些不为零？用链式法则解释。
# 2. 把静默失败那个变体里的可训练参数挪到*前面*：一个乘在嵌入输出上的可训练标量（把嵌入模块包一层）。在可重入检查点、没有钩子的情况下，适配器能拿到梯度吗？为什么？
# 3. VLM 会把投影后的图像 patch 拼进 `inputs_embeds`。在移除钩子、使用可重入检查点的情况下，把 `inputs_embeds` 构造成 `[text[:, :1], patches, text[:, 1:]]`，其中 `patches` 来自一个可训练的 `nn.Linear` 投影器。适配器能拿到梯度吗？如果投影器也冻结了呢？
# 4. 写一个 `assert_adapters_learn(model, batch)`：训练开始前的自检，跑一步，若有可训练参数的 `.grad` 为 `None`，就抛出清楚的错误并逐一列出这些参数。把它用在上面那张表的每一行上。
