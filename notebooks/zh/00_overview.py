# %% [markdown]
# # 00 · 概览与环境检查
#
# 像 OpenVLA 这样的视觉-语言-动作模型（VLA），说白了就是一个长了眼睛和手的语言模型：视觉编码器把相机拍到的图像变成 patch（图像块）特征，投影器把这些特征映射到语言模型的宽度，再由语言模型预测接下来的 token——其中一部分 token 就是机器人的动作。语言模型隐藏在一个很小的接口 `LLMBackbone` 后面，它的 HuggingFace 实现是 `HFCausalLLMBackbone`。这套 notebook 会基于当下版本的 transformers，把这个接口按成员逐个拆开来讲。
#
# **你将学到**
# - 整套 notebook 覆盖哪些内容，按什么顺序展开；
# - 确认你的环境可以离线、只用 CPU、在几秒内跑完所有内容；
# - 如何从离线的微型副本切换到真实权重。

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
# ## 注册表：包里登记的所有骨干网络 id
#
# OpenVLA 用一个简短的 id 来指代每个语言模型，比如 `llama2-7b-pure`。这个 id 决定了三件事：对应哪个模型家族的类、HuggingFace Hub 上的哪份真实权重，以及用哪种提示词格式。`list_backbones()` 会把所有 id 列出来。

# %%
import vla_backbone
from vla_backbone.registry import backbone_class, hub_path

ids = vla_backbone.list_backbones()
for backbone_id in ids:
    print(f"{backbone_id:26s} {backbone_class(backbone_id).__name__:20s} {hub_path(backbone_id)}")

# %% [markdown]
# 一共五个模型家族：OpenVLA 的全部 id（Llama-2、Vicuna、Mistral、Phi-2）和 MiniVLA 的 Qwen-2.5，再加上本库额外提供的 OPT——它体积小，也不需要申请访问权限。

# %%
families = {backbone_class(i).family for i in ids}
assert families == {"llama2", "mistral", "phi", "qwen25", "opt"}
# Every id OpenVLA's and MiniVLA's registries define (their upstream lists), plus OPT's.
UPSTREAM_IDS = {"llama2-7b-pure", "llama2-13b-pure", "llama2-7b-chat", "llama2-13b-chat", "vicuna-v15-7b", "vicuna-v15-13b",
                "mistral-v0.1-7b-pure", "mistral-v0.1-7b-instruct", "phi-2-3b",
                "qwen25-0_5b-pure", "qwen25-0_5b-extra", "qwen25-1_5b-pure", "qwen25-3b-pure", "qwen25-7b-pure"}
assert UPSTREAM_IDS <= set(ids) and all(backbone_class(i).family == "opt" for i in set(ids) - UPSTREAM_IDS)

# %% [markdown]
# ## 微型副本：真实的分词器和模型类，玩具级的尺寸，完全离线
#
# 真实的 checkpoint 动辄几个 GB，有些还需要申请访问权限（gated）。所以这个包默认为每个家族构建一个*微型副本*：用的是该家族**真实的分词器文件**（随包分发，逐字节复制过来），配上一个刚初始化的模型，它属于**真实的** `*ForCausalLM` 类，配置沿用 Hub 上 checkpoint 的词表大小、特殊 token 的 id、是否使用绑定嵌入以及存储用的 dtype，只把宽度和深度缩小到隐藏维度 64、两层。因此你在这套 notebook 里看到的每一个 id（BOS、PAD、resize 之后的嵌入矩阵行数、动作 token）都是真实的，只有权重是随机的。微型副本只在第一次用到时构建一次，存进缓存目录，全程不需要联网。加载它用的就是 OpenVLA 里的同一个调用。第一次调用还要导入模型代码（需要几秒），所以下面计时的是第二次调用——之后每次加载的开销就是这么多。

# %%
import time

import torch

backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
start = time.perf_counter()
backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
elapsed = time.perf_counter() - start
print(type(backbone).__name__, type(backbone.llm).__name__, type(tokenizer).__name__, f"loaded in {elapsed:.2f} s")
print("loaded from:", backbone.hf_hub_path)

# %% [markdown]
# 微型副本小到在哪儿都能跑，但架构是货真价实的：类名和 70 亿参数的原模型一模一样，不同的只是各项尺寸。

# %%
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

