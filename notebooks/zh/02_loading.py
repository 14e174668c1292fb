# %% [markdown]
# # 02 · 加载：训练模式与推理模式
#
# `HFCausalLLMBackbone.__init__` 一屏就能看完，而其中几乎每一行都有存在的理由，只是这些理由往往要等到缺了它才会暴露：模型在不知不觉中以半精度训练；本该贪心解码的生成却在采样；在可重入梯度检查点下，LLM 一冻结，反向传播就断掉；batch 填充在了错误的一侧；访问令牌出现在了日志里。本 notebook 按 OpenVLA 使用的两种模式逐步走读这个构造函数——**训练模式**（加载预训练权重，用来微调）和**推理模式**（只搭建架构，因为 VLA 的 checkpoint 会提供全部权重）——并在微型副本上逐一验证每个步骤。
#
# **你将学到**
# - 训练模式为什么调用具体的 `*ForCausalLM.from_pretrained`，并显式传入 `dtype=torch.float32`；
# - 在 transformers 5.x 上，贪心解码的设置为什么要在加载*之后*才写入；
# - `use_flash_attention_2` 如何映射到 `attn_implementation`，以及没有 GPU 时会得到什么报错；
# - 推理模式用 `AutoConfig` 和 `_from_config` 搭出了什么，`use_cache` 和输入梯度钩子在两种模式下有何不同；
# - 分词器的设置（`model_max_length`、右侧填充），`hf_token` 是怎样处理的，以及权重的三种来源。

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
# ## 构造函数一览
#
# 某个家族（比如 `LLaMa2LLMBackbone`）把自己的模型类和 checkpoint 路径交给 `HFCausalLLMBackbone.__init__`，后者按顺序执行下面这些步骤：
#
# | 步骤 | 训练模式（`inference_mode=False`） | 推理模式（`inference_mode=True`） |
# |---|---|---|
# | 1 | 保存 `llm_family`、`llm_max_length`、`inference_mode`、`hf_hub_path` | 同左 |
# | 2 | 把 `use_flash_attention_2` 映射为 `attn_implementation`（缺 flash-attn 或 GPU 时尽早报错） | 和上游一样忽略这个参数：用库的默认注意力实现 |
# | 3 | `llm_cls.from_pretrained(path, dtype=torch.float32, ...)`，随后设置贪心解码的生成配置 | `AutoConfig.from_pretrained(path)`，再 `llm_cls._from_config(config)`：不加载预训练权重 |
# | 4 | `llm.config.use_cache = False` | `llm.config.use_cache = True` |
# | 5 | `llm.enable_input_require_grads()` | —— |
# | 6 | `AutoTokenizer.from_pretrained(path, model_max_length=llm_max_length, padding_side="right")` | 同左 |
# | 7 | BOS 检查（notebook 03） | 同左 |
#
# `hf_token` 会传给每一次 `from_pretrained` 调用，除此之外哪儿也不去。先核对一下函数签名：

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
# 上游各家族把 `use_flash_attention_2` 默认设为 `True`；我们默认是 `False`，这样同一行调用在笔记本电脑和 Colab 上都能运行——那里通常没有安装 flash-attn。
#
# ## 第 1 步 · 骨干网络记住了什么
#
# 以训练模式（默认）加载 Llama-2 的微型副本，看看构造函数保存了哪些信息。`hf_hub_path` 就是权重的来源——这里是微型副本的缓存目录。

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
# ## 第 2 步 · `use_flash_attention_2` 变成 `attn_implementation`
#
# 上游把 `use_flash_attention_2=...` 直接传给 `from_pretrained`。transformers 在 4.53 中删除了这个参数，如今模型的构造函数会直接拒绝它。

# %%
from transformers import LlamaForCausalLM

from vla_backbone.notebook import expect_error

with expect_error(TypeError, match="use_flash_attention_2"):
    LlamaForCausalLM.from_pretrained(llama_dir, use_flash_attention_2=False)

# %% [markdown]
# 骨干网络在自己的签名里保留了这个布尔参数，再把它翻译过去：`False` 表示“沿用库的默认实现”（PyTorch 的 SDPA 注意力），`True` 表示 `attn_implementation="flash_attention_2"`。

# %%
from vla_backbone.hf_causal import attn_implementation_for

print("attention in use:", train_bb.llm.config._attn_implementation)
assert attn_implementation_for(False) is None
assert train_bb.llm.config._attn_implementation == "sdpa"

