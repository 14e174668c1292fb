# %% [markdown]
# # 08 · 梯度检查点：实测
#
# 训练时，反向传播要用到的每个中间张量都得留着：每个解码器层的激活，batch 里每条序列的每个 token 都有一份，所以这部分内存随 batch 大小、序列长度、模型宽度和深度一起增长。梯度检查点用计算换内存：前向传播时只保留每个解码器层的输入，反向传播时把这一层的前向再跑一遍，把其余的张量找回来。本 notebook 先拆开 `enable_gradient_checkpointing()`，再在一个小模型上实测这种取舍：开与不开梯度检查点时，autograd 保存的字节数、每步耗时，以及梯度本身。
#
# **你将学到**
# - `backbone.enable_gradient_checkpointing()` 做了什么，为什么它只在训练模式下起作用；
# - 它能省多少内存、要多花多少时间，在不同序列长度下实测；
# - 无论可重入与否，它都不会改变梯度；以及可重入梯度检查点在什么情况下需要输入梯度钩子；
# - 为什么训练时要关掉 `use_cache`，以及如果你仍然要求缓存，当前 transformers 会怎么做。

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
# ## `enable_gradient_checkpointing()` 做了什么
#
# `HFCausalLLMBackbone.enable_gradient_checkpointing` 只有一行：通过 `compat.enable_checkpointing` 把请求转交给 HuggingFace 模型，并指定非可重入的实现。`compat` 在 transformers 5.x 上调用 `activation_checkpointing_enable`（这个方法的新名字），在 4.57 上调用 `gradient_checkpointing_enable`——4.57 只有这个旧名字。
#
# 和所有 notebook 一样，这里只用一个 CPU 线程（由 `setup()` 设置）：这样计时结果受机器核数和其他进程的影响更小，而且这么小的张量，多开线程也得不到多少好处。

# %%
import inspect
import warnings

import matplotlib.pyplot as plt
import torch

import vla_backbone
from vla_backbone import compat
from vla_backbone.measure import median_seconds, saved_activation_bytes
from vla_backbone.notebook import explore, transformers_log

backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
llm = backbone.llm
source = inspect.getsource(type(backbone).enable_gradient_checkpointing)
print(source)
assert "compat.enable_checkpointing(self.llm, use_reentrant=False)" in source
assert hasattr(llm, "activation_checkpointing_enable") == compat.IS_V5
assert not compat.is_checkpointing(llm)
assert torch.get_num_threads() == 1  # setup() set it

# %% [markdown]
# HF 模型再把请求传给每个解码器层：每层得到一个标志 `gradient_checkpointing` 和一个检查点函数，即 `torch.utils.checkpoint.checkpoint`，并带上我们指定的关键字参数。

# %%
backbone.enable_gradient_checkpointing()
layer = llm.model.layers[0]
print("is_checkpointing:", compat.is_checkpointing(llm))
print("layer 0:", layer.gradient_checkpointing, layer._gradient_checkpointing_func)
assert compat.is_checkpointing(llm)
for layer in llm.model.layers:
    assert layer.gradient_checkpointing
    assert layer._gradient_checkpointing_func.func is torch.utils.checkpoint.checkpoint
    assert layer._gradient_checkpointing_func.keywords == {"use_reentrant": False}

# %% [markdown]
# **只在训练模式下生效。** 解码器层每次被调用时都会检查 `self.training`。`from_pretrained` 返回的模型处于 eval 模式，骨干网络也没有改变这一点：刚加载完时，外层的包装说 `training=True`，里面的 LLM 却说 `False`。训练循环必须对模型调用 `.train()`；对骨干网络调用时，它也会传到 LLM。要看出区别，我们数一数每个解码器层的 MLP 在前向传播和反向传播中各被调用了几次：eval 模式下，反向传播什么也不重算；训练模式下，每一层都会再跑一遍。（我们用前向 *pre* 钩子计数，它在进入 MLP 时运行；为什么不能用 MLP 跑完之后才运行的钩子，见练习 4。）

