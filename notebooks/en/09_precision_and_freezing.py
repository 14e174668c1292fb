# %% [markdown]
# # 09 · Precision and freezing: `half_precision_dtype` and `last_layer_finetune_modules`
#
# Two small properties of `LLMBackbone` decide how a 7-billion-parameter VLA fits on a GPU and what it learns.
# `half_precision_dtype` names the 16-bit type that mixed-precision training and generation compute in, and
# `last_layer_finetune_modules` names the modules that stay trainable when the rest of the language model is
# frozen. This notebook measures the first (range, rounding, autocast) and uses the second to build OpenVLA's five
# freeze stages on a toy VLM, then checks with real gradients that each stage trains exactly what it claims.
#
# **What you will learn here**
# - why every family answers `torch.bfloat16`, and what bf16 gives up against fp16 (precision) to gain range;
# - what `torch.autocast` changes in a forward pass, tensor by tensor, and how far the logits move;
# - which three modules `last_layer_finetune_modules` returns, for every family;
# - the freeze stages `align`, `finetune`, `full-finetune`, `last-layer-finetune` and `vla-sandwich-train` as one
#   function, counted, plotted and verified with one backward pass;
# - why tied embeddings (Qwen-2.5, OPT) turn "train the LM head" into "train the input embeddings too".

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
# ## `half_precision_dtype`: one answer for every id
#
# OpenVLA keeps the master weights in fp32 and computes in a 16-bit type. In training it uses two mechanisms at once:
# the training step runs under `torch.autocast("cuda", dtype=half_precision_dtype)`, and FSDP's mixed-precision
# policy keeps bf16 copies of the parameters for compute and reduces gradients in fp32 (notebook 10). Generation
# runs under `torch.autocast` to the same type. The backbone names that type through `half_precision_dtype`. Every
# family here inherits the same answer from `FamilyBackbone`: bfloat16. We load one backbone per family (all ids of
# a family share one class and one tiny replica) and evaluate each id's property on it, so the check covers all 19
# ids without loading 19 models.

# %%
import torch
import vla_backbone
from vla_backbone.families._common import FamilyBackbone
from vla_backbone.registry import backbone_class, get_llm_backbone_and_tokenizer

FAMILY_IDS = {"llama2": "llama2-7b-pure", "mistral": "mistral-v0.1-7b-pure", "phi": "phi-2-3b", "qwen25": "qwen25-0_5b-pure", "opt": "opt-125m"}
loaded = {family: get_llm_backbone_and_tokenizer(backbone_id) for family, backbone_id in FAMILY_IDS.items()}
backbones = {family: pair[0] for family, pair in loaded.items()}
tokenizers = {family: pair[1] for family, pair in loaded.items()}

dtypes = {}
for backbone_id in vla_backbone.list_backbones():
    family_cls = backbone_class(backbone_id)
    # The property object of the id's class, evaluated on a loaded backbone of that family.
    dtypes[backbone_id] = family_cls.half_precision_dtype.fget(backbones[family_cls.family])
    print(f"{backbone_id:26s} {family_cls.__name__:20s} {dtypes[backbone_id]}")

# %%
assert len(dtypes) == 19 and set(dtypes.values()) == {torch.bfloat16}
assert all(backbone.half_precision_dtype is torch.bfloat16 for backbone in backbones.values())
# No family overrides it: every class resolves the attribute to FamilyBackbone's one property.
assert all(backbone_class(i).half_precision_dtype is FamilyBackbone.half_precision_dtype for i in dtypes)

# %% [markdown]
# ## bf16 against fp16: range against precision
#
# Both types use 16 bits, split differently. fp16 has 5 exponent bits and 10 mantissa bits; bf16 has 8 exponent
# bits (as many as fp32) and 7 mantissa bits. `torch.finfo` reports the consequences: `max` (the largest finite
# value), `tiny` (the smallest normal value) and `eps` (the gap between 1 and the next representable number, which
# is 2 to the power of minus the mantissa bits).

# %%
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    info = torch.finfo(dtype)
    print(f"{str(dtype):15s} bits={info.bits}  max={info.max:<12.5g} tiny={info.tiny:<12.5g} eps={info.eps:.5g}")

fp16, bf16, fp32 = torch.finfo(torch.float16), torch.finfo(torch.bfloat16), torch.finfo(torch.float32)

