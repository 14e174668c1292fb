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
assert {"llama2-7b-pure", "vicuna-v15-7b", "mistral-v0.1-7b-instruct", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"} <= set(ids)

# %% [markdown]
# ## 微型副本：真实的类，玩具级的尺寸，完全离线
#
# 真实的 checkpoint 动辄几个 GB，有些还需要申请访问权限（gated）。所以这个包默认不下载它们，而是为每个家族构建一个*微型副本*：`*ForCausalLM` 类和解码器层类与原模型完全相同，特殊 token 和 BOS 行为也一样，只是隐藏维度缩到 64、只有两层、词表只有 1024 个 token（骨干网络加上 PAD token 并向上取整到 64 的倍数后，嵌入矩阵是 1088 行，详见 04）。微型副本只在第一次用到时构建一次，存进缓存目录，耗时大约十分之一秒，全程不需要联网。加载它用的就是 OpenVLA 里的同一个调用。第一次调用还要导入模型代码（需要几秒），所以下面计时的是第二次调用——之后每次加载的开销就是这么多。

# %%
import time

backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
start = time.perf_counter()
backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
elapsed = time.perf_counter() - start
print(type(backbone).__name__, type(backbone.llm).__name__, f"loaded in {elapsed:.2f} s")
print("parameters:", sum(p.numel() for p in backbone.parameters()))
print("loaded from:", backbone.hf_hub_path)

# %% [markdown]
# 微型副本小到在哪儿都能跑，但架构是货真价实的：类名和 70 亿参数的原模型一模一样，不同的只是各项尺寸。

# %%
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

assert isinstance(backbone.llm, LlamaForCausalLM)
assert backbone.transformer_layer_cls is LlamaDecoderLayer
assert backbone.embed_dim == 64 and backbone.llm.config.num_hidden_layers == 2
assert elapsed < 3, "a warm load of a tiny replica should take well under a second"

# %% [markdown]
# ## 第一次前向传播
#
# 一句话以 token id 的形式送进去，出来的是整个词表上的 logits，每个位置一行。

# %%
import torch

batch = tokenizer(["What action should the robot take to pick up the cup?"], return_tensors="pt")
with torch.no_grad():
    output = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
print("input ids:", batch.input_ids.tolist())
print("logits shape:", tuple(output.logits.shape))
assert output.logits.shape == (1, batch.input_ids.shape[1], backbone.llm.config.vocab_size)

# %% [markdown]
# ## 切换到真实权重
#
# 每个加载调用都接受 `source=` 参数：`"tiny"`（默认值）、`"hub"`（真实权重），或者一个本地 checkpoint 目录。设置环境变量 `VLA_BACKBONE_SOURCE=hub`，所有 notebook 就会一起切换过去。OPT-125m 和 Qwen2.5-0.5B 在 Colab 的免费 GPU 上就放得下；Llama-2 需要申请访问权限（gated），加载时要传 `hf_token=`。离线状态下请求 Hub 会在几秒内失败，报错信息会直接告诉你该怎么做：

# %%
from vla_backbone.errors import BackboneLoadError
from vla_backbone.notebook import expect_error
from vla_backbone.registry import resolve_source

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
# | 03 | BOS 断言 | 检查的两个部分，在每个家族上逐一验证 |
# | 04 | 特殊情况 | phi-2 的 BOS = EOS，没有 BOS 的 Qwen，PAD token，嵌入矩阵扩到 64 的倍数 |
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
# - 微型副本保留了真实的模型类和分词器行为，离线运行，加载只需零点几秒。
# - `source="hub"`（或 `VLA_BACKBONE_SOURCE=hub`）即可切换到真实权重。
#
# ## 练习
# 1. 加载 `qwen25-0_5b-pure` 和 `opt-125m`。它们各自用的是哪个模型类？用 `isinstance` 验证一下。
# 2. 统计每个家族微型副本的参数量。哪个最大、哪个最小？为什么（提示：OPT 的位置嵌入是可学习的参数；Qwen 和 OPT 的输入嵌入与输出层共享权重，即 tied embeddings）？
# 3. 找到微型副本的缓存目录（`vla_backbone.tiny.tiny_dir("llama2")`），列出里面的文件。
