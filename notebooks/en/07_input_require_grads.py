# %% [markdown]
# # 07 · `enable_input_require_grads`: the failure, the hook, the fixes
#
# When OpenVLA loads its language model for training, the constructor calls one line that looks like noise:
# `llm.enable_input_require_grads()`. Take it out, freeze the language model with its input embeddings, train small
# adapters inside its decoder layers with reentrant gradient checkpointing, and training breaks: nothing entering
# the checkpointed blocks requires grad, so backward fails loudly, with a `RuntimeError`, or silently, with adapters
# that never receive a gradient and never learn. This notebook reproduces both failures on a tiny backbone, opens up the
# hook that prevents them (it marks the embedding output as requiring grad), and compares the three ways to fix the
# problem: the hook, non-reentrant checkpointing, no checkpointing. Full fine-tuning never needed it. Two traps
# defeat the hook: `inputs_embeds` that bypass the embedding module, and an embedding module replaced after the hook
# was registered.
#
# **What you will learn here**
# - the exact warning and error you get on this transformers, and the silent variant that raises nothing;
# - where the hook lives, what it does (one line), and how to remove it;
# - three fixes (the hook, non-reentrant checkpointing, no checkpointing) and why each works;
# - why `inputs_embeds` computed outside the embedding module bypass the hook;
# - why upstream on transformers 4.40 lost the hook after `resize_token_embeddings`, what transformers 5.x does
#   for you, and why the backbone checks for the hook instead of relying on either.

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
# ## A frozen backbone with LoRA-style adapters
#
# We load the tiny Llama-2 replica for training (`inference_mode=False`, the default), as OpenVLA does. Its constructor has already registered the
# input-grad hook (step 5 of `HFCausalLLMBackbone.__init__`); we check that first, because the rest of the notebook
# is about what that hook prevents. Like every notebook, this one runs on one CPU thread (`setup()` sets it): the
# tensors are tiny, and a single thread keeps the notebook quick on a shared machine.

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
# Parameter-efficient fine-tuning keeps the pretrained weights frozen and trains a small *adapter* next to some of
# them. A LoRA-style adapter adds a low-rank path to a linear layer: `y = W x + up(down(x))`, where `down` maps the
# input to a few dimensions (the rank) and `up` maps back. We write one in a few lines and put it around the
# `q_proj` and `v_proj` projections of every decoder layer. Real LoRA starts `up` at zero; we start it with small
# random values so that every adapter weight receives a non-zero gradient from the very first step (Exercise 1
# asks what changes with zeros).

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
# ## The failure, reproduced
#
# Three more ingredients make the failure: reentrant checkpointing (what `gradient_checkpointing_enable()` does by
# default up to transformers 4.57), no input-grad hook, and training mode (checkpointing is skipped in eval mode;
# notebook 08 checks both facts).
# We remove the hook with the handles that `compat.input_grad_hooks` returns. The removal comes twice: once before
# enabling checkpointing, and once after, because on transformers 5.x enabling checkpointing registers the hook
# again by itself (more on that at the end). At the end the embedding module carries no forward hook at all.

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
# A forward pass on a batch of two random 32-token sequences (the gradient plumbing does not care what the words
# are). We record warnings locally with `warnings.catch_warnings(record=True)`: torch's reentrant checkpoint warns
# once per checkpointed decoder layer that none of its inputs requires grad. The loss comes out without a
# `grad_fn`: nothing in the graph connects it to a trainable parameter.

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
# The warning is easy to miss in a training log. The error at `backward()` is not:

# %%
with expect_error(RuntimeError, match="element 0 of tensors does not require grad and does not have a grad_fn"):
    loss.backward()
assert all(p.grad is None for p in adapter_params)

# %% [markdown]
# Why: the reentrant checkpoint is a custom `autograd.Function`. In the forward pass it runs the decoder layer under
# `torch.no_grad()` and attaches itself to the graph only through its tensor *inputs*. The adapter weights inside
# the layer are not inputs of that function, so when no input requires grad (frozen embeddings give a hidden state
# that does not), the layer's output does not require grad either, and the adapters are cut off. The smallest
# runnable case shows it with plain PyTorch: a trainable `nn.Linear` checkpointed on an input that does not require
# grad. The non-reentrant variant, which records the graph normally, keeps the weight in the graph.

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
# **Try it:** put the adapters in the MLP instead: in the adapter cell, use `layer.mlp` in place of
# `layer.self_attn` and the names `("gate_proj", "up_proj", "down_proj")`, then re-run from the loading cell. The
# failure does not depend on where the adapters sit, only on their being inside a checkpointed layer.