# %% [markdown]
# fp16 tops out at 65504 and its normal numbers stop at about 6e-5. bf16 reaches the same 3.4e38 as fp32 and goes
# down to the same 1.2e-38, but its steps are 8 times coarser than fp16's (eps 2^-7 against 2^-10).

# %%
assert fp16.max == 65504 and fp16.tiny == 2**-14 and fp16.eps == 2**-10
assert bf16.eps == 2**-7 and bf16.tiny == fp32.tiny == 2**-126
assert bf16.max > 3.38e38 and bf16.max / fp32.max > 0.99

# %% [markdown]
# Three numbers make it concrete. 70000 is above fp16's maximum and becomes `inf`; bf16 stores it as 70144 (a
# 0.2% rounding error, but finite). 1e-8 is below fp16's smallest subnormal (2^-24, about 6e-8) and becomes 0;
# bf16 keeps it. 1 + 2^-9 is exact in fp16 but falls between two bf16 numbers and rounds back to 1.

# %%
values = torch.tensor([70000.0, 1e-8, 1 + 2**-9])
as_fp16, as_bf16 = values.to(torch.float16), values.to(torch.bfloat16)
for value, a, b in zip(values.tolist(), as_fp16.tolist(), as_bf16.tolist()):
    print(f"{value:<14.8g} fp16 -> {a:<12.8g} bf16 -> {b:.8g}")

# %%
assert torch.isinf(as_fp16[0]) and as_bf16[0].item() == 70144
assert as_fp16[1].item() == 0 and abs(as_bf16[1].item() - 1e-8) / 1e-8 < bf16.eps
assert as_fp16[2].item() == 1 + 2**-9 and as_bf16[2].item() == 1.0

# %% [markdown]
# Overflow is not exotic inside a network. A dot product of two 64-dimensional vectors whose entries are 40 (a
# hidden size 64 times smaller than Llama-2-7B's) is 102400, already out of fp16's range. Nothing in these models
# keeps activations below 65504, while bf16 has fp32's range; that is why the families answer bf16 and OpenVLA
# trains in it.

# %%
x = torch.full((64,), 40.0)
dot_fp16, dot_bf16 = x.half() @ x.half(), x.bfloat16() @ x.bfloat16()
print("fp16:", dot_fp16.item(), " bf16:", dot_bf16.item())
assert torch.isinf(dot_fp16) and dot_bf16.item() == 102400

# %% [markdown]
# ### Rounding error against magnitude
#
# Rounding to nearest makes a relative error of at most half an `eps` (the *unit roundoff*) anywhere in a type's
# normal range. The plot rounds 4000 fp32 values spread from 1e-9 to 1e6 to each type and shows the relative error.
# bf16's error band sits 8 times higher, flat over the whole range; fp16's band is lower but ends on both sides:
# below `tiny` the subnormals lose digits until values flush to zero (error 1), above `max` everything is `inf`.

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"title": "Relative rounding error of fp16 and bf16", "x": "magnitude |x|", "y": "relative error |round(x) − x| / |x|",
           "half_eps": "eps/2", "overflow": "fp16 overflows to inf"},
    "zh": {"title": "fp16 与 bf16 的相对舍入误差", "x": "数值大小 |x|", "y": "相对误差 |round(x) − x| / |x|",
           "half_eps": "eps/2", "overflow": "fp16 溢出为 inf"},
}[LANG]

magnitudes = torch.logspace(-9, 6, 4000, dtype=torch.float32)
exact = magnitudes.double()
rel_error = {dtype: ((magnitudes.to(dtype).double() - exact).abs() / exact) for dtype in (torch.float16, torch.bfloat16)}

fig, ax = plt.subplots(figsize=(8, 4))
for dtype, color in ((torch.float16, "tab:blue"), (torch.bfloat16, "tab:orange")):
    shown = rel_error[dtype].clamp(min=1e-9).masked_fill(rel_error[dtype].isinf(), float("nan"))
    ax.loglog(exact, shown, ".", markersize=1.5, color=color, label=str(dtype).replace("torch.", ""))
    ax.axhline(torch.finfo(dtype).eps / 2, color=color, linestyle="--", linewidth=1, label=f"{TEXT['half_eps']} ({str(dtype).replace('torch.', '')})")
ax.axvspan(fp16.max, exact.max().item(), color="tab:blue", alpha=0.12, label=TEXT["overflow"])
ax.set(title=TEXT["title"], xlabel=TEXT["x"], ylabel=TEXT["y"], ylim=(1e-6, 3))
ax.legend(loc="upper center", fontsize=8)
plt.show()

