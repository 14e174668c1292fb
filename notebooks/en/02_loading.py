# %% [markdown]
# # 02 · Loading: training mode vs inference mode
#
# `HFCausalLLMBackbone.__init__` fits on one screen, and almost every line in it is there for a reason you only
# discover when it is missing: a model that silently trains in half precision, a generation that samples when it
# should be greedy, a backward pass that breaks once the LLM is frozen under reentrant checkpointing, a batch padded
# on the wrong side, an access token that ends up in a log. This notebook walks through the constructor step by
# step, in the two modes OpenVLA uses — **training mode** (load pretrained weights to fine-tune them) and
# **inference mode** (build the architecture only, because a VLA checkpoint will supply every weight) — and checks
# each step on a tiny replica.
#
# **What you will learn here**
# - why training mode calls the concrete `*ForCausalLM.from_pretrained` with an explicit `dtype=torch.float32`;
# - why the greedy generation settings are applied *after* loading on transformers 5.x;
# - how `use_flash_attention_2` maps to `attn_implementation`, and the error you get without a GPU;
# - what inference mode builds with `AutoConfig` and `_from_config`, and how `use_cache` and the input-grad hook
#   differ between the two modes;
# - the tokenizer settings (`model_max_length`, right padding), how `hf_token` is handled, and the three sources.

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
# ## The constructor at a glance
#
# A family (say `LLaMa2LLMBackbone`) passes its model class and the checkpoint path to
# `HFCausalLLMBackbone.__init__`, which then runs these steps in order:
#
# | step | training mode (`inference_mode=False`) | inference mode (`inference_mode=True`) |
# |---|---|---|
# | 1 | store `llm_family`, `llm_max_length`, `inference_mode`, `hf_hub_path` | same |
# | 2 | map `use_flash_attention_2` to `attn_implementation` (fails early without flash-attn + GPU) | ignored, as upstream does: the library's default attention |
# | 3 | `llm_cls.from_pretrained(path, dtype=torch.float32, ...)`, then greedy generation config | `AutoConfig.from_pretrained(path)`, then `llm_cls._from_config(config)`: no pretrained weights |
# | 4 | `llm.config.use_cache = False` | `llm.config.use_cache = True` |
# | 5 | `llm.enable_input_require_grads()` | — |
# | 6 | `AutoTokenizer.from_pretrained(path, model_max_length=llm_max_length, padding_side="right")` | same |
# | 7 | the BOS check (notebook 03) | same |
#
# `hf_token` goes to every `from_pretrained` call and nowhere else. The signature, checked:

# %%
import inspect

from vla_backbone.hf_causal import HFCausalLLMBackbone

signature = inspect.signature(HFCausalLLMBackbone.__init__)
print(signature)
assert list(signature.parameters) == [
    "self", "llm_backbone_id", "llm_family", "llm_cls", "hf_hub_path",
    "llm_max_length", "hf_token", "inference_mode", "use_flash_attention_2",
]
assert signature.parameters["llm_max_length"].default == 2048
assert signature.parameters["inference_mode"].default is False
assert signature.parameters["use_flash_attention_2"].default is False

# %% [markdown]
# Upstream families default `use_flash_attention_2` to `True`; ours default to `False`, so the same call works on a
# laptop and on Colab, where flash-attn is usually not installed.
#
# ## Step 1 · What the backbone remembers
#
# Load the Llama-2 replica in training mode (the default) and look at what the constructor stored. `hf_hub_path`
# is wherever the weights came from — here the replica's cache directory.

# %%
import torch

from vla_backbone import get_llm_backbone_and_tokenizer
from vla_backbone.tiny import tiny_checkpoint

llama_dir = tiny_checkpoint("llama2")
train_bb, tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure")
print("family:", train_bb.llm_family, "| max length:", train_bb.llm_max_length,
      "| inference mode:", train_bb.inference_mode, "\nloaded from:", train_bb.hf_hub_path)