# %%
# A freshly loaded backbone with checkpointing on, as above, so that this cell shows the state right after loading
# however often it runs.
backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
llm = backbone.llm
backbone.enable_gradient_checkpointing()
entries = []
counting = [layer.mlp.register_forward_pre_hook(lambda module, args: entries.append(module)) for layer in llm.model.layers]
ids = torch.randint(3, 1000, (2, 32), generator=torch.Generator().manual_seed(0))


def mlp_entries():
    """How many times the decoder layers' MLPs run in the forward pass and in the backward pass of one step."""
    entries.clear()
    loss = llm(input_ids=ids, labels=ids).loss
    forward = len(entries)
    loss.backward()
    return forward, len(entries) - forward


print("after loading: backbone.training =", backbone.training, "| backbone.llm.training =", llm.training)
assert backbone.training and not llm.training
counts = {"eval": mlp_entries()}
backbone.train()
assert llm.training
counts["train"] = mlp_entries()
for handle in counting:
    handle.remove()
print("MLP runs (forward, backward):", counts)
layers = llm.config.num_hidden_layers
assert counts == {"eval": (layers, 0), "train": (layers, layers)}

# %% [markdown]
# ## 实测：内存和时间随序列长度的变化
#
# `saved_activation_bytes(model, compute_loss)` 统计 `compute_loss()` 运行期间 autograd 为反向传播保存的字节数，不含参数本身，这正是梯度检查点要削减的那部分内存。`median_seconds(step)` 计量完整的一步（前向加反向）的耗时。64 维的微型副本给出的数字不够清楚，所以我们用微型 checkpoint 自己的 config 构造模型：同样是 `LlamaForCausalLM` 类，同样 2 层，隐藏维度 128（微型副本的两倍），随机权重，所有参数都可训练（全量微调）。一个保留微型副本的 32064 行词表，另一个只有 1024 行。先说明为什么该测的是第二个：在长度 64、batch 2 下把两者都测一遍。

# %%
BATCH = 2


def measurement_model(vocab_size):
    """A 128-wide, 2-layer LlamaForCausalLM from the replica's config, with `vocab_size` rows, in training mode."""
    config = type(llm.config).from_dict({**llm.config.to_dict(), "hidden_size": 128, "intermediate_size": 256,
                                         "head_dim": 32, "vocab_size": vocab_size, "pad_token_id": None})
    torch.manual_seed(0)
    return type(llm)(config).train()


def batch_of(length, batch=BATCH):
    return torch.randint(3, 1000, (batch, length), generator=torch.Generator().manual_seed(length))


def saved_with_and_without(model, length):
    """Bytes saved for backward without and with (non-reentrant) checkpointing."""
    ids = batch_of(length)

    def compute_loss():
        return model(input_ids=ids, labels=ids).loss

    compat.disable_checkpointing(model)
    without = saved_activation_bytes(model, compute_loss)
    compat.enable_checkpointing(model)
    with_checkpointing = saved_activation_bytes(model, compute_loss)
    compat.disable_checkpointing(model)
    return without, with_checkpointing


measured = {vocab_size: saved_with_and_without(measurement_model(vocab_size), 64) for vocab_size in (32064, 1024)}
share_removed = {vocab_size: 1 - ck / full for vocab_size, (full, ck) in measured.items()}
for vocab_size, (full, ck) in measured.items():
    logits_sized = BATCH * 64 * vocab_size * 4
    print(f"vocabulary {vocab_size:5d}: {full / 1e6:5.1f} MB saved for backward, of which a logits-sized fp32 tensor "
          f"is {logits_sized / full:4.0%}; checkpointing removes {share_removed[vocab_size]:.0%}")
assert BATCH * 64 * 32064 * 4 > 0.5 * measured[32064][0]
assert 0.05 < share_removed[32064] < 0.2 and share_removed[1024] > 0.5