# %% [markdown]
# The plot's claims, checked: inside each normal range the error never exceeds `eps/2`; bf16 stays inside its
# normal range over the whole axis; fp16 overflows above 65504 and flushes the smallest values to zero; and on the
# range both represent normally, bf16's typical error is about 8 times fp16's.

# %%
in_fp16_range = (exact >= fp16.tiny) & (exact <= fp16.max)
assert rel_error[torch.float16][in_fp16_range].max() <= fp16.eps / 2
assert rel_error[torch.bfloat16].max() <= bf16.eps / 2
assert rel_error[torch.float16][exact > 65520].isinf().all()
assert (rel_error[torch.float16][exact < 2**-25] == 1).all()
ratio = rel_error[torch.bfloat16][in_fp16_range].median() / rel_error[torch.float16][in_fp16_range].median()
print(f"median bf16 error / median fp16 error on fp16's normal range: {ratio:.1f}")
assert 4 < ratio < 16

# %% [markdown]
# ## Autocast: what a bf16 forward pass computes in bf16
#
# `torch.autocast("cpu", dtype=torch.bfloat16)` (or `"cuda"`, as in OpenVLA's training step and its `generate`)
# leaves the weights in fp32 and casts per operation: matrix multiplications run in bf16, while operations that need
# range or accuracy (reductions, softmax inside a loss, normalisation done explicitly in fp32) stay in fp32. Forward
# hooks record the output dtype of every module of a tiny Llama-2 during one autocast forward pass.

# %%
backbone, tokenizer = backbones["llama2"], tokenizers["llama2"]
PROMPT = "In: What action should the robot take to slide the yellow lid off the pot near the stove?\nOut: "
batch = tokenizer([PROMPT] * 2, return_tensors="pt")

output_dtypes = {}
def record_dtype(name):
    def hook(module, inputs, output):
        tensor = output[0] if isinstance(output, tuple) else output
        if torch.is_tensor(tensor):
            output_dtypes[name] = tensor.dtype
    return hook

handles = [module.register_forward_hook(record_dtype(name)) for name, module in backbone.llm.named_modules() if name]
with torch.no_grad():
    reference = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids)
    output_dtypes.clear()
    with torch.autocast("cpu", dtype=backbone.half_precision_dtype):
        mixed = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids)
for handle in handles:
    handle.remove()

for name in ("model.embed_tokens", "model.layers.1.input_layernorm", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn",
             "model.layers.1.mlp", "model.layers.1", "model.norm", "lm_head"):
    print(f"{name:36s} {output_dtypes[name]}")
print(f"{'logits':36s} {mixed.logits.dtype}\n{'loss':36s} {mixed.loss.dtype}")

# %% [markdown]
# The pattern: every `nn.Linear` (attention projections, MLP, `lm_head`) outputs bf16. The embedding lookup is not
# a matmul and stays fp32. Llama's RMSNorm computes in fp32 and returns its input's dtype, and each decoder layer
# adds its bf16 update to an fp32 residual stream, so the residual stream between layers stays fp32. The logits come
# out in bf16 on this version (4.57 and 5.x behave the same; some older releases upcast them to fp32 inside
# `forward`, so check rather than assume), and the loss is computed in fp32.

# %%
linears = [name for name, module in backbone.llm.named_modules() if isinstance(module, torch.nn.Linear)]
assert linears and all(output_dtypes[name] == torch.bfloat16 for name in linears)
assert output_dtypes["model.embed_tokens"] == torch.float32 and output_dtypes["model.norm"] == torch.float32
assert all(output_dtypes[f"model.layers.{i}"] == torch.float32 for i in range(backbone.llm.config.num_hidden_layers))
assert mixed.logits.dtype == torch.bfloat16 and mixed.loss.dtype == torch.float32
assert reference.logits.dtype == torch.float32
assert all(p.dtype == torch.float32 for p in backbone.parameters()), "autocast never touches the stored weights"

# %% [markdown]
# How far do the bf16 logits move? Each rounding to bf16 changes a value by at most the unit roundoff u = 2^-8
# relative. The logits pass through a few such roundings (the matmul inputs, the weights, the output) on top of what
# the earlier layers contributed, so an error of a few u times the logit scale is expected; we allow 8 u times the
# largest fp32 logit. The loss is a log-sum-exp minus one logit, so it can move by at most twice the largest logit
# error. The difference must also be clearly larger than fp32 noise: the computation really changed.