# %% [markdown]
# ## The silent variant
#
# Now add one trainable parameter *outside* the decoder layers. The LM head is a natural choice: OpenVLA's
# last-layer fine-tuning trains it. The loss now has a `grad_fn` (through the head), `backward()` succeeds, and
# the training loop would run for hours. But every adapter's `.grad` is still `None`: they never learn, and
# nothing raised.

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
# ## The hook, inspected
#
# **Where it lives.** `enable_input_require_grads()` registers a *forward hook* on the module that
# `model.get_input_embeddings()` returns, here `model.model.embed_tokens`. A forward hook is a function PyTorch calls
# after the module's `forward`, with the module, its inputs and its output; the module keeps them in the ordered
# dict `_forward_hooks`, keyed by the handle's id. The model keeps the handles (5.x a list `_require_grads_hooks`,
# 4.57 one `_require_grads_hook`); `compat.input_grad_hooks(model)` returns them on either version.

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
# **What it does.** One line: `output.requires_grad_(True)`. The embedding weight is frozen, so its output would
# not require grad; the hook flips the flag on the output tensor. The output has no `grad_fn` and is a leaf:
# gradients flow back *to* it and stop there, so the frozen weight still gets nothing. But the hidden state that
# enters the first checkpointed layer now requires grad, and the reentrant checkpoint connects the layer to the
# graph.

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
# **Removing it.** Each handle's `.remove()` deletes its entry from `_forward_hooks`; that is what the cell above
# did before computing `plain`. And the smallest runnable check: our own one-line hook, registered by hand, must
# behave exactly like the library's. We compare the adapter gradients of one step under each.

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
# ## Three fixes
#
# Each of these gives autograd a path from the loss back to the adapters:
# 1. **the hook** (`model.enable_input_require_grads()`): the layer input requires grad, so the reentrant checkpoint
#    joins the graph and backward reaches the adapters;
# 2. **non-reentrant checkpointing** (`use_reentrant=False`): it does not run the layer under `no_grad`; autograd
#    records the layer normally and checkpointing only decides which saved tensors to drop and recompute, so
#    parameters inside the layer are seen whatever the inputs;
# 3. **no checkpointing**: the ordinary graph, which sees every parameter.
#
# `configure` below builds each set-up from scratch on the same model (same removal dance as before), and
# `backward_step` runs one step. Every fix gives every adapter a non-zero gradient, and the three give the same
# gradients: checkpointing changes what is stored, never the result.

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
# The whole picture in one table: each checkpointing mode, with and without the hook, with and without a trainable
# LM head. Only reentrant checkpointing without the hook fails, loudly without a trainable head and silently with
# one.

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
# Why full fine-tuning never needed the hook: there the embedding weight itself trains, so the embedding output
# requires grad on its own, and reentrant checkpointing sees an input that needs a gradient. The worst row of the
# table, with a trainable embedding matrix instead of the hook:

# %%
configure("reentrant", hook=False)
embedding.weight.requires_grad_(True)
full_grads, _ = backward_step(input_ids=ids)
embedding.weight.requires_grad_(False)
print("reentrant, no hook, trainable embeddings: adapter gradient norms", [round(g.norm().item(), 5) for g in full_grads[1::2]])
assert all(g is not None and g.norm() > 0 for g in full_grads) and embedding.weight.grad is not None
torch.testing.assert_close(full_grads, fixed_grads["no checkpointing"])


# %% [markdown]
# **Try it:** pick a combination and see what happens (in a kernel you get drop-downs; as a script it runs the first
# option of each).

# %%
def show_outcome(checkpointing, hook, trainable_head):
    result = outcome(checkpointing, hook, trainable_head)
    print(f"checkpointing={checkpointing}, hook={hook}, trainable head={trainable_head}:", result)
    return result


first_outcome = explore(show_outcome,
                        checkpointing=["reentrant", "non-reentrant", None], hook=[False, True], trainable_head=[False, True])
assert first_outcome == table["reentrant", False, False]

# %% [markdown]
# ## The `inputs_embeds` pitfall
#
# The hook sits on the embedding *module*: it fires only when that module is called. A VLM does not pass
# `input_ids` to the language model; it passes `inputs_embeds` with the image patches spliced in (notebook 11).
# If the text embeddings are computed some other way, say by indexing the weight matrix directly, the module never
# runs, the hook never fires, and with reentrant checkpointing the failure is back, hook or no hook.

# %%
configure("reentrant", hook=True)
bypassed = model.get_input_embeddings().weight[ids]
print("embeddings by indexing the weight: requires_grad =", bypassed.requires_grad)
assert not bypassed.requires_grad and compat.has_input_grad_hook(model)
with expect_error(RuntimeError, match="element 0 of tensors does not require grad"):
    backward_step(inputs_embeds=bypassed)

# %% [markdown]
# The fix is to compute the embeddings through the module, which is exactly what `backbone.embed_input_ids` does
# (`llm.get_input_embeddings()(input_ids)`), so the hook fires. The values are identical; only the flag differs,
# and the adapters get the same gradients as with `input_ids`.

# %%
through_module = backbone.embed_input_ids(ids)
print("embeddings from embed_input_ids: requires_grad =", through_module.requires_grad)
grads, _ = backward_step(inputs_embeds=through_module)
assert "get_input_embeddings()(input_ids)" in inspect.getsource(type(backbone).embed_input_ids)
assert through_module.requires_grad
torch.testing.assert_close(through_module, bypassed)
torch.testing.assert_close(grads, fixed_grads["hook"])