assert isinstance(backbone.llm, LlamaForCausalLM)
assert backbone.transformer_layer_cls is LlamaDecoderLayer
assert backbone.embed_dim == 64 and backbone.llm.config.num_hidden_layers == 2

# %% [markdown]
# 分词器和词表也都是真实的。Llama-2 的分词器有 32000 个条目，BOS 是 `<s>` = 1，EOS 是 `</s>` = 2，没有 PAD token；骨干网络会把 `<PAD>` 加为 id 32000，所以 `len(tokenizer)` 是 32001，而 `vocab_size` 仍然只数基础词表的 32000 个。checkpoint 里的嵌入矩阵是 Hub 上的 32000 行，以 float16 存储，不与 LM head 绑定；经过骨干网络的 resize（见 notebook 04）后变成 32064 行，并以 float32 加载。分词器的类在 transformers 5 上是 `LlamaTokenizer`，在 4.57 上是 `LlamaTokenizerFast`（5.x 每个家族只有一个分词器类）。微型副本里的分词器文件与 `vla_backbone/tokenizers/llama2/` 里随包分发的文件逐字节相同。

# %%
import filecmp

from safetensors import safe_open
from transformers import AutoConfig

from vla_backbone import compat
from vla_backbone.tiny import TOKENIZERS

checkpoint = backbone.hf_hub_path
hub_rows = AutoConfig.from_pretrained(checkpoint).vocab_size
with safe_open(f"{checkpoint}/model.safetensors", framework="pt") as weights:
    stored_dtype = weights.get_tensor("model.embed_tokens.weight").dtype
embedding = backbone.llm.get_input_embeddings().weight
print(f"len(tokenizer) = {len(tokenizer)}, vocab_size = {tokenizer.vocab_size}, "
      f"bos/eos/pad = {tokenizer.bos_token_id}/{tokenizer.eos_token_id}/{tokenizer.pad_token_id}")
print(f"embedding rows: {hub_rows} in the checkpoint ({stored_dtype}) -> {embedding.shape[0]} after the resize "
      f"({embedding.dtype}); tied to the LM head: {backbone.llm.config.tie_word_embeddings}")

# %%
assert type(tokenizer).__name__ == ("LlamaTokenizer" if compat.IS_V5 else "LlamaTokenizerFast")
assert len(tokenizer) == 32001 and tokenizer.vocab_size == 32000
assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 32000)
assert tokenizer.pad_token == "<PAD>"
assert hub_rows == 32000 and embedding.shape == (32064, 64)
assert stored_dtype == torch.float16 and embedding.dtype == torch.float32
assert backbone.llm.config.tie_word_embeddings is False
assert backbone.llm.get_output_embeddings().weight is not embedding
shipped_files = sorted(path.name for path in (TOKENIZERS / "llama2").iterdir())
assert all(filecmp.cmp(TOKENIZERS / "llama2" / name, f"{checkpoint}/{name}", shallow=False) for name in shipped_files)

# %% [markdown]
# 词表是真实大小，宽度却很小，于是微型副本几乎所有的参数都集中在两个 32064 x 64 的矩阵里：输入嵌入和 LM head。所以微型副本有多大，取决于它的词表，而不是它的架构。

# %%
parameters = sum(p.numel() for p in backbone.parameters())
# The input embedding and the LM head, each counted once (a family with tied embeddings shares one matrix).
vocabulary_matrices = sum({id(m.weight): m.weight.numel() for m in (backbone.llm.get_input_embeddings(),
                                                                     backbone.llm.get_output_embeddings())}.values())
print(f"parameters: {parameters:,}, of which embedding + LM head: {vocabulary_matrices:,} "
      f"({vocabulary_matrices / parameters:.0%})")
assert vocabulary_matrices == 2 * 32064 * 64 and vocabulary_matrices / parameters > 0.95

# %% [markdown]
# ## 第一次前向传播
#
# 一句话以 token id 的形式送进去，出来的是整个词表上的 logits，每个位置一行。这里用的是 OpenVLA 在机器人每一步都会写的提示词；它的 id 就是真实的 Llama-2 分词器给出的结果（`1` 是 BOS）。

# %%
action_prompt = "In: What action should the robot take to pick up the cup?\nOut:"
batch = tokenizer([action_prompt], return_tensors="pt")
with torch.no_grad():
    output = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