# %%
u = bf16.eps / 2
scale = reference.logits.abs().max()
diff = (mixed.logits.float() - reference.logits).abs().max()
print(f"largest logit {scale:.4f}, largest difference {diff:.5f} = {diff / (u * scale):.2f} u x scale")
print(f"loss fp32 {reference.loss:.5f}, loss under autocast {mixed.loss:.5f}")
torch.testing.assert_close(mixed.logits.float(), reference.logits, atol=(8 * u * scale).item(), rtol=0)
assert abs(mixed.loss - reference.loss) <= 2 * 8 * u * scale
assert diff > 2**-20 * scale

# %% [markdown]
# ### Generation under autocast, as OpenVLA does it
#
# OpenVLA's `generate` runs the language model inside `torch.autocast("cuda", dtype=llm_backbone.half_precision_dtype)`
# when mixed precision is on: the weights stay as they are and every matmul of every decoding step runs in bf16.
# The same call works on a CPU, as long as autocast names the device the model runs on (here `"cpu"`). A hook on
# the LM head shows that autocast was in effect at every step (one forward call per new token, each producing bf16
# logits). The logits `generate` hands back are fp32 nevertheless: on this version it copies each step's
# last-position logits to fp32 before choosing the next token.

# %%
device_type = backbone.llm.device.type  # autocast must name the device the model runs on
prompt = tokenizer(["In: What action should the robot take to stack the purple spoon onto the green tray?\nOut: "], return_tensors="pt")
head_dtypes = []
handle = backbone.llm.get_output_embeddings().register_forward_hook(lambda module, inputs, output: head_dtypes.append(output.dtype))
with torch.no_grad(), torch.autocast(device_type, dtype=backbone.half_precision_dtype):
    generated = backbone.llm.generate(**prompt, max_new_tokens=5, min_new_tokens=5, output_logits=True,
                                      return_dict_in_generate=True, pad_token_id=backbone.pad_token_id)
handle.remove()
print("new token ids:", generated.sequences[0, prompt.input_ids.shape[1]:].tolist())
print("LM head output per step:", head_dtypes, "| returned logits:", generated.logits[0].dtype)
assert generated.sequences.shape[1] == prompt.input_ids.shape[1] + 5
assert head_dtypes == [torch.bfloat16] * 5
assert all(step_logits.dtype == torch.float32 for step_logits in generated.logits)


# %% [markdown]
# **Try it:** in the autocast cell above, replace `backbone.half_precision_dtype` by `torch.float16` and re-run.
# The tiny replica stays far from 65504, so fp16 works here and its logits land closer to fp32 (more mantissa
# bits); the real 7B models are where fp16's range runs out.
#
# ## `last_layer_finetune_modules`: embeddings, last decoder layer, LM head
#
# When a stage freezes the language model but still wants it to adapt a little, OpenVLA unfreezes three modules:
# the input embeddings (the image patches and text enter there), the last decoder layer, and the LM head (the
# action tokens leave there). Every family returns them in that order. They can be found without knowing the
# family's layout: `get_input_embeddings()`, the last module whose type is `transformer_layer_cls`, and
# `get_output_embeddings()`. OPT is the one family whose path differs: its layers live under `llm.model.decoder`.

# %%
def qualified_names(model, modules):
    names = {id(module): name for name, module in model.named_modules()}
    return [names[id(module)] for module in modules]

for family, family_backbone in backbones.items():
    print(f"{family:8s}", qualified_names(family_backbone, family_backbone.last_layer_finetune_modules))

# %%
for family, family_backbone in backbones.items():
    llm = family_backbone.llm
    embeddings, last_layer, head = family_backbone.last_layer_finetune_modules
    decoder_layers = [module for module in llm.modules() if isinstance(module, family_backbone.transformer_layer_cls)]
    assert embeddings is llm.get_input_embeddings(), family
    assert last_layer is decoder_layers[-1] and len(decoder_layers) == llm.config.num_hidden_layers, family
    assert head is llm.get_output_embeddings(), family
assert backbones["opt"].last_layer_finetune_modules[1] is backbones["opt"].llm.model.decoder.layers[-1]
assert not hasattr(backbones["opt"].llm.model, "layers")

