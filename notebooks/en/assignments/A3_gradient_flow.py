# %% [markdown]
# # A3 · Assignment: a gradient-flow failure, diagnosed, fixed and measured
#
# A teammate fine-tunes a VLA the parameter-efficient way: every weight of the language model frozen, small
# low-rank adapters (LoRA-style) trained inside the attention layers, and gradient checkpointing on to save memory.
# Their script was written for the transformers version upstream OpenVLA pinned (4.40). Depending on the run it
# either crashes in `backward()` or, worse, trains for hours while the adapters never change. You will find out
# why, write a diagnostic and a fix, and measure what checkpointing buys.
#
# **What you will do**
# - reproduce both failures on a tiny replica (notebooks 07 and 08 explain the pieces);
# - write `missing_gradients`, a diagnostic that names every trainable parameter that gets no gradient;
# - write `fix_gradient_flow`, which repairs the model without unfreezing anything or turning checkpointing off;
# - write `checkpointing_savings` with `vla_backbone.measure.saved_activation_bytes`, and plot what checkpointing
#   saves as sequences grow.
#
# **How you are graded.** Write your code where a cell says `# YOUR CODE HERE` and delete the
# `raise NotImplementedError` line. Run each check cell: it is worth the points in the heading above it,
# and the written answer is graded by hand. Then, from a clone of the repository, run the grader,
# which tests more cases:
#
# `.venv/bin/python -m pytest tests/assignments/test_a3_gradient_flow.py --notebook path/to/A3_gradient_flow.ipynb`
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
# ## The teammate's model
#
# `LoRALinear` wraps a frozen `nn.Linear` and adds a trainable low-rank path `up(down(x))` next to it.
# `make_broken_model` rebuilds the teammate's set-up on a tiny replica, one line per ingredient:
#
# 1. every language-model weight frozen (`requires_grad_(False)`);
# 2. adapters on the query and value projections of every decoder layer: the only trainable parameters;
# 3. **reentrant** checkpointing, the default in the transformers of 2024;
# 4. no input-grad hook on the embeddings: on 4.40, `resize_token_embeddings` (which adds `<PAD>` after
#    `enable_input_require_grads()` has run) replaced the embedding module and lost its hook. We remove it by hand
#    to get the same state on any version.
#
# With `silent=True` one small module outside the decoder layers (the final norm) is trainable too, as a projector
# or a head often is in a real run.

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
# ## Two ways to fail
#
# The plain variant crashes: the loss does not require grad, so `backward()` has nothing to do.

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
# The silent variant does not crash. The final norm is trainable, so the loss requires grad and `backward()`
# returns normally. Only the norm got a gradient; every adapter is still `None`. A training loop would report a
# falling loss (the norm learns) and the adapters would never move. The only hint is the warning torch prints below,
# once, easy to miss in a long training log.

# %%
silent_llm, _ = make_broken_model(silent=True)
silent_llm(input_ids=ids, labels=ids).loss.backward()
with_grad = [name for name, p in silent_llm.named_parameters() if p.grad is not None]
print("got a gradient:", with_grad)
assert with_grad and all("norm" in name for name in with_grad)
assert all(p.grad is None for name, p in silent_llm.named_parameters() if ".down." in name or ".up." in name)


# %% [markdown]
# ## Task 1 · A diagnostic: `missing_gradients`
#
# Before fixing anything, write the check you would want to run on any fine-tuning set-up.
# `missing_gradients(model, compute_loss)` must
#
# - clear every parameter's `.grad` first (a gradient left over from an earlier step would hide the problem);
# - call `compute_loss()` once; if the loss does not require grad, no parameter can get a gradient: return the
#   names of all trainable parameters, **without** raising;
# - otherwise run `backward()` and return the names (as in `model.named_parameters()`, in that order) of the
#   trainable parameters whose `.grad` is still `None`.
#
# An empty list means every trainable parameter was reached.

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
# ### Check your work (3 points)

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
# ## Why it fails
#
# Three things have to come together:
#
# - **All weights frozen.** The hidden states that enter the first decoder layer come from a frozen embedding, so
#   they do not require grad.
# - **Reentrant checkpointing.** It runs each layer's forward under `torch.no_grad()` and relies on autograd to
#   call back into it during backward. Autograd only does that if one of the layer's *inputs* requires grad; the
#   adapters' weights are inside the layer, not inputs, so they are invisible to it.
# - **No input-grad hook.** `enable_input_require_grads()` registers a forward hook on the embedding module that
#   marks its output as requiring grad, precisely to break this deadlock.
#
# Remove any one of the three and gradients flow again. Unfreezing is not an option (it defeats the point of
# adapters), and turning checkpointing off gives up the memory it saves. That leaves the other two, and they are
# not equally good: the hook only fires when the input goes *through* the embedding module. A VLA builds
# `inputs_embeds` itself, splicing image patches in (notebook 11), and passes the result to the model.
#
# Your diagnostic shows it on the silent model: with the hook back and checkpointing still reentrant, `input_ids`
# reach every adapter, but `inputs_embeds` taken straight from the embedding matrix reach none of them.

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
# ## Task 2 · The fix: `fix_gradient_flow`
#
# Write `fix_gradient_flow(model)`. After it runs,
#
# - every adapter gets a gradient, the same one it would get without checkpointing, whether the loss comes from
#   `input_ids` or from `inputs_embeds` that did not come out of the embedding module;
# - checkpointing is still on (`compat.is_checkpointing(model)`), and the model is still in training mode;
# - nothing that was frozen became trainable, and nothing that was trainable became frozen;
# - calling it a second time changes nothing.
#
# It must work for every family (the grader tries OPT, Qwen-2.5 and Phi-2 too). Use `vla_backbone.compat`, not a
# version-specific transformers call.