# %% [markdown]
# ## Why upstream lost the hook on transformers 4.40
#
# OpenVLA's constructor registers the hook first, and the Llama-2 family adds a `<PAD>` token and calls
# `resize_token_embeddings` afterwards (ours does the same: Llama-2's 32000 words plus `<PAD>` make 32001 tokens,
# padded to 32064 rows, a multiple of 64).
# On transformers 4.40, resizing built a *new* `nn.Embedding` and installed it in the model; the hook stayed on the
# old module, which the model no longer called. Transformers 4.57 and 5.x write the resized weight into the *same*
# module object instead, so the hook survives. On this version:

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
# To see the 4.40 behaviour, we do by hand what its resize did: build a fresh `nn.Embedding` with a copy of the
# weights (frozen, like the rest of the model) and install it with `model.set_input_embeddings`. The old module
# keeps its hook; the new one has none; and the failure is back.

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
# The cure on any version: call `enable_input_require_grads()` *after* the last change to the embedding module
# (or check `compat.has_input_grad_hook` before training starts).

# %%
remove_input_grad_hooks(model)
model.enable_input_require_grads()
grads, _ = backward_step(input_ids=ids)
assert compat.has_input_grad_hook(model) and all(g is not None and g.norm() > 0 for g in grads)

# %% [markdown]
# **Try it:** in the resize cell, set `extra_rows = 1` (or shrink with `-64`) and re-run it: whatever the new size,
# the module stays the same object and the hook survives.

# %% [markdown]
# ## What transformers 5.x does for you
#
# On the transformers 5.x releases we tested, enabling checkpointing (`activation_checkpointing_enable`, the new name
# of `gradient_checkpointing_enable`) also calls `enable_input_require_grads()` itself (it also defaults to
# non-reentrant: notebook 08); 4.57 does not. `compat.CHECKPOINTING_REGISTERS_INPUT_HOOK` records that observation.
# We start from a model without the hook, enable *reentrant* checkpointing, and look. On 5.x the hook appears
# and the adapters train; on 4.57 the failure is still there. The cell runs on both versions.

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
# One side effect on 5.x: a backbone's constructor has already registered the hook, so enabling checkpointing
# through the library call registers a *second* one, and the model's list of handles only remembers the newest.
# Two hooks setting the same flag are harmless, but removing "the hook" through the handles would then leave one
# behind. `compat.enable_checkpointing`, which `backbone.enable_gradient_checkpointing()` calls, removes the old
# handles first and, once checkpointing is on, checks that the hook is there, adding it again if the library did not
# (as 4.57 does not). So a backbone that had the hook ends up with exactly one, whose handle the model knows, on
# either version. (This notebook still removes hooks after enabling checkpointing, because there it wants none at
# all.) The cell below keeps the first handle before the library call, so it can remove both hooks afterwards and
# leave the model as the widget above expects it.

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
# The check does not depend on what the library happens to do. To see it on 5.x as well, swap the library's enable
# method for one that removes whatever hook the library registered, which is 4.57's behaviour: the backbone's
# model still ends up with exactly one hook, and the adapters train under reentrant checkpointing. Afterwards the
# cell removes that hook too, for the widget above.

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
# ## Summary
# - Frozen LLM + adapters inside the layers + reentrant checkpointing + no input-grad hook: the warning "None of the
#   inputs have requires_grad=True", then `RuntimeError: element 0 of tensors does not require grad`; with any
#   trainable parameter after the layers, no error at all and adapters that never get a gradient.
# - The hook is a forward hook on `get_input_embeddings()` whose one line is `output.requires_grad_(True)`;
#   `compat.input_grad_hooks` gives its handles, `compat.has_input_grad_hook` checks it is on the current module.
# - The hook, non-reentrant checkpointing, or no checkpointing each fix it, with identical gradients.
# - The hook fires only when the embedding module runs: build `inputs_embeds` with `embed_input_ids`, and re-register
#   the hook after replacing the embedding module (what 4.40's resize did behind your back).
# - transformers 5.x registers the hook itself when checkpointing is enabled; on a backbone that already has one,
#   that makes two, and removing it by handle leaves one behind. `compat.enable_checkpointing` removes the old
#   handles first and checks for the hook afterwards, so the backbone has exactly one on every version.
#
# ## Exercises
# 1. Initialise `up` with zeros, as real LoRA does. Which adapter weights get a zero gradient in the first step with
#    the hook on, and which get a non-zero one? Explain with the chain rule.
# 2. Move the trainable parameter of the silent variant to the *front*: a trainable scalar that multiplies the
#    embedding output (wrap the embedding module). Do the adapters get gradients with reentrant checkpointing and no
#    hook? Why?
# 3. A VLM splices projected image patches into `inputs_embeds`. With the hook removed and reentrant checkpointing,
#    build `inputs_embeds` as `[text[:, :1], patches, text[:, 1:]]` where `patches` comes from a trainable
#    `nn.Linear` projector. Do the adapters get gradients? What if the projector is frozen too?
# 4. Write `assert_adapters_learn(model, batch)`: a pre-flight check that runs one step and raises a clear error
#    naming every trainable parameter whose `.grad` is `None`. Run it on each row of the table above.