# %% [markdown]
# 在没有 flash-attn 或 CUDA GPU 的机器上请求 flash attention，会得到一条说明缺了什么、该怎么办的报错。这项检查在构造函数里*最先*执行，因此在读取 7B checkpoint 的任何一个字节之前就会失败。推理模式下这个参数会被忽略，上游在这里也忽略它：模型架构使用库的默认注意力实现，所以用 flash attention 训练出的 checkpoint 照样能在笔记本电脑上加载。

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
# ## 第 3 步 · 训练模式：具体的类，加载预训练权重
#
# 家族指定自己的模型类（`LlamaForCausalLM`），构造函数调用的是这个类的 `from_pretrained`，而不是某个 `Auto*` 工厂。构建出什么由家族决定，而不是由 checkpoint 的 config 决定——而且总是带 LM head 的因果语言模型类。作为对比，不带后缀的 `AutoModel` 只会搭出没有 head 的解码器，一个 token 也预测不了。

# %%
from transformers import AutoConfig, AutoModel

headless = AutoModel.from_config(AutoConfig.from_pretrained(llama_dir))
print("backbone.llm:", type(train_bb.llm).__name__, "| AutoModel:", type(headless).__name__)
assert type(train_bb.llm) is LlamaForCausalLM and hasattr(train_bb.llm, "lm_head")
assert not hasattr(headless, "lm_head")

# %% [markdown]
# ### 显式指定 `dtype=torch.float32`
#
# 发布出来的 checkpoint 都以半精度存储：Llama-2-7B（以及 phi-2、OPT）是 float16，Mistral-7B 和 Qwen2.5 是 bfloat16。微型副本的存储 dtype 与它所仿照的 hub checkpoint 相同。直接从权重文件里读出来看：

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
# transformers 4.x 无论如何都以 float32 加载这样的 checkpoint；5.x 则按 checkpoint 保存时的 dtype 加载。训练需要 float32 的主权重（之后由混合精度在安全的地方 autocast 到 bfloat16，见 notebook 09），所以构造函数显式要求 float32，在任何版本上都得到同样的模型。下面对 Llama 微型副本调用 `from_pretrained`，分别不指定和指定 dtype：

# %%
as_stored = LlamaForCausalLM.from_pretrained(llama_dir)
as_float32 = LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
print(f"transformers {compat.TRANSFORMERS_VERSION}: no dtype -> {as_stored.dtype}, dtype=float32 -> {as_float32.dtype}")
assert as_stored.dtype == (torch.float16 if compat.IS_V5 else torch.float32)
assert as_float32.dtype == torch.float32

# %% [markdown]
# 骨干网络把它们全都加载成 float32，两个版本都是如此：

# %%
for backbone_id in ("llama2-7b-pure", "mistral-v0.1-7b-pure", "qwen25-0_5b-pure", "phi-2-3b", "opt-125m"):
    family_backbone, _ = get_llm_backbone_and_tokenizer(backbone_id)
    print(f"{backbone_id:22s} backbone dtype: {family_backbone.llm.dtype}")
    assert all(p.dtype == torch.float32 for p in family_backbone.parameters())

# %% [markdown]
# ### 贪心解码：加载之后再设置
#
# 上游还往 `from_pretrained` 里传了 `do_sample=False, temperature=1.0, top_p=1.0`，目的是保持贪心解码，并压掉关于采样配置的警告。transformers 4.x 会把这类关键字参数转交给生成配置；5.x 则把它们交给模型的构造函数，而构造函数不接受。

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
# 所以骨干网络先加载，再把这三个值写到 `llm.generation_config` 上（`compat.set_greedy_generation`）。为了看清它确实生效，做一个要求采样的“已发布”checkpoint（有些对话模型的 checkpoint 就是这样）：用 Llama 微型副本的文件（fp16 权重、真实分词器），再配上一份写着 `do_sample=True, temperature=0.6, top_p=0.9` 的生成配置。普通的 `from_pretrained` 会保留这些采样设置，骨干网络则把它们改了回来：

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
# 贪心解码不会用到随机数发生器，所以两次运行——哪怕随机种子不同——得到的 id 完全相同。同一个 checkpoint 用普通的 `from_pretrained` 加载（同样是 float32，唯一的区别在生成配置），就会采样，两个种子给出两段不同的续写。（微型副本的权重是随机的，生成的词毫无意义；这里只关心是否相同。）

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
# ## 第 3′ 步 · 推理模式：只有架构，没有预训练权重
#
# 推理时，骨干网络是训练好的 VLA 的一部分，而 VLA 的 checkpoint 里已经包含全部权重，LLM 的权重也在内。先去读取预训练的 LLM 权重纯属浪费时间和内存（7B 模型以半精度计约 14 GB）。因此推理模式只读取 config（`AutoConfig.from_pretrained`），再据此以 float32 构建该类的模型（`llm_cls._from_config`）：架构相同，权重是新初始化的。两份 config 只有 `use_cache` 不同；在 4.57 上 `dtype` 字段也不同，那里它仍然记着 checkpoint 的 float16，尽管权重是 float32。

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
# 等权重到位——这里从训练模式的骨干网络复制过来，和加载 VLA checkpoint 的效果一样——两个骨干网络算出的 logits 就完全相同了。