# %% [markdown]
# Not in the list: the final norm after the last layer (`model.norm` for Llama) and every earlier layer. So
# "last-layer" fine-tuning trains the last block but not the normalisation that follows it.
#
# On a tiny replica these three modules are almost the whole model: the vocabulary, 32064 rows of width 64 in the
# input embeddings and as many in the untied LM head, dwarfs two 64-wide layers. On the real Llama-2-7B it is the
# other way round. Its architecture can be built on PyTorch's `meta` device, which records shapes and allocates
# nothing, to count exactly.

# %%
from transformers import LlamaConfig, LlamaForCausalLM

llama2_7b = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=32, vocab_size=32064)
with torch.device("meta"):
    full_size = LlamaForCausalLM(llama2_7b)
last_layer_modules = (full_size.model.embed_tokens, full_size.model.layers[-1], full_size.lm_head)
last_layer_numel = sum(p.numel() for module in last_layer_modules for p in module.parameters())
total_numel = sum(p.numel() for p in full_size.parameters())
tiny = backbones["llama2"]
tiny_share = sum(p.numel() for m in tiny.last_layer_finetune_modules for p in m.parameters()) / sum(p.numel() for p in tiny.parameters())
print(f"Llama-2-7B: {last_layer_numel / 1e6:.0f} M of {total_numel / 1e9:.2f} B parameters ({last_layer_numel / total_numel:.1%})")
print(f"tiny replica: {tiny_share:.1%}")
assert 6.7e9 < total_numel < 6.8e9 and 0.06 < last_layer_numel / total_numel < 0.08
assert tiny_share > 0.95

# %% [markdown]
# ## The freeze stages on a toy VLM
#
# A VLA has three trainable parts: the vision encoder, the projector and the language model. To see the stages on
# real modules we build the smallest possible VLA around a tiny backbone: a vision encoder that cuts a 32×32 image
# into 16 patches of 8×8 and embeds them, a two-layer GELU MLP projector (OpenVLA's `gelu-mlp`) that maps patch
# features to the backbone's `embed_dim`, and a forward pass that splices the projected patches in right after BOS,
# with attention-mask 1 and label -100 for every patch (notebook 11 takes this step apart).

# %%
from torch import nn

class ToyVisionEncoder(nn.Module):
    def __init__(self, patch=8, width=48):
        super().__init__()
        self.patch = patch
        self.patch_embed = nn.Linear(3 * patch * patch, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU()) for _ in range(2))
        self.embed_dim = width

    def forward(self, pixels):
        p = self.patch
        patches = pixels.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).flatten(1, 2).flatten(2)
        features = self.patch_embed(patches)
        for block in self.blocks:
            features = features + block(features)
        return features


class ToyProjector(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim)

    def forward(self, features):
        return self.fc2(self.act(self.fc1(features)))


class ToyVLM(nn.Module):
    def __init__(self, llm_backbone):
        super().__init__()
        self.vision_backbone = ToyVisionEncoder()
        self.projector = ToyProjector(self.vision_backbone.embed_dim, llm_backbone.embed_dim)
        self.llm_backbone = llm_backbone

    def forward(self, pixel_values, input_ids, attention_mask, labels):
        patches = self.projector(self.vision_backbone(pixel_values))
        batch_size, num_patches = patches.shape[:2]
        text = self.llm_backbone.embed_input_ids(input_ids)
        embeds = torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)
        mask = torch.cat([attention_mask[:, :1], attention_mask.new_ones(batch_size, num_patches), attention_mask[:, 1:]], dim=1)
        labels = torch.cat([labels[:, :1], labels.new_full((batch_size, num_patches), -100), labels[:, 1:]], dim=1)
        return self.llm_backbone(input_ids=None, inputs_embeds=embeds, attention_mask=mask, labels=labels)


torch.manual_seed(0)
vlm = ToyVLM(backbones["llama2"])
pixels = torch.randn(2, 3, 32, 32)
out = vlm(pixels, batch.input_ids, batch.attention_mask, batch.input_ids)
print("logits:", tuple(out.logits.shape), "loss:", round(out.loss.item(), 4))
assert out.logits.shape[1] == batch.input_ids.shape[1] + 16