# %% nbgrader={"grade": false, "grade_id": "fix_gradient_flow", "locked": false, "schema_version": 3, "solution": true, "task": false}
def fix_gradient_flow(model: nn.Module) -> None:
    """Make gradients reach the trainable parameters inside checkpointed layers, in place."""
    ### BEGIN SOLUTION
    # Non-reentrant checkpointing follows the saved tensors, not the inputs, so it sees the adapters' weights
    # whatever enters the layer; the input hook alone would miss inputs_embeds built outside the embeddings.
    compat.enable_checkpointing(model, use_reentrant=False)
    ### END SOLUTION


# %% [markdown]
# ### Check your work (4 points)

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
# In one or two sentences: which of the three conditions did your fix remove, and why is that the one that also
# covers `inputs_embeds`? (2 points, graded by hand)

# %% [markdown] nbgrader={"grade": true, "grade_id": "why_the_fix_works", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# It makes checkpointing non-reentrant. Non-reentrant checkpointing records the layer's graph through
# saved-tensor hooks instead of relying on its inputs requiring grad, so the
# adapters' weights are reached whatever enters the layer; the hook alone only helps when the input passes through
# the embedding module, which a VLA's spliced `inputs_embeds` do not.
# ### END SOLUTION

# %% [markdown]
# ## Task 3 · What checkpointing saves
#
# Checkpointing trades compute for memory: inside each checkpointed layer, autograd keeps only the layer's input
# and recomputes the rest during backward. `vla_backbone.measure.saved_activation_bytes(model, compute_loss)`
# counts the bytes autograd keeps for backward while `compute_loss()` runs (parameters excluded), then runs backward.
#
# Write `checkpointing_savings(model, compute_loss)` returning `(bytes_without, bytes_with)`: the saved bytes with
# checkpointing off, then on again as your fix left it. It is called on a fixed model with checkpointing on, and must
# leave it on.

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
# ### Check your work (3 points)

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
# ## Savings as sequences grow
#
# Activations grow with the sequence length; parameters do not. The plot measures both settings for batches of
# two random sequences of 16 to 64 tokens.
# Try it: add 128 to `lengths`, or build the model with `make_broken_model("qwen25-0_5b-pure")` and fix it first.

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
# Both lines are straight, or nearly: almost every byte here is an activation, proportional to the number of tokens.
# (On transformers 4.57 the line without checkpointing bends up a little, because each layer also keeps a float
# attention mask of tokens × tokens; transformers 5 does not save one.) Checkpointing saves the same share at every
# length. Most of what it cannot save is the logits: one float32 score per vocabulary entry and token, kept for the
# loss, outside the decoder layers that checkpointing covers.

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
# A real model has dozens of layers against a single head, so there the layers dominate and checkpointing saves a
# much larger share. The same width with 8 layers instead of 2 already shows the trend:

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
# ## Summary
# - Frozen weights + reentrant checkpointing + no input-grad hook = no gradient for anything inside the layers;
#   with one trainable module outside them, the failure is silent.
# - A diagnostic that lists parameters without a gradient catches both forms in one step; run it once before any
#   long fine-tuning run.
# - Of the two conditions left to remove, only one fixes `input_ids` and `inputs_embeds` alike; the hook alone does
#   not cover the second.
# - Checkpointing cuts the tensors kept for backward in proportion to the sequence length; the share it saves
#   grows with the number of layers, since the logits are outside its reach.
#
# ## Exercises
# 1. In `make_broken_model`, remove the other one of the two conditions instead of the one your fix removed. What
#    does `missing_gradients` report now, for `input_ids` and for `inputs_embeds`?
# 2. Time a training step with and without checkpointing with `vla_backbone.measure.median_seconds`. How much
#    slower is it, and how does that compare with notebook 08?
# 3. Put the adapters on the MLP instead of the attention. Does anything in your diagnostic or fix change?