# %%
batch = tokenizer(["pick up the red cup"], return_tensors="pt")
infer_bb.load_state_dict(train_bb.state_dict())
with torch.no_grad():
    logits_train = train_bb(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logits_infer = infer_bb(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
torch.testing.assert_close(logits_infer, logits_train)
print("same logits after loading the weights:", tuple(logits_infer.shape))

# %% [markdown]
# 推理模式从不调用 `set_greedy_generation`，也不需要调用：它只读取 `config.json`，checkpoint 中 `generation_config.json` 里的采样设置根本不会被读进来。`do_sample` 保持未设置（5.x 上是 `None`，4.x 上是 `False`），未设置就意味着贪心解码——这正是预测动作的 VLA 想要的。

# %%
infer_release, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure", source=release_dir, inference_mode=True)
settings = {k: getattr(infer_release.llm.generation_config, k) for k in upstream_kwargs}
print("inference mode on the sampling checkpoint:", settings)
assert settings["do_sample"] is (None if compat.IS_V5 else False)
assert settings["temperature"] != 0.6 and settings["top_p"] != 0.9  # the checkpoint's sampling settings
assert torch.equal(generate(infer_release.llm, seed=0), generate(infer_release.llm, seed=1))

# %% [markdown]
# ## 第 4 步 · `use_cache`：训练时关闭，推理时打开
#
# KV 缓存保存每一层的 key 和 value，这样生成下一个 token 时不必重新计算整个前缀。训练时每条完整序列只跑一遍，缓存只会白白占用内存——而且它和梯度检查点相冲突，因为后者会在反向传播时重新计算各层。于是构造函数设置 `config.use_cache = inference_mode`。一次前向传播就能看出区别：只有推理模式的骨干网络会返回缓存，输入有几个 token，缓存就有几项。

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
# 与梯度检查点的冲突，transformers 会自行处理：开启检查点后，处于训练模式的模型即使被要求返回缓存，也只会打印一条警告，并不返回缓存。提前设置 `use_cache=False`，就能让每个训练步都不再出现这条警告。

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
# ## 第 5 步 · `enable_input_require_grads`：仅限训练模式
#
# 训练模式下，构造函数会在输入嵌入层上注册一个前向钩子，把它的输出标记为需要梯度。它在这样的情形下才起作用：输入嵌入被冻结，而解码器层内部的权重在训练（适配器，或者最后一层），同时使用可重入的梯度检查点。这时进入检查点块的张量都不需要梯度，反向传播要么当场报错（“element 0 of tensors does not require grad”），要么在解码器层之后还有可训练参数时静默失败，让这些权重拿不到梯度。notebook 07 会复现这两种情况。改用非可重入梯度检查点，或者干脆不用梯度检查点，同样能避免这个问题；全量微调时这个钩子也无害。它只在嵌入由嵌入模块算出时才生效：用其他方式构造的 `inputs_embeds` 会绕过它。推理模式从不做反向传播，所以跳过了这个钩子。权重全部冻结后，训练模式骨干网络的嵌入输出仍然需要梯度，推理模式的则不需要。

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
# ## 第 6 步 · 分词器：`model_max_length` 与右侧填充
#
# 分词器加载时带着 `model_max_length=llm_max_length`，因此 `truncation=True` 会在骨干网络配置的长度处截断（默认 2048）；同时设置了 `padding_side="right"`。用 `llm_max_length=64` 加载一个骨干网络，喂给它一长串数字：

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
# 右侧填充把 PAD 的 id 放在文本之后，注意力掩码恰好在这些位置为 0。更重要的后果是：每一行仍然以位于位置 0 的 BOS 开头——VLM 会把图像 patch 拼接在位置 1，也就是紧跟在 BOS 之后，batch 中每一行都是如此。如果左侧填充，较短的那一行就会以 PAD 开头。

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
# ## `hf_token`：只转交，不保留
#
# Llama-2 这类受限（gated）模型需要访问令牌。构造函数把 `hf_token` 交给每一次 `from_pretrained` 调用（模型和分词器；推理模式下还有 config），此外不在任何地方保存它：不作为属性，不写进 config，也不出现在 `save_pretrained` 写出的文件里。我们用一个编造的 token 来验证。包在加载函数外面的“探针”会记录每次调用；对它们收到的参数，我们只做比较，绝不打印。

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
# 接下来搜查 token 可能残留的每一个地方：骨干网络的 `repr` 和属性、分词器的属性和初始化参数、模型配置和生成配置，以及 `save_pretrained` 写出的每一个文件。

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
# 报错信息里也不会泄露 token：所有加载错误都会经过同一个转换函数，在生成信息之前把 token 替换成 `***`。如果原始错误本身的文本就带着 token，转换函数还会把这个原始错误丢掉。下面让加载函数像 HTTP 客户端那样失败，报错信息里带着 token：

# %%
from vla_backbone.errors import BackboneLoadError

from vla_backbone.hf_causal import translated_load_errors

with expect_error(BackboneLoadError) as caught:
    with translated_load_errors("meta-llama/Llama-2-7b-hf", FAKE_TOKEN, cache_only=False):
        raise OSError(f"401 Client Error, request sent with Authorization: Bearer {FAKE_TOKEN}")
assert "Bearer ***" in str(caught[0]) and FAKE_TOKEN not in str(caught[0]) + repr(caught[0].args)
assert caught[0].__cause__ is None and caught[0].__suppress_context__

# %% [markdown]
# ## 权重从哪里来：`source`
#
# `get_llm_backbone_and_tokenizer(..., source=...)` 把一个骨干网络 id 转换成交给构造函数的 checkpoint 路径：`"tiny"`（默认）对应微型副本的缓存目录，`"hub"` 对应 HuggingFace 上真正的仓库，其他取值一律当作本地目录。id 始终不变，所以家族特有的行为（PAD token、提示词构造器、BOS 特例）与权重存放在哪里无关。

# %%
from pathlib import Path

from vla_backbone.registry import checkpoint_path

for source in ("tiny", "hub", release_dir):
    print(f"{'source=' + repr(source)[:40]:50s} -> {checkpoint_path('llama2-7b-pure', source)}")
assert checkpoint_path("llama2-7b-pure", "tiny") == str(llama_dir)
assert checkpoint_path("llama2-7b-pure", "hub") == "meta-llama/Llama-2-7b-hf"
assert checkpoint_path("llama2-7b-pure", release_dir) == str(Path(release_dir).resolve())

# %% [markdown]
# 本地目录可以是任何由 `save_pretrained` 写出的目录。把训练模式骨干网络的模型和分词器保存下来，再通过 `source=` 加载回来，logits 完全一致。

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
# 传入不存在的目录会当场报错（`BackboneLoadError`），报错信息会说明什么样的目录才有效。

# %%
with expect_error(BackboneLoadError, match="does not exist"):
    get_llm_backbone_and_tokenizer("llama2-7b-pure", source=os.path.join(workdir, "no-such-dir"))

# %% [markdown]
# **动手试试。** 切换 `inference_mode`，比较构造函数产出的结果。在 Jupyter 里会显示一个下拉菜单；作为脚本运行时，只执行第一个选项。再把家族 id 换成 `"phi-2-3b"` 或 `"qwen25-0_5b-pure"`，重新运行这个单元格：与模式相关的那几行，对每个家族都一样。

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
# ## 小结
# - 训练模式以 `dtype=torch.float32` 调用家族指定的具体 `*ForCausalLM.from_pretrained`（checkpoint 以 fp16 或 bf16 存储，5.x 会保留这个 dtype，4.x 则加载成 fp32），然后在 `generation_config` 上设置贪心解码，因为 5.x 不再接受在 `from_pretrained` 里传 `do_sample`/`temperature`/`top_p`。
# - `use_flash_attention_2` 被翻译为 `attn_implementation`，并且最先检查；在训练模式下，缺少 flash-attn 或 CUDA GPU 时，在加载任何东西之前就抛出 `FlashAttentionUnavailableError`。推理模式和上游一样忽略这个参数。
# - 推理模式用 `AutoConfig` 加 `_from_config` 搭建架构：config 相同，没有预训练权重，由 VLA 的 checkpoint 补上。
# - `use_cache` 等于 `inference_mode`；输入梯度钩子只在训练模式下注册，用于嵌入被冻结、层内权重在训练、又使用可重入梯度检查点的情形。
# - 分词器使用 `model_max_length=llm_max_length` 和右侧填充（BOS 始终在位置 0）；`hf_token` 只转交给加载函数，从不保存；`source` 在微型副本、hub 和本地目录之间选择。
#
# ## 练习
# 1. 用 `AutoModelForCausalLM.from_pretrained` 以三种方式加载 Qwen 微型副本（`tiny_checkpoint("qwen25")`）：不指定 dtype、`dtype="auto"`、`dtype=torch.float32`。解释在当前 transformers 上的每个结果，并预测在另一个大版本上会怎样。
# 2. 以推理模式加载微型副本两次。两次的权重相同吗？是构造函数或 `setup()` 中的哪一行决定了这一点？如果没有设置随机种子，会有什么变化？
# 3. 为两个句子写一个 collator：在右侧填充，同时构造 `labels`，并在填充位置填 -100；验证再多加一些填充时，`train_bb(..., labels=labels).loss` 保持不变。
# 4. 以 `hf_token="hf_SENTINEL..."` 加载 `phi-2-3b`，重复对 token 的搜查，包括 `save_pretrained` 写出的文件。结果是否因家族而异？