print("input ids:", batch.input_ids.tolist())
print("logits shape:", tuple(output.logits.shape))

# %%
assert batch.input_ids.tolist() == [[1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 18002,
                                     29973, 13, 3744, 29901]]
assert output.logits.shape == (1, 18, 32064)

# %% [markdown]
# ## 切换到真实权重
#
# 每个加载调用都接受 `source=` 参数：`"tiny"`（默认值）、`"hub"`（真实权重），或者一个本地 checkpoint 目录。设置环境变量 `VLA_BACKBONE_SOURCE=hub`，所有 notebook 就会一起切换过去。OPT-125m 和 Qwen2.5-0.5B 在 Colab 的免费 GPU 上就放得下；Llama-2 需要申请访问权限（gated），加载时要传 `hf_token=`。离线状态下请求 Hub 会在几秒内失败，报错信息会直接告诉你该怎么做：

# %%
import os
from unittest import mock

from vla_backbone.errors import BackboneLoadError
from vla_backbone.notebook import expect_error
from vla_backbone.registry import resolve_source

with mock.patch.dict(os.environ, {"VLA_BACKBONE_SOURCE": "hub"}):
    assert resolve_source() == "hub"

if resolve_source() == "tiny" and not vla_backbone.hf_causal.hub_reachable():
    with expect_error(BackboneLoadError, match="source='tiny'"):
        vla_backbone.get_llm_backbone_and_tokenizer("opt-125m", source="hub")
else:
    print("the hub is reachable or the source is not tiny: skipping the offline demonstration")

# %% [markdown]
# ## 整体路线
#
# | # | notebook | 讲什么 |
# |---|---|---|
# | 01 | 抽象类 | `LLMBackbone`：ABC + `nn.Module`，抽象方法与抽象属性，`embed_dim`，`pad_token_id` |
# | 02 | 加载 | 训练模式与推理模式，dtype，贪心解码的生成配置，`use_cache`，`hf_token`，分词器设置 |
# | 03 | BOS 断言 | 检查的两个条件（条件一、条件二），在每个家族上逐一验证 |
# | 04 | 特殊情况 | phi-2 的 BOS = EOS，没有 BOS 的 Qwen，PAD token，把嵌入矩阵 resize 到 64 的倍数 |
# | 05 | 提示词构造器 | 所有模板并排对比，OpenVLA 的动作提示词，token 与标签 |
# | 06 | `embed_input_ids` 与 `forward` | 每一个参数，标签与 -100，KV 缓存 |
# | 07 | `enable_input_require_grads` | 出错的场景，钩子，几种修复方法 |
# | 08 | 梯度检查点 | 实测内存占用与耗时 |
# | 09 | 精度与冻结 | `half_precision_dtype`，`last_layer_finetune_modules`，各训练阶段的冻结方式 |
# | 10 | FSDP | 包装策略，包装计划（wrap plan），真实的 2 进程运行 |
# | 11 | VLA 内部 | 紧跟在 BOS 之后的 patch，标签，动作 token |
# | 12 | 你自己的骨干网络 | 端到端接入一个新的模型家族 |
#
# ## 小结
# - `list_backbones()` 给出所有 id；`get_llm_backbone_and_tokenizer(id)` 构建骨干网络及其分词器。
# - 微型副本 = 真实的分词器文件 + 一个真实模型类的微型模型，后者沿用 Hub 配置里的词表大小、特殊 id、是否绑定嵌入和存储 dtype：每个 id 都是真实的，只有权重是随机的，而且可以离线运行。
# - `source="hub"`（或 `VLA_BACKBONE_SOURCE=hub`）即可切换到真实权重。
#
# ## 练习
# 1. 加载 `qwen25-0_5b-pure` 和 `opt-125m`。它们各自用的是哪个模型类、哪个分词器类？用 `isinstance` 和 `type(tokenizer).__name__` 验证一下。
# 2. 统计每个家族微型副本的参数量。哪个最大、哪个最小？为什么（提示：比较嵌入矩阵的行数；Qwen 和 OPT 使用绑定嵌入（输入嵌入与输出嵌入共享同一个权重），其余家族不使用）？
# 3. 找到微型副本的缓存目录（`vla_backbone.tiny.tiny_dir("llama2")`），列出里面的文件。其中哪些与 `vla_backbone/tokenizers/llama2/` 里的文件逐字节相同？