assert train_bb.llm_family == "llama2" and train_bb.llm_max_length == 2048 and train_bb.inference_mode is False
assert train_bb.hf_hub_path == str(llama_dir)
assert inspect.signature(type(train_bb).__init__).parameters["use_flash_attention_2"].default is False

# %% [markdown]
# ## Step 2 · `use_flash_attention_2` becomes `attn_implementation`
#
# Upstream passed `use_flash_attention_2=...` straight to `from_pretrained`. transformers removed that argument in
# 4.53; today the model's constructor rejects it.

# %%
from transformers import LlamaForCausalLM

from vla_backbone.notebook import expect_error

with expect_error(TypeError, match="use_flash_attention_2"):
    LlamaForCausalLM.from_pretrained(llama_dir, use_flash_attention_2=False)

# %% [markdown]
# The backbone keeps the boolean in its own signature and translates it: `False` means "leave the library default"
# (PyTorch SDPA attention), `True` means `attn_implementation="flash_attention_2"`.

# %%
from vla_backbone.hf_causal import attn_implementation_for

print("attention in use:", train_bb.llm.config._attn_implementation)
assert attn_implementation_for(False) is None
assert train_bb.llm.config._attn_implementation == "sdpa"

# %% [markdown]
# Asking for flash attention on a machine without flash-attn or a CUDA GPU stops with an error that says what is
# missing and what to do. This check runs *first* in the constructor, so it fails before a single byte of a
# 7B checkpoint is read. In inference mode the flag is ignored, as upstream ignores it there: the architecture gets
# the library's default attention, so a checkpoint trained with flash attention still loads on a laptop.

# %%
import importlib.util

from vla_backbone.errors import FlashAttentionUnavailableError
from vla_backbone.families import LLaMa2LLMBackbone

from unittest import mock

if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
    with mock.patch.object(LlamaForCausalLM, "from_pretrained", wraps=LlamaForCausalLM.from_pretrained) as loader:
        with expect_error(FlashAttentionUnavailableError, match="use_flash_attention_2=True"):
            LLaMa2LLMBackbone("llama2-7b-pure", use_flash_attention_2=True, hf_hub_path=str(llama_dir))
    assert loader.call_count == 0, "the flag is checked before any loading"
else:
    print("flash-attn and a CUDA GPU are here: the flag maps to", attn_implementation_for(True))
    assert attn_implementation_for(True) == "flash_attention_2"

ignored = LLaMa2LLMBackbone("llama2-7b-pure", use_flash_attention_2=True, hf_hub_path=str(llama_dir), inference_mode=True)
print("inference mode with use_flash_attention_2=True:", ignored.llm.config._attn_implementation)
assert ignored.llm.config._attn_implementation == "sdpa"

# %% [markdown]
# ## Step 3 · Training mode: the concrete class, from pretrained weights
#
# The family names its model class (`LlamaForCausalLM`), and the constructor calls that class's `from_pretrained`
# rather than an `Auto*` factory. The family, not the checkpoint's config, decides what gets built — and it is
# always the causal-LM class with its LM head. The bare `AutoModel`, for comparison, builds the decoder without a
# head, which could not predict a single token.

# %%
from transformers import AutoConfig, AutoModel

headless = AutoModel.from_config(AutoConfig.from_pretrained(llama_dir))
print("backbone.llm:", type(train_bb.llm).__name__, "| AutoModel:", type(headless).__name__)
assert type(train_bb.llm) is LlamaForCausalLM and hasattr(train_bb.llm, "lm_head")
assert not hasattr(headless, "lm_head")

# %% [markdown]
# ### An explicit `dtype=torch.float32`
#
# Released checkpoints are stored in half precision: Llama-2-7B (and phi-2, OPT) in float16, Mistral-7B and
# Qwen2.5 in bfloat16. The tiny replicas are stored in the same dtype as the hub checkpoint they mirror. Read
# straight from the weight files:

# %%
import os