# %% [markdown]
# 在这种玩具宽度下保留真实词表时，autograd 保存的东西大部分是一个和 logits 一样大的张量（batch × 长度 × 32064 个浮点数，交叉熵为反向传播保留着它），而梯度检查点只作用于解码器层，只能去掉大约十分之一。这是玩具宽度造成的假象，并不是梯度检查点本身的性质：在 Llama-2-7B 里，每个 token 要经过 32 个宽 4096 的解码器层，其中的 MLP 处理的是 11008 维的激活，所以这些层保存的东西远多于一行 32064 维的 logits。换成 1024 行的词表，就能在笔记本电脑跑得动的小模型上恢复这种比例，而且类、深度和梯度检查点代码都不用改，所以后面的测量都用它。序列长度从 64 到 512，batch 为 2；先做的内存测量顺便充当了计时的预热。

# %%
model = measurement_model(1024)
config = model.config
print(type(model).__name__, "hidden", config.hidden_size, "layers", config.num_hidden_layers,
      "vocabulary", config.vocab_size, "parameters", sum(p.numel() for p in model.parameters()))
assert all(p.requires_grad for p in model.parameters())

LENGTHS = [64, 128, 256, 512]


def measure(length, batch=BATCH, repeats=3):
    """(bytes saved for backward, median step seconds) at the model's current checkpointing setting."""
    ids = batch_of(length, batch)

    def compute_loss():
        return model(input_ids=ids, labels=ids).loss

    def step():
        model.zero_grad(set_to_none=True)
        compute_loss().backward()

    return saved_activation_bytes(model, compute_loss), median_seconds(step, repeats=repeats, warmup=0)


results = {}
for checkpointing in (False, True):
    if checkpointing:
        compat.enable_checkpointing(model)
    assert compat.is_checkpointing(model) == checkpointing
    for length in LENGTHS:
        results[checkpointing, length] = measure(length)

print(f"{'length':>6} {'MB without':>11} {'MB with':>8} {'ms without':>11} {'ms with':>8}")
for length in LENGTHS:
    (full_b, full_s), (ck_b, ck_s) = results[False, length], results[True, length]
    print(f"{length:6d} {full_b / 1e6:11.2f} {ck_b / 1e6:8.2f} {full_s * 1e3:11.1f} {ck_s * 1e3:8.1f}")

# %% [markdown]
# 检验关于内存的结论：在每个长度上，梯度检查点保存的字节都更少，而且省下的量随长度增长。

# %%
saved = {ck: [results[ck, length][0] for length in LENGTHS] for ck in (False, True)}
savings = [full - ck for full, ck in zip(saved[False], saved[True])]
assert all(ck < full for full, ck in zip(saved[False], saved[True]))
assert all(a < b for a, b in zip(savings, savings[1:]))

TEXT = {
    "en": {
        "memory": "Saved for backward (MB)", "time": "Step time (ms)", "length": "Sequence length",
        "without": "without checkpointing", "with": "with checkpointing",
        "measured": "On this machine we measured, at sequence length {length} and batch {batch}: {full:.1f} MB saved "
                    "for backward without checkpointing and {ck:.1f} MB with it ({ratio:.1f}x less); one step took "
                    "{full_ms:.0f} ms without and {ck_ms:.0f} ms with ({change:+.0f}%).",
    },
    "zh": {
        "memory": "为反向传播保存的张量（MB）", "time": "每步耗时（ms）", "length": "序列长度",
        "without": "不用梯度检查点", "with": "使用梯度检查点",
        "measured": "在这台机器上实测（序列长度 {length}，batch {batch}）：不用梯度检查点时为反向传播保存 {full:.1f} MB，"
                    "使用后为 {ck:.1f} MB（只有前者的 1/{ratio:.1f}）；每步耗时分别为 {full_ms:.0f} ms 和 {ck_ms:.0f} ms"
                    "（{change:+.0f}%）。",
    },
}[LANG]

figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
for ck, style in ((False, "o-"), (True, "s--")):
    label = TEXT["with"] if ck else TEXT["without"]
    left.plot(LENGTHS, [b / 1e6 for b in saved[ck]], style, label=label)
    right.plot(LENGTHS, [results[ck, length][1] * 1e3 for length in LENGTHS], style, label=label)
