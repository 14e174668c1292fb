# %% [markdown]
# # 08 · Gradient checkpointing, measured
#
# Training keeps every intermediate tensor that backward will need: the activations of every decoder layer, for
# every token of every sequence in the batch, so this memory grows with batch size, sequence length, width and
# depth. Gradient checkpointing trades compute for memory: during the forward pass it keeps only each decoder
# layer's input, and during backward it runs the layer forward a second time to get the rest back. This notebook
# opens up `enable_gradient_checkpointing()`, then measures the trade on a small model: the bytes autograd keeps,
# the step time, and the gradients, with and without checkpointing.
#
# **What you will learn here**
# - what `backbone.enable_gradient_checkpointing()` does, and why it only acts in training mode;
# - how much memory it saves and what it costs in time, measured across sequence lengths;
# - that it never changes the gradients, reentrant or not, and when reentrant checkpointing needs the input-grad hook;
# - why `use_cache` is off in training, and what this transformers does if you ask for a cache anyway.

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

# %% [markdown]
# ## What `enable_gradient_checkpointing()` does
#
# `HFCausalLLMBackbone.enable_gradient_checkpointing` is one line: it hands the request to the HuggingFace model
# through `compat.enable_checkpointing`, asking for the non-reentrant variant. `compat` calls
# `activation_checkpointing_enable` on transformers 5.x (the method's new name) and `gradient_checkpointing_enable`
# on 4.57, which has only the old name.
#
# Like every notebook, this one runs on one CPU thread (`setup()` sets it): its timings then depend less on how many cores
# the machine has and on what else runs on it, and tensors this small gain little from more threads.

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
# The HF model passes the request on to every decoder layer: each gets a flag `gradient_checkpointing` and a
# checkpoint function, `torch.utils.checkpoint.checkpoint` with the keyword arguments we asked for.

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
# **Only in training mode.** The layers check `self.training` on every call. A model that `from_pretrained` returns
# is in eval mode, and the backbone does not change that: right after loading, the wrapper says `training=True`
# while the LLM inside says `False`. A training loop must call `.train()` on the model; on the backbone, it reaches
# the LLM too. We see the difference by counting how often each decoder layer's MLP is entered, in the forward pass
# and in the backward pass: in eval mode backward recomputes nothing; in training mode it runs every layer a second
# time. (We count with forward *pre*-hooks, which run when the MLP is entered; Exercise 4 shows why a hook that runs
# after the MLP would not do.)

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
# ## Measured: memory and time against sequence length
#
# `saved_activation_bytes(model, compute_loss)` counts the bytes autograd keeps for backward while `compute_loss()`
# runs, parameters excluded: the memory that checkpointing is meant to cut. `median_seconds(step)` times a whole
# forward-plus-backward step. For clearer numbers than the 64-wide replica gives, we build models from the tiny
# checkpoint's own config: the same `LlamaForCausalLM` class and 2 layers, hidden size 128 (twice the replica's),
# random weights, every parameter trainable (full fine-tuning). One keeps the replica's vocabulary of 32064 rows;
# the other has only 1024. First, why the second one is the right model to measure: both, at length 64, batch 2.

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
# With the real vocabulary at this toy width, most of what autograd keeps is one logits-sized tensor (batch × length
# × 32064 floats, which the cross-entropy keeps for its backward), and checkpointing, which touches only the decoder
# layers, removes about a tenth. That is an artefact of the toy width, not a property of checkpointing: in
# Llama-2-7B every token passes 32 decoder layers of width 4096, whose MLPs work on 11008-wide activations, so the
# layers keep far more than one 32064-wide row of logits. A 1024-row vocabulary restores that balance on a model
# small enough for a laptop, with the same class, depth and checkpointing code, so the rest of the measurement uses
# it. Sequence lengths 64 to 512, batch 2; the memory measurement doubles as a warm-up for the timing.

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
# The memory claims, checked: checkpointing keeps fewer bytes at every length, and the saving grows with the length.

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
# Where the extra time comes from: the recomputation. With checkpointing each decoder layer runs twice per step, once
# in the forward pass and once more in backward; without it, once. How much longer a step takes depends on the
# machine, and on a busy CPU timings are noisy, which is why we count runs instead of asserting on seconds.
#
# And the claim that matters most: checkpointing changes what is stored, not what is computed. The parameter
# gradients with and without it are the same.

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
# **Try it:** how many megabytes would a longer sequence or a bigger batch keep? Pick a length and a batch (a drop-down
# in a kernel; the first options otherwise). Or change `LENGTHS` and `BATCH` above and re-run the measurement cells.

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
# ## Reentrant and non-reentrant
#
# PyTorch has two implementations. The **reentrant** one (`use_reentrant=True`, what 4.57's
# `gradient_checkpointing_enable()` uses by default) is an `autograd.Function` that runs the layer under `no_grad`
# and re-enters autograd in backward. The **non-reentrant** one (`use_reentrant=False`, the default of 5.x's
# `activation_checkpointing_enable()` and what the backbone asks for) records the graph normally and uses
# saved-tensor hooks to drop activations and recompute them on demand. The library defaults, read off the first
# decoder layer after calling the library's own enable method without arguments:

# %%
library_enable = getattr(llm, "activation_checkpointing_enable", None) or llm.gradient_checkpointing_enable
library_enable()
default = llm.model.layers[0]._gradient_checkpointing_func.keywords
print(f"transformers {compat.TRANSFORMERS_VERSION}: {library_enable.__name__}() -> {default}")
assert default == {"use_reentrant": not compat.IS_V5}
backbone.enable_gradient_checkpointing()

# %% [markdown]
# When the inputs of the checkpointed layers require grad (full fine-tuning: the embedding weight trains, so its
# output does), both give the same gradients as no checkpointing, and both keep fewer bytes.

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
# They differ when nothing entering the layers requires grad. Freeze just the input embeddings (common when only the
# layers or adapters train) on a fresh tiny model, without the input-grad hook: with reentrant checkpointing the
# decoder layers get **no gradient at all**, silently, because the LM head still trains and backward succeeds.
# Non-reentrant checkpointing, or the hook, fixes it. Notebook 07 takes this apart with adapters. (On 5.x,
# enabling checkpointing registers the hook by itself, so we remove it to see the bare behaviour.)

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
# ## Why `use_cache` is off in training
#
# The KV cache stores every layer's keys and values so that generation can feed one new token per step and reuse
# the rest. A training step processes the whole sequence at once and never comes back for a next token, so a cache
# would be built and thrown away. The backbone's constructor therefore sets `llm.config.use_cache = False` in
# training mode (and `True` in inference mode).

# %%
from vla_backbone.hf_causal import HFCausalLLMBackbone

print("llm.config.use_cache =", llm.config.use_cache)
assert llm.config.use_cache is False and not backbone.inference_mode
assert "self.llm.config.use_cache = inference_mode" in inspect.getsource(HFCausalLLMBackbone.__init__)

# %% [markdown]
# What if a caller asks for a cache anyway, with checkpointing on, in training mode? We record Python warnings with
# `warnings.catch_warnings(record=True)` and, since transformers reports through its own logger, its log records
# too, with `transformers_log()` from `vla_backbone.notebook`, which collects them for the cell to print instead of
# letting them go to stderr. On this version the request is overridden: no cache comes back, no Python warning is
# raised, and the transformers logger says it set `use_cache=False` (it says so once per process; `transformers_log()`
# makes it forget that it did, so every run shows the record). In eval mode, where checkpointing does not apply, the same
# call returns a cache holding all 32 positions.

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
# ## How upstream OpenVLA checkpoints: not through this method
#
# Under FSDP, OpenVLA never calls `enable_gradient_checkpointing()`. Its training strategy wraps every
# `transformer_layer_cls` module with PyTorch's own non-reentrant `checkpoint_wrapper` instead, because HF's
# checkpointing did not work under FSDP. The idea is the same as here, each decoder layer keeps its input and
# recomputes the rest, but it is applied from outside the model. Notebook 10 shows it.
#
# ## Summary
# - `enable_gradient_checkpointing()` delegates to the HF model through `compat` and asks for non-reentrant
#   checkpointing; it only takes effect in training mode, and a freshly loaded LLM is in eval mode.
# - Checkpointing keeps fewer bytes for backward at every length, and the saving grows with the length; the price
#   is one extra forward run of every layer per step (this machine's numbers are printed above). It acts on the
#   decoder layers only: at a toy width with a 32064-row vocabulary the logits dominate and it saves little, which is
#   why the measurement uses a 1024-row vocabulary.
# - Gradients are identical with and without checkpointing, reentrant or not, as long as the layer inputs require
#   grad; with frozen embeddings, reentrant checkpointing needs the input-grad hook (notebook 07).
# - `use_cache` is off in training; with checkpointing on, this transformers overrides `use_cache=True` and logs it.
#
# ## Exercises
# 1. Repeat the measurement at batch 4, hidden size 256 and 4 layers. How does the ratio of saved bytes change?
#    Which part of the saved memory does checkpointing not remove (hint: what is left with it on)?
# 2. Keep the 32064-row vocabulary and raise the width (and `intermediate_size`) instead. From which hidden size on
#    does checkpointing remove more than half of the saved bytes at length 64?
# 3. Checkpoint only every other layer: on recent 5.x releases pass `every_n_layers=2` to
#    `activation_checkpointing_enable`; on 4.57 set `gradient_checkpointing = False` on half of the layers by hand.
#    Plot memory and time for none, half and all of the layers checkpointed.
# 4. Count the MLP runs per step under reentrant and under non-reentrant checkpointing, once with a forward hook
#    (which runs after the MLP) and once with a pre-hook. Why do the counts differ for non-reentrant checkpointing?
# 5. Predict the bytes saved per checkpointed layer from batch, length and hidden size, and check your formula
#    against `saved_activation_bytes` at two lengths.