from safetensors import safe_open

from vla_backbone import compat


def stored_dtype(checkpoint_dir):
    """The dtype of the first tensor in the checkpoint's weight file, as it sits on disk."""
    with safe_open(os.path.join(checkpoint_dir, "model.safetensors"), framework="pt") as weights:
        return weights.get_tensor(next(iter(weights.keys()))).dtype


on_disk = {family: stored_dtype(tiny_checkpoint(family)) for family in ("llama2", "mistral", "qwen25", "phi", "opt")}
print("stored on disk:", on_disk)
assert on_disk == {"llama2": torch.float16, "mistral": torch.bfloat16, "qwen25": torch.bfloat16,
                   "phi": torch.float16, "opt": torch.float16}

# %% [markdown]
# transformers 4.x loaded such a checkpoint in float32 anyway; 5.x loads it in the dtype it was saved in. Training
# wants float32 master weights (mixed precision then autocasts to bfloat16 where it is safe, notebook 09), so the
# constructor asks for float32 explicitly and gets the same model on every version. `from_pretrained` on the Llama
# replica, without and with a dtype:

# %%
as_stored = LlamaForCausalLM.from_pretrained(llama_dir)
as_float32 = LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
print(f"transformers {compat.TRANSFORMERS_VERSION}: no dtype -> {as_stored.dtype}, dtype=float32 -> {as_float32.dtype}")
assert as_stored.dtype == (torch.float16 if compat.IS_V5 else torch.float32)
assert as_float32.dtype == torch.float32

# %% [markdown]
# The backbone loads every one of them as float32, on either version:

# %%
for backbone_id in ("llama2-7b-pure", "mistral-v0.1-7b-pure", "qwen25-0_5b-pure", "phi-2-3b", "opt-125m"):
    family_backbone, _ = get_llm_backbone_and_tokenizer(backbone_id)
    print(f"{backbone_id:22s} backbone dtype: {family_backbone.llm.dtype}")
    assert all(p.dtype == torch.float32 for p in family_backbone.parameters())

# %% [markdown]
# ### Greedy generation, set after loading
#
# Upstream also passed `do_sample=False, temperature=1.0, top_p=1.0` to `from_pretrained`, to keep generation
# greedy and to silence warnings about a sampling config. transformers 4.x forwarded such keywords to the
# generation config; 5.x hands them to the model's constructor, which rejects them.

# %%
upstream_kwargs = dict(do_sample=False, temperature=1.0, top_p=1.0)
if compat.IS_V5:
    with expect_error(TypeError, match="do_sample"):
        LlamaForCausalLM.from_pretrained(llama_dir, **upstream_kwargs)
else:
    accepted = LlamaForCausalLM.from_pretrained(llama_dir, **upstream_kwargs)
    print("transformers 4.x accepts them; do_sample =", accepted.generation_config.do_sample)
    assert accepted.generation_config.do_sample is False

# %% [markdown]
# So the backbone loads first and then writes the three values onto `llm.generation_config`
# (`compat.set_greedy_generation`). To see it win, make a "released" checkpoint that asks for sampling, as some
# chat checkpoints do: the Llama replica's files (fp16 weights, real tokenizer) with a generation config saying
# `do_sample=True, temperature=0.6, top_p=0.9`. Plain `from_pretrained` keeps the sampling settings; the backbone
# overrides them:

# %%
import shutil
import tempfile

from transformers import AutoTokenizer, GenerationConfig

workdir = tempfile.mkdtemp(prefix="nb02-")
release_dir = os.path.join(workdir, "release")
shutil.copytree(llama_dir, release_dir)
sampling = GenerationConfig.from_pretrained(llama_dir)
sampling.update(do_sample=True, temperature=0.6, top_p=0.9)
sampling.save_pretrained(release_dir)