for axis, ylabel in ((left, TEXT["memory"]), (right, TEXT["time"])):
    axis.set_xlabel(TEXT["length"])
    axis.set_ylabel(ylabel)
    axis.set_xticks(LENGTHS)
    axis.legend()
figure.tight_layout()
plt.show()

longest = LENGTHS[-1]
(full_b, full_s), (ck_b, ck_s) = results[False, longest], results[True, longest]
print(TEXT["measured"].format(length=longest, batch=BATCH, full=full_b / 1e6, ck=ck_b / 1e6, ratio=full_b / ck_b,
                              full_ms=full_s * 1e3, ck_ms=ck_s * 1e3, change=(ck_s / full_s - 1) * 100))

# %% [markdown]
# 多出来的时间花在哪里：重算。开启梯度检查点后，每个解码器层每步要跑两次，前向传播一次，反向传播时再来一次；不开则只跑一次。一步具体会慢多少取决于机器，而且在繁忙的 CPU 上计时噪声很大，所以我们数运行次数，而不是对秒数做断言。
#
# 还有最要紧的一条：梯度检查点改变的是存什么，而不是算什么。开与不开，参数梯度完全相同。

# %%
runs = []
hooks = [layer.mlp.register_forward_pre_hook(lambda module, args: runs.append(module)) for layer in model.model.layers]
ids = batch_of(128)


def gradients():
    model.zero_grad(set_to_none=True)
    runs.clear()
    model(input_ids=ids, labels=ids).loss.backward()
    return [p.grad.clone() for p in model.parameters()], len(runs)


compat.disable_checkpointing(model)
plain_grads, plain_runs = gradients()
compat.enable_checkpointing(model)
checkpointed_grads, checkpointed_runs = gradients()
for hook in hooks:
    hook.remove()
print("MLP runs per step: without", plain_runs, "| with", checkpointed_runs)
assert (plain_runs, checkpointed_runs) == (config.num_hidden_layers, 2 * config.num_hidden_layers)
torch.testing.assert_close(checkpointed_grads, plain_grads)


# %% [markdown]
# **动手试试：** 更长的序列或更大的 batch 会保存多少 MB？选一个长度和 batch（在 Jupyter 里是下拉菜单；作为脚本运行时取第一个选项）。也可以修改上面的 `LENGTHS` 和 `BATCH`，再重新运行测量的单元格。

# %%
def saved_megabytes(length, batch):
    ids = batch_of(length, batch)
    result = {}
    for ck in (False, True):
        if ck:
            compat.enable_checkpointing(model)
        else:
            compat.disable_checkpointing(model)
        result[ck] = saved_activation_bytes(model, lambda: model(input_ids=ids, labels=ids).loss) / 1e6
    print(f"length {length}, batch {batch}: {result[False]:.1f} MB without, {result[True]:.1f} MB with checkpointing")
    return result


first_megabytes = explore(saved_megabytes, length=[256, 64, 512, 1024], batch=[2, 1, 4])
assert first_megabytes[True] < first_megabytes[False]

# %% [markdown]
# ## 可重入与非可重入
#
# PyTorch 有两种实现。**可重入**实现（`use_reentrant=True`，4.57 的 `gradient_checkpointing_enable()` 默认用的就是它）是一个 `autograd.Function`：它在 `no_grad` 下运行这一层，反向传播时再重新进入 autograd。**非可重入**实现（`use_reentrant=False`，5.x 的 `activation_checkpointing_enable()` 的默认值，也是骨干网络所要求的）照常记录计算图，借助 saved-tensor 钩子丢掉激活、在需要时重算。下面调用库自带的开启方法（不带参数），再从第一个解码器层上读出库的默认值：

# %%
library_enable = getattr(llm, "activation_checkpointing_enable", None) or llm.gradient_checkpointing_enable
library_enable()
default = llm.model.layers[0]._gradient_checkpointing_func.keywords
print(f"transformers {compat.TRANSFORMERS_VERSION}: {library_enable.__name__}() -> {default}")
assert default == {"use_reentrant": not compat.IS_V5}
backbone.enable_gradient_checkpointing()