# %% [markdown]
# ### One function for every stage
#
# Each stage says, per component, whether it trains: the vision encoder and the projector are all or nothing; the
# language model is all, nothing, or only its `last_layer_finetune_modules`. Setting `requires_grad` on every
# parameter is all a stage does; the optimizer later receives only the parameters that require grad. OpenVLA's VLA
# training scripts use the names `vla-train`, `vla-full-train` and `vla-last-layer-train` for the same settings as
# `finetune`, `full-finetune` and `last-layer-finetune` (upstream's `PrismaticVLM.freeze_backbones` accepts either
# name); the aliases map them. Note the order inside
# `apply_stage`: freeze the whole language model first, then unfreeze the last-layer modules.

# %%
STAGES = {  # stage -> (vision encoder trains, projector trains, language model: "all", "none" or "last")
    "align": (False, True, "none"),
    "finetune": (False, True, "all"),
    "full-finetune": (True, True, "all"),
    "last-layer-finetune": (False, False, "last"),
    "vla-sandwich-train": (True, True, "last"),
}
ALIASES = {"vla-train": "finetune", "vla-full-train": "full-finetune", "vla-last-layer-train": "last-layer-finetune"}


def apply_stage(vlm, stage):
    stage = ALIASES.get(stage, stage)
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known stages: {', '.join([*STAGES, *ALIASES])}")
    vision, projector, llm = STAGES[stage]
    vlm.vision_backbone.requires_grad_(vision)
    vlm.projector.requires_grad_(projector)
    vlm.llm_backbone.requires_grad_(llm == "all")
    if llm == "last":
        for module in vlm.llm_backbone.last_layer_finetune_modules:
            module.requires_grad_(True)


COMPONENTS = ("vision_backbone", "projector", "llm_backbone")

def trainable_counts(vlm):
    return {c: sum(p.numel() for p in getattr(vlm, c).parameters() if p.requires_grad) for c in COMPONENTS}

sizes = {c: sum(p.numel() for p in getattr(vlm, c).parameters()) for c in COMPONENTS}
last_layer_size = sum(p.numel() for p in {id(p): p for m in vlm.llm_backbone.last_layer_finetune_modules for p in m.parameters()}.values())
counts = {}
for stage in STAGES:
    apply_stage(vlm, stage)
    counts[stage] = trainable_counts(vlm)
    print(f"{stage:20s}", "  ".join(f"{c}={counts[stage][c]:>7,}" for c in COMPONENTS))
print(f"{'(sizes)':20s}", "  ".join(f"{c}={sizes[c]:>7,}" for c in COMPONENTS))

# %%
V, P, L = (sizes[c] for c in COMPONENTS)
expected = {
    "align": (0, P, 0),
    "finetune": (0, P, L),
    "full-finetune": (V, P, L),
    "last-layer-finetune": (0, 0, last_layer_size),
    "vla-sandwich-train": (V, P, last_layer_size),
}
assert {stage: tuple(c.values()) for stage, c in counts.items()} == expected
apply_stage(vlm, "vla-last-layer-train")
assert trainable_counts(vlm) == counts["last-layer-finetune"]
from vla_backbone.notebook import expect_error
with expect_error(ValueError, match="known stages"):
    apply_stage(vlm, "lora")

# %% [markdown]
# The same table as a picture: one bar per stage, stacked by component. The dashed line is the whole model.

# %%
TEXT = {
    "en": {"title": "Trainable parameters per freeze stage (toy VLM, tiny Llama-2)", "y": "trainable parameters",
           "vision_backbone": "vision encoder", "projector": "projector", "llm_backbone": "language model", "total": "whole model"},
    "zh": {"title": "各冻结阶段的可训练参数量（玩具 VLM，微型 Llama-2）", "y": "可训练参数量",
           "vision_backbone": "视觉编码器", "projector": "投影器", "llm_backbone": "语言模型", "total": "整个模型"},
}[LANG]

fig, ax = plt.subplots(figsize=(8, 4))
bottom = [0] * len(STAGES)
for component, color in zip(COMPONENTS, ("tab:green", "tab:orange", "tab:blue")):
    heights = [counts[stage][component] for stage in STAGES]
    ax.bar(list(STAGES), heights, bottom=bottom, color=color, label=TEXT[component])
    bottom = [b + h for b, h in zip(bottom, heights)]
ax.axhline(V + P + L, color="black", linestyle="--", linewidth=1, label=TEXT["total"])
ax.set(title=TEXT["title"], ylabel=TEXT["y"])
ax.tick_params(axis="x", labelsize=8)
ax.legend(fontsize=8)
plt.show()