as_released = LlamaForCausalLM.from_pretrained(release_dir, dtype=torch.float32)
from_release, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure", source=release_dir)
print("checkpoint:", {k: getattr(as_released.generation_config, k) for k in upstream_kwargs})
print("backbone:  ", {k: getattr(from_release.llm.generation_config, k) for k in upstream_kwargs})
assert as_released.generation_config.do_sample is True and as_released.generation_config.temperature == 0.6
assert {k: getattr(from_release.llm.generation_config, k) for k in upstream_kwargs} == upstream_kwargs
assert from_release.llm.dtype == torch.float32

# %% [markdown]
# Greedy decoding does not touch the random number generator, so two runs — even with different seeds — give the
# same ids. The same checkpoint loaded by plain `from_pretrained` (float32 too, so only the generation config
# differs) samples, and two seeds give two different continuations. (The replica's weights are random, so the
# words are nonsense; only equality matters here.)

# %%
prompt = tokenizer(["In: What action should the robot take to pick up the cup?\nOut:"], return_tensors="pt")


def generate(model, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.generate(input_ids=prompt.input_ids, attention_mask=prompt.attention_mask,
                          max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)


greedy_a, greedy_b = generate(from_release.llm, seed=0), generate(from_release.llm, seed=1)
sampled_a, sampled_b = generate(as_released, seed=0), generate(as_released, seed=1)
print("greedy: ", greedy_a[0, -8:].tolist(), greedy_b[0, -8:].tolist())
print("sampled:", sampled_a[0, -8:].tolist(), sampled_b[0, -8:].tolist())
assert torch.equal(greedy_a, greedy_b)
assert not torch.equal(sampled_a, sampled_b)

# %% [markdown]
# ## Step 3′ · Inference mode: the architecture, without pretrained weights
#
# At inference time the backbone lives inside a trained VLA, and the VLA checkpoint holds every weight, the LLM's
# included. Reading the pretrained LLM weights first would be wasted time and memory (about 14 GB for a 7B model in
# half precision). So inference mode reads only the config (`AutoConfig.from_pretrained`) and builds the model
# class from it (`llm_cls._from_config`, in float32): same architecture, freshly initialised weights. The configs
# differ in `use_cache` only, and on 4.57 also in the `dtype` field, which there keeps the checkpoint's float16
# although the weights are float32.

# %%
infer_bb, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure", inference_mode=True)

train_config, infer_config = train_bb.llm.config.to_dict(), infer_bb.llm.config.to_dict()
differences = {k: (train_config.get(k), infer_config.get(k)) for k in train_config.keys() | infer_config.keys()
               if train_config.get(k) != infer_config.get(k)}
print("same class:", type(infer_bb.llm) is type(train_bb.llm), "| config differences (train, inference):", differences)
assert type(infer_bb.llm) is LlamaForCausalLM and infer_bb.llm.dtype == train_bb.llm.dtype == torch.float32
dtype_field = differences.pop("dtype", None)
assert differences == {"use_cache": (False, True)}
assert dtype_field == (None if compat.IS_V5 else ("float32", "float16"))

q_train = train_bb.llm.model.layers[0].self_attn.q_proj.weight
q_infer = infer_bb.llm.model.layers[0].self_attn.q_proj.weight
print("first query weights equal:", torch.equal(q_train, q_infer))
assert q_train.shape == q_infer.shape and not torch.equal(q_train, q_infer)

# %% [markdown]
# Once the weights arrive — here we copy them from the training-mode backbone, the way loading a VLA checkpoint
# would — the two backbones compute the same logits.

# %%
batch = tokenizer(["pick up the red cup"], return_tensors="pt")
infer_bb.load_state_dict(train_bb.state_dict())
with torch.no_grad():
    logits_train = train_bb(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logits_infer = infer_bb(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
torch.testing.assert_close(logits_infer, logits_train)
print("same logits after loading the weights:", tuple(logits_infer.shape))

# %% [markdown]
# Inference mode never calls `set_greedy_generation`, and it does not need to: it reads `config.json` only, so
# the sampling settings in the checkpoint's `generation_config.json` never arrive. `do_sample` stays unset (`None`
# on 5.x, `False` on 4.x), and unset means greedy — which is what a VLA predicting actions wants.

# %%
infer_release, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure", source=release_dir, inference_mode=True)
settings = {k: getattr(infer_release.llm.generation_config, k) for k in upstream_kwargs}
print("inference mode on the sampling checkpoint:", settings)
assert settings["do_sample"] is (None if compat.IS_V5 else False)
assert settings["temperature"] != 0.6 and settings["top_p"] != 0.9  # the checkpoint's sampling settings
assert torch.equal(generate(infer_release.llm, seed=0), generate(infer_release.llm, seed=1))

# %% [markdown]
# ## Step 4 · `use_cache`: off for training, on for inference
#
# The KV cache stores each layer's keys and values so that generating the next token does not recompute the whole
# prefix. Training runs each full sequence once, so a cache is memory spent for nothing — and it clashes with
# gradient checkpointing, which recomputes layers during the backward pass. The constructor therefore sets
# `config.use_cache = inference_mode`. A forward pass shows the difference: only the inference-mode backbone
# returns a cache, one entry per token of the input.

# %%
with torch.no_grad():
    cache_train = compat.output_cache(train_bb(input_ids=batch.input_ids, attention_mask=batch.attention_mask))
    cache_infer = compat.output_cache(infer_bb(input_ids=batch.input_ids, attention_mask=batch.attention_mask))
print("use_cache:", train_bb.llm.config.use_cache, "/", infer_bb.llm.config.use_cache,
      "| cache returned:", type(cache_train).__name__, "/", type(cache_infer).__name__)
assert train_bb.llm.config.use_cache is False and infer_bb.llm.config.use_cache is True
assert cache_train is None
assert cache_infer.get_seq_length() == batch.input_ids.shape[1]

# %% [markdown]
# The clash with checkpointing is one transformers resolves by itself: with checkpointing on, a model in training
# mode that is asked for a cache anyway logs a warning and returns none. Setting `use_cache=False` up front keeps
# that warning out of every training step.

# %%
from vla_backbone.notebook import transformers_log

train_bb.enable_gradient_checkpointing()
train_bb.train()
with transformers_log() as logged:
    refused = compat.output_cache(train_bb(input_ids=batch.input_ids, use_cache=True))
compat.disable_checkpointing(train_bb.llm)
train_bb.eval()
print("cache with checkpointing on, use_cache=True:", refused)
print("transformers log:", logged)
assert refused is None and not compat.is_checkpointing(train_bb.llm)
assert len(logged) == 1 and "use_cache=False" in logged[0]

# %% [markdown]
# ## Step 5 · `enable_input_require_grads`, in training mode only
#
# In training mode the constructor registers a forward hook on the input embedding that marks its output as
# requiring grad. It matters when the input embeddings are frozen while weights inside the decoder layers train
# (adapters, or the last layer) and gradient checkpointing is reentrant: then nothing entering the checkpointed
# blocks requires grad, and backward either fails ("element 0 of tensors does not require grad") or, when something
# after the layers trains, silently gives those weights no gradient. Notebook 07 reproduces both. Non-reentrant
# checkpointing, or no checkpointing, avoids the failure as well; for full fine-tuning the hook is harmless. It
# works only when the embeddings come out of the embedding module: `inputs_embeds` built some other way bypass it.
# Inference mode never runs a backward pass, so it skips the hook. With all weights frozen, the embeddings of the
# training-mode backbone still require grad; those of the inference-mode backbone do not.

# %%
print("hook registered (train / inference):", compat.has_input_grad_hook(train_bb.llm), "/",
      compat.has_input_grad_hook(infer_bb.llm))
assert compat.has_input_grad_hook(train_bb.llm) and not compat.has_input_grad_hook(infer_bb.llm)

train_bb.requires_grad_(False)
infer_bb.requires_grad_(False)
assert train_bb.embed_input_ids(batch.input_ids).requires_grad
assert not infer_bb.embed_input_ids(batch.input_ids).requires_grad
train_bb.requires_grad_(True)

# %% [markdown]
# ## Step 6 · The tokenizer: `model_max_length` and right padding
#
# The tokenizer is loaded with `model_max_length=llm_max_length`, so `truncation=True` cuts at the length the
# backbone was configured for (2048 by default), and `padding_side="right"`. Load a backbone with
# `llm_max_length=64` and feed it a long run of numbers:

# %%
short_bb, short_tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure", llm_max_length=64)
long_text = " ".join(str(i) for i in range(200))
with transformers_log() as logged:
    print("model_max_length:", short_tokenizer.model_max_length,
          "| tokens without / with truncation:", len(short_tokenizer(long_text).input_ids),
          "/", len(short_tokenizer(long_text, truncation=True).input_ids))
print("transformers log:", logged)
assert short_tokenizer.model_max_length == short_bb.llm_max_length == 64
assert tokenizer.model_max_length == 2048
assert len(short_tokenizer(long_text).input_ids) > 64 == len(short_tokenizer(long_text, truncation=True).input_ids)

# %% [markdown]
# Right padding puts the PAD ids after the text, and the attention mask is 0 exactly there. The important
# consequence: every row still starts with BOS at position 0 — the VLM splices the image patches in at position 1,
# right after BOS, for every row of the batch. With left padding the short row would begin with PAD instead.

# %%
sentences = ["pick up the cup", "open the drawer next to the red block on the table"]
padded = tokenizer(sentences, padding=True, return_tensors="pt")
print("padding side:", tokenizer.padding_side)
print(padded.input_ids)
print(padded.attention_mask)

assert tokenizer.padding_side == "right"
assert (padded.input_ids[:, 0] == tokenizer.bos_token_id).all()
for ids, mask in zip(padded.input_ids, padded.attention_mask):
    length = int(mask.sum())
    assert mask[:length].all() and not mask[length:].any()
    assert (ids[length:] == train_bb.pad_token_id).all()

tokenizer.padding_side = "left"
left = tokenizer(sentences, padding=True, return_tensors="pt")
tokenizer.padding_side = "right"
assert left.input_ids[0, 0] == tokenizer.pad_token_id != tokenizer.bos_token_id

# %% [markdown]
# ## `hf_token`: passed on, never kept
#
# Gated models such as Llama-2 need an access token. The constructor hands `hf_token` to each `from_pretrained`
# call (model and tokenizer; the config too in inference mode) and stores it nowhere: not as an attribute, not in
# the config, not in what `save_pretrained` writes. Check it with a made-up token. Spies wrapped around the
# loaders record the calls; we only ever compare, never print, what they received.

# %%
FAKE_TOKEN = "hf_SENTINEL_not_a_real_token_0123456789"

with mock.patch.object(LlamaForCausalLM, "from_pretrained", wraps=LlamaForCausalLM.from_pretrained) as model_spy, \
     mock.patch.object(AutoTokenizer, "from_pretrained", wraps=AutoTokenizer.from_pretrained) as tokenizer_spy:
    token_bb, token_tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure", hf_token=FAKE_TOKEN)
with mock.patch.object(AutoConfig, "from_pretrained", wraps=AutoConfig.from_pretrained) as config_spy:
    get_llm_backbone_and_tokenizer("llama2-7b-pure", hf_token=FAKE_TOKEN, inference_mode=True)
passed = {
    "model (training mode)": model_spy.call_args.kwargs.get("token") == FAKE_TOKEN,
    "tokenizer": tokenizer_spy.call_args.kwargs.get("token") == FAKE_TOKEN,
    "config (inference mode)": config_spy.call_args.kwargs.get("token") == FAKE_TOKEN,
}
del model_spy, tokenizer_spy, config_spy
print("token passed to the loader of the", passed)
assert all(passed.values())

# %% [markdown]
# Now search every place the token could have stuck: the backbone's `repr` and attributes, the tokenizer's
# attributes and init arguments, the model and generation configs, and every file a `save_pretrained` writes.

# %%
saved_dir = os.path.join(workdir, "saved-with-token")
token_bb.llm.save_pretrained(saved_dir)
token_tokenizer.save_pretrained(saved_dir)

places = {
    "repr(backbone)": repr(token_bb),
    "vars(backbone)": str(vars(token_bb)),
    "vars(tokenizer)": str(vars(token_tokenizer)),
    "tokenizer.init_kwargs": str(token_tokenizer.init_kwargs),
    "llm.config": token_bb.llm.config.to_json_string(),
    "llm.generation_config": token_bb.llm.generation_config.to_json_string(),
}
for name in sorted(os.listdir(saved_dir)):
    with open(os.path.join(saved_dir, name), "rb") as f:
        places[f"saved {name}"] = f.read().decode("utf-8", errors="replace")

for place, text in places.items():
    print(f"{place:32s} contains the token: {FAKE_TOKEN in text}")
assert not any(FAKE_TOKEN in text for text in places.values())

# %% [markdown]
# Errors are covered as well: every loading error goes through one translator that replaces the token with `***`
# before the message is built, and drops the original error when its own text carries the token. Here a loader fails
# the way an HTTP client can, with the token in its message:

# %%
from vla_backbone.errors import BackboneLoadError

from vla_backbone.hf_causal import translated_load_errors

with expect_error(BackboneLoadError) as caught:
    with translated_load_errors("meta-llama/Llama-2-7b-hf", FAKE_TOKEN, cache_only=False):
        raise OSError(f"401 Client Error, request sent with Authorization: Bearer {FAKE_TOKEN}")
assert "Bearer ***" in str(caught[0]) and FAKE_TOKEN not in str(caught[0]) + repr(caught[0].args)
assert caught[0].__cause__ is None and caught[0].__suppress_context__

# %% [markdown]
# ## Where the weights come from: `source`
#
# `get_llm_backbone_and_tokenizer(..., source=...)` turns one backbone id into a checkpoint path for the
# constructor: `"tiny"` (the default) gives the replica's cache directory, `"hub"` the real HuggingFace repository,
# and anything else is taken as a local directory. The id stays the same, so family behaviour (PAD token, prompt
# builder, BOS special cases) does not depend on where the weights live.

# %%
from pathlib import Path

from vla_backbone.registry import checkpoint_path

for source in ("tiny", "hub", release_dir):
    print(f"{'source=' + repr(source)[:40]:50s} -> {checkpoint_path('llama2-7b-pure', source)}")
assert checkpoint_path("llama2-7b-pure", "tiny") == str(llama_dir)
assert checkpoint_path("llama2-7b-pure", "hub") == "meta-llama/Llama-2-7b-hf"
assert checkpoint_path("llama2-7b-pure", release_dir) == str(Path(release_dir).resolve())

# %% [markdown]
# A local directory is anything `save_pretrained` wrote. Save the training-mode backbone's model and tokenizer,
# load it back through `source=`, and the logits match exactly.

# %%
local_dir = os.path.join(workdir, "my-llama")
train_bb.llm.save_pretrained(local_dir)
tokenizer.save_pretrained(local_dir)

reloaded, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure", source=local_dir)
with torch.no_grad():
    logits_reloaded = reloaded(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
assert torch.equal(logits_reloaded, logits_train)
print("reloaded from", reloaded.hf_hub_path, "with identical logits")
assert reloaded.hf_hub_path == str(Path(local_dir).resolve())

# %% [markdown]
# A directory that does not exist fails at once, with a `BackboneLoadError` that says what a valid directory is.

# %%
with expect_error(BackboneLoadError, match="does not exist"):
    get_llm_backbone_and_tokenizer("llama2-7b-pure", source=os.path.join(workdir, "no-such-dir"))

# %% [markdown]
# **Try it.** Flip `inference_mode` and compare what the constructor produced. In Jupyter this shows a dropdown;
# as a script it runs the first choice. Then change the family id to `"phi-2-3b"` or `"qwen25-0_5b-pure"` and run
# the cell again: the mode-dependent lines stay the same for every family.

# %%
from vla_backbone.notebook import explore

pretrained_q = LlamaForCausalLM.from_pretrained(llama_dir).model.layers[0].self_attn.q_proj.weight


def describe(inference_mode: bool, backbone_id: str = "llama2-7b-pure") -> dict:
    backbone, _ = get_llm_backbone_and_tokenizer(backbone_id, inference_mode=inference_mode)
    facts = {
        "inference_mode": backbone.inference_mode,
        "dtype": str(backbone.llm.dtype),
        "use_cache": backbone.llm.config.use_cache,
        "input-grad hook": compat.has_input_grad_hook(backbone.llm),
        "do_sample": backbone.llm.generation_config.do_sample,
        "padding_side": backbone.get_tokenizer().padding_side,
    }
    if backbone_id == "llama2-7b-pure":
        facts["pretrained weights"] = torch.equal(backbone.llm.model.layers[0].self_attn.q_proj.weight, pretrained_q)
    for name, value in facts.items():
        print(f"{name:20s} {value}")
    return facts


first = explore(describe, inference_mode=[False, True], backbone_id="llama2-7b-pure")
# Only Llama-2's weights are compared (with the checkpoint loaded above); another family id has no such line.
assert first["use_cache"] is False and first["input-grad hook"] is True and first.get("pretrained weights", True)
assert describe(inference_mode=True, backbone_id="llama2-7b-pure")["pretrained weights"] is False

# %%
# Deletes the checkpoints written above: to load from them again, first re-run the cells that write them.
shutil.rmtree(workdir, ignore_errors=True)

# %% [markdown]
# ## Summary
# - Training mode calls the family's concrete `*ForCausalLM.from_pretrained` with `dtype=torch.float32` (the
#   checkpoints are stored in fp16 or bf16, and 5.x would keep that; 4.x loaded fp32), then sets greedy generation
#   on `generation_config`, because 5.x rejects `do_sample`/`temperature`/`top_p` in `from_pretrained`.
# - `use_flash_attention_2` is translated to `attn_implementation` and checked first; in training mode, without
#   flash-attn or a CUDA GPU, it raises `FlashAttentionUnavailableError` before anything loads. Inference mode
#   ignores it, as upstream does.
# - Inference mode builds the architecture from `AutoConfig` with `_from_config`: same config, no pretrained
#   weights; the VLA checkpoint fills them in.
# - `use_cache` equals `inference_mode`; the input-grad hook is registered in training mode only, for frozen
#   embeddings with trainable weights inside the layers under reentrant checkpointing.
# - The tokenizer gets `model_max_length=llm_max_length` and right padding (BOS stays at position 0); `hf_token` is
#   passed to the loaders and never stored; `source` picks the replica, the hub or a local directory.
#
# ## Exercises
# 1. Load the Qwen replica (`tiny_checkpoint("qwen25")`) with `AutoModelForCausalLM.from_pretrained` three ways:
#    without a dtype, with `dtype="auto"` and with `dtype=torch.float32`. Explain each result on this transformers,
#    and predict it for the other major version.
# 2. Load the replica in inference mode twice. Are the weights the same both times? Which line of the constructor
#    or of `setup()` decides that, and what would change without a seed?
# 3. Write a collator for two sentences that pads on the right and also builds `labels` with -100 at the padded
#    positions; check that `train_bb(..., labels=labels).loss` does not change when you add more padding.
# 4. Load `phi-2-3b` with `hf_token="hf_SENTINEL..."` and repeat the search for the token, including the files
#    that `save_pretrained` writes. Does the result depend on the family?