# %% [markdown]
# 当进入检查点层的输入需要梯度时（全量微调：嵌入权重参与训练，所以它的输出需要梯度），两种实现给出的梯度都和不用梯度检查点时相同，保存的字节也都更少。

# %%
compat.enable_checkpointing(model, use_reentrant=True)
# 5.x registers the input-grad hook while enabling reentrant checkpointing; without it, only the trainable
# embedding makes the layers' inputs require grad, which is the case the sentence above is about.
for handle in compat.input_grad_hooks(model):
    handle.remove()
assert not compat.has_input_grad_hook(model)
reentrant_grads, _ = gradients()
reentrant_bytes = saved_activation_bytes(model, lambda: model(input_ids=ids, labels=ids).loss)
compat.enable_checkpointing(model, use_reentrant=False)
non_reentrant_bytes = saved_activation_bytes(model, lambda: model(input_ids=ids, labels=ids).loss)
compat.disable_checkpointing(model)
plain_bytes = saved_activation_bytes(model, lambda: model(input_ids=ids, labels=ids).loss)
print(f"MB saved for backward at length 128: none {plain_bytes / 1e6:.2f}, reentrant {reentrant_bytes / 1e6:.2f}, "
      f"non-reentrant {non_reentrant_bytes / 1e6:.2f}")
torch.testing.assert_close(reentrant_grads, plain_grads)
assert max(reentrant_bytes, non_reentrant_bytes) < plain_bytes


# %% [markdown]
# 当进入这些层的东西都不需要梯度时，两者就有区别了。在一个新建的微型模型上只冻结输入嵌入（只训练层或适配器时很常见），并且不挂输入梯度钩子：用可重入梯度检查点时，解码器层**完全拿不到梯度**，而且是静默失败，因为 LM head 还在训练，反向传播照样成功。非可重入梯度检查点或者钩子都能修复这个问题。notebook 07 会用适配器把这件事彻底拆开。（在 5.x 上，开启梯度检查点会自动注册钩子，所以我们把它移除，以便看到本来的行为。）

# %%
def layer_gradients(use_reentrant, hook):
    torch.manual_seed(0)
    fresh = type(llm)(llm.config).train()
    fresh.get_input_embeddings().weight.requires_grad_(False)
    compat.enable_checkpointing(fresh, use_reentrant=use_reentrant)
    for handle in compat.input_grad_hooks(fresh):
        handle.remove()
    if hook:
        fresh.enable_input_require_grads()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh(input_ids=ids[:, :32], labels=ids[:, :32]).loss.backward()
    grads = [p.grad for p in fresh.model.layers.parameters()]
    print(f"use_reentrant={use_reentrant!s:5s} hook={hook!s:5s}: layer grads missing "
          f"{sum(g is None for g in grads)}/{len(grads)}, warnings: {len(caught)}")
    return grads


silent = layer_gradients(use_reentrant=True, hook=False)
non_reentrant = layer_gradients(use_reentrant=False, hook=False)
hooked = layer_gradients(use_reentrant=True, hook=True)
assert all(g is None for g in silent)
assert all(g is not None for g in non_reentrant)
torch.testing.assert_close(hooked, non_reentrant)

# %% [markdown]
# ## 为什么训练时要关掉 `use_cache`
#
# KV 缓存保存每一层的 key 和 value，让生成时每一步只需送入一个新 token，其余的直接复用。训练的一步一次性处理整条序列，之后也不会再回来预测下一个 token，所以缓存建好了也只会被扔掉。因此骨干网络的构造函数在训练模式下把 `llm.config.use_cache` 设为 `False`（推理模式下设为 `True`）。

# %%
from vla_backbone.hf_causal import HFCausalLLMBackbone

print("llm.config.use_cache =", llm.config.use_cache)
assert llm.config.use_cache is False and not backbone.inference_mode
assert "self.llm.config.use_cache = inference_mode" in inspect.getsource(HFCausalLLMBackbone.__init__)