# %% [markdown]
# ### Checking it with gradients
#
# `requires_grad` is a promise; a backward pass is the proof. For every stage: apply it, clear old gradients, run
# one forward and backward pass on the toy VLM, then require that every trainable parameter received a gradient
# and every frozen one did not (`grad is None`). Gradients still flow *through* frozen modules (in `align` the loss
# reaches the projector through the whole frozen language model); frozen parameters just do not collect them.

# %%
def gradient_report(vlm, stage):
    apply_stage(vlm, stage)
    vlm.zero_grad(set_to_none=True)
    vlm(pixels, batch.input_ids, batch.attention_mask, batch.input_ids).loss.backward()
    trainable = {name for name, p in vlm.named_parameters() if p.requires_grad}
    with_grad = {name for name, p in vlm.named_parameters() if p.grad is not None}
    return trainable, with_grad

for stage in STAGES:
    trainable, with_grad = gradient_report(vlm, stage)
    print(f"{stage:20s} {len(trainable):3d} trainable tensors, {len(with_grad):3d} with a gradient")
    assert trainable == with_grad, stage
    assert all((p.grad is None) != p.requires_grad for p in vlm.parameters()), stage

# %% [markdown]
# In `last-layer-finetune` the first decoder layer and the final norm got no gradient, and the last layer did:

# %%
trainable, with_grad = gradient_report(vlm, "last-layer-finetune")
llm = vlm.llm_backbone.llm
assert all(p.grad is None for p in llm.model.layers[0].parameters()) and all(p.grad is None for p in llm.model.norm.parameters())
assert all(p.grad is not None for p in llm.model.layers[-1].parameters())
print(sorted({name.split(".weight")[0].split(".bias")[0] for name in with_grad}))

# %% [markdown]
# **Try it:** pick a stage and a backbone; the table lists each top-level part of the toy VLM with its trainable
# share. Try `last-layer-finetune` on `qwen25-0_5b-pure` and compare `embed_tokens` and `lm_head` with Llama-2's,
# then read the next section.

# %%
from vla_backbone.notebook import explore