# %% [markdown]
# 如果调用方在训练模式、开着梯度检查点的情况下仍然要求缓存，会怎样？我们用 `warnings.catch_warnings(record=True)` 记录 Python 警告；transformers 通过自己的 logger 报告，所以我们也用 `vla_backbone.notebook` 里的 `transformers_log()` 记录它的日志：日志被收集起来，由单元格自己打印，而不是输出到 stderr。在当前版本上，这个请求会被覆盖：不返回缓存，不发 Python 警告，transformers 的 logger 说明它把 `use_cache` 设成了 `False`（每个进程只说一次；`transformers_log()` 会先让它忘掉说过这句话，所以每次运行都能看到这条日志）。在 eval 模式下梯度检查点不起作用，同样的调用会返回一个保存了全部 32 个位置的缓存。

# %%
backbone.train()
with warnings.catch_warnings(record=True) as caught, transformers_log() as logged:
    warnings.simplefilter("always")
    trained = llm(input_ids=ids[:, :32], use_cache=True)
print("python warnings:", [str(w.message) for w in caught])
print("transformers log:", logged)
print("cache returned in training mode:", compat.output_cache(trained))
assert not caught and compat.output_cache(trained) is None
assert len(logged) == 1 and "use_cache=False" in logged[0]

backbone.eval()
with torch.no_grad():
    evaluated = llm(input_ids=ids[:, :32], use_cache=True)
cache = compat.output_cache(evaluated)
print("cache returned in eval mode:", type(cache).__name__, "holding", cache.get_seq_length(), "positions")
assert cache is not None and cache.get_seq_length() == 32
backbone.train()

# %% [markdown]
# ## 上游 OpenVLA 怎样做梯度检查点：不经过这个方法
#
# 在 FSDP 下，OpenVLA 从不调用 `enable_gradient_checkpointing()`。它的训练策略改用 PyTorch 自带的非可重入 `checkpoint_wrapper` 包装每个 `transformer_layer_cls` 模块，因为 HF 的梯度检查点在 FSDP 下不能用。思路和这里一样，每个解码器层保留输入、重算其余部分，只不过是从模型外部施加的。notebook 10 会演示。
#
# ## 小结
# - `enable_gradient_checkpointing()` 通过 `compat` 把请求交给 HF 模型，并要求非可重入的梯度检查点；它只在训练模式下生效，而刚加载的 LLM 处于 eval 模式。
# - 在每个长度上，梯度检查点为反向传播保存的字节都更少，省下的量随长度增长；代价是每一步每层多跑一次前向（这台机器上的数字见上面的输出）。它只作用于解码器层：在玩具宽度下配上 32064 行的词表时，logits 占了大头，它省不下多少，所以测量改用 1024 行的词表。
# - 只要层的输入需要梯度，无论可重入与否，开不开梯度检查点，梯度都完全相同；嵌入冻结时，可重入梯度检查点需要输入梯度钩子（notebook 07）。
# - 训练时 `use_cache` 关闭；开着梯度检查点时，当前 transformers 会把 `use_cache=True` 改掉并记入日志。
#
# ## 练习
# 1. 在 batch 4、隐藏维度 256、4 层的设置下重做测量。保存字节的比值如何变化？梯度检查点去不掉的是保存内存中的哪一部分（提示：开启后还剩下什么）？
# 2. 保留 32064 行的词表，改为增大宽度（以及 `intermediate_size`）。隐藏维度达到多少时，梯度检查点在长度 64 下能去掉一半以上的保存字节？
# 3. 每隔一层做一次检查点：在较新的 5.x 版本上，给 `activation_checkpointing_enable` 传 `every_n_layers=2`；在 4.57 上手动把一半层的 `gradient_checkpointing` 设为 `False`。画出不做、做一半、全做检查点时的内存和时间。
# 4. 分别在可重入和非可重入梯度检查点下，各用前向钩子（在 MLP 跑完之后运行）和 pre 钩子数一数每步 MLP 运行的次数。为什么非可重入时两种计数不一样？
# 5. 根据 batch、长度和隐藏维度，预测每个检查点层保存的字节数，并在两个长度上用 `saved_activation_bytes` 检验你的公式。