def show_stage(stage, backbone_id):
    model = ToyVLM(backbones[backbone_class(backbone_id).family])
    apply_stage(model, stage)
    parts = [("vision_backbone", model.vision_backbone), ("projector", model.projector)]
    parts += [(f"llm.{name}", module) for name, module in model.llm_backbone.llm.model.named_children()]
    parts += [("llm.lm_head", model.llm_backbone.llm.get_output_embeddings())]
    for name, module in parts:
        params = list(module.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        print(f"{name:24s} {trainable:>8,} of {sum(p.numel() for p in params):>8,} trainable")
    return trainable_counts(model)

result = explore(show_stage, stage=list(STAGES), backbone_id=["llama2-7b-pure", "qwen25-0_5b-pure", "opt-125m", "phi-2-3b"])
assert result == counts["align"]

# %% [markdown]
# ## Tied embeddings: one weight, two modules
#
# Qwen-2.5 and OPT set `tie_word_embeddings`: the LM head has no weight of its own, it reuses the input-embedding
# matrix (the replicas keep this). The two modules are distinct objects, but their `weight` is the same
# `nn.Parameter`, at the same address in memory.

# %%
for family, family_backbone in backbones.items():
    embeddings, _, head = family_backbone.last_layer_finetune_modules
    shared = embeddings.weight.data_ptr() == head.weight.data_ptr()
    print(f"{family:8s} tie_word_embeddings={family_backbone.llm.config.tie_word_embeddings!s:5s} one shared weight: {shared}")
    assert shared == (family in {"qwen25", "opt"}) == family_backbone.llm.config.tie_word_embeddings
qwen = backbones["qwen25"]
q_embeddings, _, q_head = qwen.last_layer_finetune_modules
assert q_embeddings is not q_head and q_embeddings.weight is q_head.weight

# %% [markdown]
# Three consequences for last-layer fine-tuning:
#
# 1. **Counting.** Summing the parameters of the three modules counts the shared matrix twice; `parameters()`
#    deduplicates, so count unique tensors (as `last_layer_size` above did).
# 2. **No head without embeddings.** `requires_grad` lives on the one Parameter, so whichever module you touch last
#    decides for both: unfreezing the head and then freezing the embeddings freezes the head too.
# 3. **Two gradients, one tensor.** The shared weight collects the gradient of both uses. An untied embedding gets
#    gradient only in the rows of tokens that appear in the input (a lookup touches nothing else), and not even for
#    the last position, whose output no label uses and which no earlier position attends to; a tied one gets
#    gradient in every row, because the LM head scores the whole vocabulary at every position.

# %%
naive = sum(p.numel() for m in qwen.last_layer_finetune_modules for p in m.parameters())
unique = sum(p.numel() for p in {id(p): p for m in qwen.last_layer_finetune_modules for p in m.parameters()}.values())
print(f"qwen25: naive count {naive:,}, unique {unique:,}, difference = embedding size {q_embeddings.weight.numel():,}")
assert naive - unique == q_embeddings.weight.numel()

q_head.requires_grad_(True)
q_embeddings.requires_grad_(False)
assert q_head.weight.requires_grad is False


# %%
def embedding_rows_with_gradient(backbone_id):
    family = backbone_class(backbone_id).family
    model, tok = ToyVLM(backbones[family]), tokenizers[family]
    apply_stage(model, "last-layer-finetune")
    model.zero_grad(set_to_none=True)
    text = tok([PROMPT] * 2, return_tensors="pt")
    model(pixels, text.input_ids, text.attention_mask, text.input_ids).loss.backward()
    grad = model.llm_backbone.llm.get_input_embeddings().weight.grad
    rows = set(torch.nonzero(grad.abs().sum(dim=1)).flatten().tolist())
    return rows, set(text.input_ids[:, :-1].flatten().tolist()), grad.shape[0]

for backbone_id in ("llama2-7b-pure", "qwen25-0_5b-pure"):
    rows, used, vocab = embedding_rows_with_gradient(backbone_id)
    print(f"{backbone_id:18s} rows with gradient: {len(rows):4d} of {vocab}; distinct tokens before the last position: {len(used)}")
    if backbone_id.startswith("llama2"):
        assert rows == used
    else:
        assert len(rows) == vocab

# %% [markdown]
# With tied weights, then, "last-layer fine-tuning" updates every row of the input embeddings through the head,
# including rows of tokens the inputs never contain; and you cannot train the output side while keeping the input
# side fixed. To do that, untie first: give the head its own copy,
# `head.weight = nn.Parameter(embeddings.weight.detach().clone())`, and set `config.tie_word_embeddings = False` so
# saving and reloading keeps them apart (exercise 3).
#
# ## Summary
# - Every family's `half_precision_dtype` is `torch.bfloat16`: fp32's range (max 3.4e38, tiny 1.2e-38) with 7
#   mantissa bits (eps 2^-7); fp16 is 8 times finer but overflows above 65504 and flushes values below 2^-25 (about
#   3e-8, half its smallest subnormal) to 0.
# - OpenVLA trains under `torch.autocast` to `half_precision_dtype` together with FSDP mixed precision (bf16
#   parameters for compute, fp32 gradient reduction), and generates under the same autocast.
# - Under `torch.autocast(..., dtype=bfloat16)` the linear layers and the logits are bf16 while weights, embeddings,
#   norms, the residual stream and the loss stay fp32; the logits stay within 8 bf16 unit roundoffs of their scale.
# - `last_layer_finetune_modules` = (input embeddings, last decoder layer, LM head) for every family; on Llama-2-7B
#   that is 7% of the parameters, on a tiny replica almost all of them.
# - A freeze stage is only `requires_grad` per component; one backward pass proves that exactly the trainable
#   parameters collect gradients.
# - With tied embeddings the head and the input embeddings are one Parameter: they train together and collect the
#   sum of both gradients.
#
# ## Exercises
# 1. Add a stage `last-2-layers` that trains the embeddings, the LM head and the last *two* decoder layers. Extend
#    `expected` and the gradient check so they cover it.
# 2. Build Qwen2.5-0.5B on the `meta` device (`Qwen2Config(hidden_size=896, intermediate_size=4864,
#    num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)`)
#    and compute its last-layer share, counting unique parameters. Why is it so much larger than Llama-2-7B's?
# 3. Untie the tiny Qwen replica's head as described above, then rerun `embedding_rows_with_gradient`. Which rows of
#    the embedding get gradient now, and why?
# 4. Repeat the autocast comparison with `dtype=torch.float16`, then scale the embedding weights by 100 before the
#    forward pass. Which dtype overflows first, and where (use the dtype hooks)?
