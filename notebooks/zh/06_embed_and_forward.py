# %% [markdown]
# # 06 · `embed_input_ids` 与 `forward`
#
# VLA 从来不会把一句纯文本直接交给语言模型。它先用 `embed_input_ids` 把文本变成嵌入，把投影后的图像 patch（图像块）拼接在 BOS 之后，再带着 `inputs_embeds`、注意力掩码和标签调用 `forward`；推理时则借助 KV 缓存逐个解码出动作 token。VLM 和 LLM 之间的数据通路就只有这两个方法。`HFCausalLLMBackbone` 有意把它们写得很薄——一个查嵌入表，另一个把十个参数原封不动地交给 HuggingFace 模型——所以本 notebook 逐个参数地看它起什么作用，并和手写的计算结果逐一对照。
#
# **你将学到**
# - `embed_input_ids` 就是在嵌入矩阵里按行查表，而 `inputs_embeds` 可以代替 `input_ids`；
# - 移植到 Gemma 时的一个坑：由谁把嵌入乘以 √`hidden_size`，在 transformers 5.4.0 里变了；
# - 右侧填充时 `attention_mask` 和 `position_ids` 起什么作用，以及为什么真实位置不受影响；
# - `labels` 怎样变成损失：错开一位、`-100`，以及哪些位置无论如何都不会计入；
# - KV 缓存：`use_cache=True` 返回什么、增量解码，以及 `past_key_values` → `cache` 的改名；
# - 隐藏状态、注意力权重（以及 SDPA 为什么不给出权重），还有返回的 `CausalLMOutputWithPast`。

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
# 整个 notebook 只用一个骨干网络和一个提示词：训练模式下的微型 Llama-2 副本（与 OpenVLA 加载它的方式相同），以及 OpenVLA 的动作提问，Llama-2 的真实分词器把它变成 18 个 id，第一个是 BOS（1）。这里做的全是前向传播，所以整个 notebook 都关闭了 autograd。

# %%
import inspect

import torch
import torch.nn.functional as F
from torch.testing import assert_close

import vla_backbone
from vla_backbone import compat
from vla_backbone.notebook import expect_error

torch.set_grad_enabled(False)
backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
llm, config = backbone.llm, backbone.llm.config
PROMPT = "In: What action should the robot take to pick up the cup?\nOut:"
input_ids = tokenizer([PROMPT], return_tensors="pt").input_ids
n = input_ids.shape[1]
print("input_ids:", input_ids.tolist(), " layers:", config.num_hidden_layers, " hidden size:", backbone.embed_dim)
assert input_ids.tolist() == [[1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 18002, 29973, 13, 3744, 29901]]

# %% [markdown]
# ## `embed_input_ids`：按行查表
#
# 先从最小的东西讲起。嵌入层就是一个矩阵，每个 token id 对应一行；对一个序列做嵌入，就是把对应的行挑出来。这个矩阵的行数比分词器的 token 数多，因为骨干网络在加入 `<PAD>` 之后把词表大小向上取整到了 64 的倍数（见 notebook 04）：Llama-2 的 32000 个 token 加上 `<PAD>` 共 32001 个，放在 32064 行、每行宽 64 的矩阵里。

# %%
weight = llm.get_input_embeddings().weight
by_hand = weight[input_ids]
print("embedding matrix:", tuple(weight.shape), " tokenizer:", len(tokenizer), "tokens  ->  embeddings:", tuple(by_hand.shape))
assert weight.shape == (32064, backbone.embed_dim) == (32064, 64) and len(tokenizer) == 32001
assert by_hand.shape == (1, n, backbone.embed_dim)

# %% [markdown]
# 再看库里的实现：`embed_input_ids` 调用的是模型的输入嵌入模块，也就是 `model.embed_tokens`。两者都和手工查表的结果一致。

# %%
embeddings = backbone.embed_input_ids(input_ids)
assert_close(embeddings, by_hand)
assert_close(embeddings, llm.get_input_embeddings()(input_ids))
assert llm.get_input_embeddings() is llm.model.embed_tokens

# %% [markdown]
# 调用模块而不是直接索引权重，区别只有一个：模块上的钩子会被触发。训练模式的骨干网络恰好在这个模块上注册了一个钩子（`enable_input_require_grads`，见 notebook 07），它会把输出标记为需要梯度。即使在这里 autograd 已经关闭，也能看到它被触发：模块的输出被打上了标记，手工查表的结果则没有。

# %%
assert compat.has_input_grad_hook(llm)
assert embeddings.requires_grad and not by_hand.requires_grad

# %% [markdown]
# ## `forward`：十个参数，原样传递
#
# 它的签名与上游 OpenVLA 逐个参数完全一致：

# %%
ARGUMENTS = ["input_ids", "attention_mask", "position_ids", "past_key_values", "inputs_embeds", "labels",
             "use_cache", "output_attentions", "output_hidden_states", "return_dict"]
print(list(inspect.signature(backbone.forward).parameters))
assert list(inspect.signature(backbone.forward).parameters) == ARGUMENTS

# %% [markdown]
# 函数体只有一次 `llm(...)` 调用，参数先经过 `compat.forward_kwargs` 过滤，它做两件事。值为 `None` 的参数会被丢掉，模型于是使用自己的默认值——这正是 transformers 4.40 里传 `None` 的含义。`past_key_values` 则会换成当前 transformers 版本使用的名字：较新的 5.x 把 forward 的这个参数改名为 `cache`。骨干网络保留上游的名字，这样调用它的 OpenVLA 代码无需改动。

# %%
llm_arguments = inspect.signature(type(llm).forward).parameters
CACHE_NAME = "cache" if "cache" in llm_arguments else "past_key_values"
print(f"transformers {compat.TRANSFORMERS_VERSION}: the model's forward calls the cache {CACHE_NAME!r}")

passed = compat.forward_kwargs(llm, input_ids=input_ids, past_key_values="<a cache>", labels=None, use_cache=True)
print(sorted(passed))
assert set(passed) == {"input_ids", CACHE_NAME, "use_cache"} and passed[CACHE_NAME] == "<a cache>"

# %% [markdown]
# 下面这次运行是后面各单元格的对照基准：输入 token id，每个位置输出一行 logits，宽度等于 resize 之后的词表大小（每个位置 32064 个分数）。

# %%
reference = backbone(input_ids=input_ids)
print(type(reference).__name__, tuple(reference.logits.shape))
assert reference.logits.shape == (1, n, weight.shape[0]) == (1, 18, 32064)

# %% [markdown]
# ### 用 `inputs_embeds` 代替 `input_ids`
#
# VLM 走的就是这条路：它自己拼出嵌入序列（文本嵌入中间插入图像 patch），然后调用 `forward(input_ids=None, inputs_embeds=...)`。如果传入的只是纯文本的嵌入，得到的 logits 和直接传 id 完全一样。

# %%
from_embeddings = backbone(input_ids=None, inputs_embeds=backbone.embed_input_ids(input_ids))
assert_close(from_embeddings.logits, reference.logits)

# %% [markdown]
# 两者必须恰好给一个。两个都给（或者都不给），HuggingFace 模型会直接报 `ValueError`，骨干网络把这个错误原样抛出。

# %%
with expect_error(ValueError, match="exactly one of input_ids or inputs_embeds"):
    backbone(input_ids=input_ids, inputs_embeds=embeddings)
with expect_error(ValueError, match="exactly one of input_ids or inputs_embeds"):
    backbone()

# %% [markdown]
# ### 谁来缩放嵌入？移植到 Gemma 时的一个坑
#
# 本包里的每个家族都把嵌入矩阵的行原样交给第一个解码器层。Gemma 则先把它们乘以 √`hidden_size`，而 transformers 5.4.0 改变了这一步乘法所在的位置：
#
# - 5.3 及以前（包括 OpenVLA 锁定的 4.40，以及 4.57），嵌入模块就是普通的 `nn.Embedding`，由 `GemmaModel.forward` 对收到的任何 `inputs_embeds` 做这步乘法；
# - 从 5.4 起，乘法挪进了嵌入模块 `GemmaTextScaledWordEmbedding`，由它缩放自己的输出，`forward` 则把 `inputs_embeds` 原样往下传。
#
# 文本经过 `embed_input_ids`，在每个版本上到达第一层时都恰好被缩放一次，所以传 id 和传 `embed_input_ids(ids)` 得到的 logits 相同，契约检查（notebook 12）里对这一点的检查在哪个版本上都能通过。投影后的图像 patch 就不一样了：5.4 以前模型会缩放它们，5.4 起谁都不管。以 5.4 为界，在一侧训练出的投影器拿到另一侧的模型上，送进去的 patch 会偏大或偏小 √`hidden_size` 倍：Gemma-2B 的宽度是 2048，约差 45 倍；这里用的宽度是 64，差 8 倍。移植时必须在某一侧自己补上这个缩放，例如要对齐 5.4 以前训练的投影器，就在 5.4 及以后把投影器的输出乘以 `hidden_size ** 0.5`。下面的单元格用一个配置搭出随机权重的单层 Gemma（不用下载任何东西），记录它的第一层分别从 id 和从“patch”收到了什么。

# %%
from packaging.version import Version
from transformers import GemmaConfig, GemmaForCausalLM

gemma_config = GemmaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=32)
gemma = GemmaForCausalLM(gemma_config).eval()
first_layer_inputs = []
hook = gemma.model.layers[0].register_forward_pre_hook(
    lambda module, args, kwargs: first_layer_inputs.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
gemma_ids = torch.tensor([[2, 17, 42, 99]])
patches = torch.randn(1, 4, gemma_config.hidden_size)  # what a projector hands over: vectors of the LLM's width
gemma(input_ids=gemma_ids)
gemma(inputs_embeds=patches)
hook.remove()
from_ids, from_patches = first_layer_inputs
rows = gemma.get_input_embeddings().weight[gemma_ids]
embedding_cls = type(gemma.get_input_embeddings())
print(f"transformers {compat.TRANSFORMERS_VERSION}: embedding module {embedding_cls.__name__}; the first layer "
      f"receives ids' rows x{(from_ids / rows).mean():.2f} and patches x{(from_patches / patches).mean():.2f}")

# %% [markdown]
# 在当前安装的版本上检查：文本被缩放一次，乘的是 √64 = 8；从 5.4.0 起由嵌入模块负责缩放，patch 原样到达第一层；在此之前，模型也会缩放 patch。两种情况下，传 id 和传嵌入的结果都一致。

# %%
scale = gemma_config.hidden_size ** 0.5
assert scale == 8.0
assert_close(from_ids, rows * scale)
module_scales = embedding_cls is not torch.nn.Embedding
assert module_scales == (Version(compat.TRANSFORMERS_VERSION) >= Version("5.4.0"))
assert_close(from_patches, patches if module_scales else patches * scale)
assert_close(gemma(inputs_embeds=gemma.get_input_embeddings()(gemma_ids)).logits, gemma(input_ids=gemma_ids).logits)

# %% [markdown]
# ### 右侧填充时的 `attention_mask`
#
# 同一个 batch 里的各行长度必须相同。骨干网络的分词器在右侧用 `<PAD>` 填充，并返回一个注意力掩码，填充位置为 0。较短的提示词在其真实位置上的 logits，不能因为后面的填充而改变。

# %%
SHORT = "In: put the cup"
batch = tokenizer([PROMPT, SHORT], return_tensors="pt", padding=True)
short_ids = tokenizer([SHORT], return_tensors="pt").input_ids
m = short_ids.shape[1]
print(batch.input_ids.tolist())
print(batch.attention_mask.tolist())
assert tokenizer.padding_side == "right"
assert (batch.input_ids[1, m:] == tokenizer.pad_token_id).all() and (batch.attention_mask[1, m:] == 0).all()

padded = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
alone = backbone(input_ids=short_ids)
assert_close(padded.logits[1, :m], alone.logits[0])
assert_close(padded.logits[0], reference.logits[0])

# %% [markdown]
# 仔细看就会明白右侧填充*为什么*安全：在因果模型里，每个位置只关注它自己和它之前的位置，而填充全在后面。即使不传掩码，真实位置的结果也不变。掩码改变的只是填充位置本身的输出——而这些位置的标签本来就是 `-100`。

# %%
unmasked = backbone(input_ids=batch.input_ids)
assert_close(unmasked.logits[1, :m], alone.logits[0])
assert not torch.allclose(unmasked.logits[1, m:], padded.logits[1, m:])

# %% [markdown]
# ### `position_ids`
#
# 不传时，位置从 0 开始计数：显式传入 `arange(n)` 结果不变。Llama 用旋转位置编码（RoPE）表示位置，而在 RoPE 下，注意力分数只取决于两个位置之间的*距离*，所以把所有位置平移同样的量，结果也不变。把距离拉大则会改变结果。

# %%
positions = torch.arange(n)[None]
assert_close(backbone(input_ids=input_ids, position_ids=positions).logits, reference.logits)
assert_close(backbone(input_ids=input_ids, position_ids=positions + 100).logits, reference.logits, atol=1e-4, rtol=1e-4)
assert not torch.allclose(backbone(input_ids=input_ids, position_ids=2 * positions).logits, reference.logits, atol=1e-4)

# %% [markdown]
# **动手试试：** 新建一个单元格，用 `get_llm_backbone_and_tokenizer` 加载 `opt-125m`，在它上面重复“平移 100”的实验。OPT 为每个绝对位置学习一个嵌入，所以在它身上平移就不再无害了。
#
# ## `labels` 与损失
#
# 传入 `labels` 后，模型还会返回损失。仿照 OpenVLA，只对序列末尾评分：前五个标签设为 `-100`，也就是交叉熵会忽略的索引。

# %%
IGNORE_INDEX = -100
labels = input_ids.clone()
labels[:, :5] = IGNORE_INDEX
output = backbone(input_ids=input_ids, labels=labels)
print("labels:", labels.tolist(), " loss:", round(output.loss.item(), 4))

# %% [markdown]
# 位置 *t* 的 logits 预测的是位置 *t + 1* 的 token。所以损失把 `logits[:, :-1]` 和 `labels[:, 1:]` 配对——错位由 HuggingFace 在模型内部完成，所以 OpenVLA 传入的标签与 `input_ids` 是对齐的。接着，在标签不是 `-100` 的位置上，对正确 token 的负对数概率取平均。下面一步一步手算：

# %%
V = output.logits.shape[-1]
shift_logits, shift_labels = output.logits[:, :-1], labels[:, 1:]
graded = shift_labels != IGNORE_INDEX
log_probs = shift_logits.log_softmax(-1)[graded]
by_hand = -log_probs.gather(-1, shift_labels[graded][:, None]).mean()
assert_close(by_hand, output.loss)
assert_close(F.cross_entropy(shift_logits.reshape(-1, V), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX), output.loss)
print(f"{int(graded.sum())} graded positions of {n - 1}; loss by hand {by_hand.item():.4f} = library {output.loss.item():.4f}")

# %% [markdown]
# ### `-100` 到底意味着什么
#
# 标签为 `-100` 的位置对损失毫无贡献。把预测被忽略标签的那些 logits 打乱，再交给模型自己的损失函数（`llm.loss_function`，也就是 `forward` 内部用的那个）：损失纹丝不动。

# %%
noisy = output.logits.clone()
noisy[:, :4] += 10 * torch.randn_like(noisy[:, :4])
assert torch.all(labels[:, 1:5] == IGNORE_INDEX)
assert_close(llm.loss_function(logits=noisy, labels=labels, vocab_size=V), output.loss)

# %% [markdown]
# 错位还意味着有两个位置无论标签是什么都不会计入：`labels[:, 0]`（没有谁去预测第一个 token；它是 BOS，OpenVLA 反正也把它标成 `-100`），以及最后一个位置的 logits（后面已经没有要预测的 token 了）。改动其中任何一个，损失都不变。

# %%
changed = labels.clone()
changed[:, 0] = 42
last_scrambled = output.logits.clone()
last_scrambled[:, -1] = torch.randn(V)
assert_close(backbone(input_ids=input_ids, labels=changed).loss, output.loss)
assert_close(llm.loss_function(logits=last_scrambled, labels=labels, vocab_size=V), output.loss)

# %% [markdown]
# 按位置画出来就一目了然了。每个位置都有一个预测下一个 token 的交叉熵（灰色柱子是在标签取原始 token id 时的值），但只有绿色位置——标签不是 `-100` 的那些——才计入平均。

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"loss_title": "Per-position loss: only green positions count (grey: label -100)",
           "loss_x": "predicted token (position t + 1)", "loss_y": "cross-entropy",
           "attn_title": "Attention weights, layer 1, head 1 (eager)",
           "attn_x": "key position (attended to)", "attn_y": "query position"},
    "zh": {"loss_title": "逐位置损失：只有绿色位置计入（灰色：标签为 -100）",
           "loss_x": "被预测的 token（位置 t + 1）", "loss_y": "交叉熵",
           "attn_title": "注意力权重：第 1 层、第 1 个头（eager）",
           "attn_x": "键的位置（被关注的 token）", "attn_y": "查询位置"},
}[LANG]

every_position = F.cross_entropy(shift_logits[0], input_ids[0, 1:], reduction="none")
counted = F.cross_entropy(shift_logits[0], shift_labels[0], ignore_index=IGNORE_INDEX, reduction="none")
assert torch.all(counted[~graded[0]] == 0)
assert_close(counted[graded[0]], every_position[graded[0]])
assert_close(counted[graded[0]].mean(), output.loss)


def short(token, width=10):
    token = token.replace("\n", "\\n")
    return token if len(token) <= width else token[: width - 1] + "…"


tokens = [short(t) for t in tokenizer.convert_ids_to_tokens(input_ids[0].tolist())]
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.bar(range(1, n), every_position, color=["tab:green" if g else "lightgrey" for g in graded[0]])
ax.set_xticks(range(1, n), tokens[1:], rotation=30, ha="right", fontsize=8)
ax.set_xlabel(TEXT["loss_x"])
ax.set_ylabel(TEXT["loss_y"])
ax.set_title(TEXT["loss_title"], fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## `use_cache` 与 `past_key_values`：KV 缓存
#
# 逐个 token 生成时，如果每一步都重算整个前缀，就太浪费了。KV 缓存保存了每一层的键和值，于是每一步只需要处理最新的那个 token。这个骨干网络是以训练模式加载的，此时 `config.use_cache` 为 `False`（见 notebook 02），所以普通调用不返回缓存，传入 `use_cache=True` 才会拿到缓存。
#
# 读取缓存请用 `compat.output_cache(output)`：较新的 transformers 5.x 把输出字段（以及 forward 的参数）从 `past_key_values` 改名为 `cache`。在这台机器上：

# %%
no_cache = backbone(input_ids=input_ids)
with_cache = backbone(input_ids=input_ids, use_cache=True)
cache = compat.output_cache(with_cache)
print(f"forward argument: {CACHE_NAME!r}, output field: {CACHE_NAME!r}, cache: {type(cache).__name__} "
      f"holding {cache.get_seq_length()} positions")
assert config.use_cache is False and compat.output_cache(no_cache) is None
assert CACHE_NAME in type(with_cache).__dataclass_fields__
assert cache.get_seq_length() == n

# %% [markdown]
# 增量解码：先运行去掉最后三个 token 的提示词，再把这三个 token 一个一个地送进去，每次都带上前一步的缓存（用上游的名字 `past_key_values` 传入，由 compat 负责改名）。每一步的预测都必须与完整前向传播在同一位置的预测一致，而缓存每一步恰好增长一个位置。缓存对象是原地更新的：每一步返回的都是同一个对象。

# %%
prefix = input_ids[:, :-3]
step = backbone(input_ids=prefix, use_cache=True)
cache = compat.output_cache(step)
lengths = [cache.get_seq_length()]
for t in range(prefix.shape[1], n):
    step = backbone(input_ids=input_ids[:, t : t + 1], past_key_values=cache, use_cache=True)
    assert compat.output_cache(step) is cache
    assert_close(step.logits[0, -1], reference.logits[0, t])
    lengths.append(cache.get_seq_length())
print("cache length after each step:", lengths)
assert lengths == list(range(n - 3, n + 1))

# %% [markdown]
# `generate` 就是这个循环再加上选 token 的策略。骨干网络在生成配置上设置了贪心解码（见 notebook 02），所以手写的带缓存循环生成的五个新 token，与 `llm.generate` 的结果完全相同。

# %%
cache_out = backbone(input_ids=input_ids, use_cache=True)
sequence, cache = input_ids, compat.output_cache(cache_out)
next_token = cache_out.logits[:, -1].argmax(-1, keepdim=True)
for _ in range(5):
    sequence = torch.cat([sequence, next_token], dim=1)
    cache_out = backbone(input_ids=next_token, past_key_values=cache, use_cache=True)
    next_token = cache_out.logits[:, -1].argmax(-1, keepdim=True)
generated = llm.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=5)
print("by hand: ", sequence[0, n:].tolist(), "\ngenerate:", generated[0, n:].tolist())
assert torch.equal(sequence, generated)

# %% [markdown]
# ## `output_hidden_states`
#
# 传入 `output_hidden_states=True` 后，输出里有 `num_hidden_layers + 1` 个张量：先是输入嵌入，然后每个解码器层一个。最后一个取自最终归一化层*之后*，所以只需 LM head 就能把它变成 logits。

# %%
hidden_out = backbone(input_ids=input_ids, output_hidden_states=True)
hidden_states = hidden_out.hidden_states
print(len(hidden_states), "tensors of shape", tuple(hidden_states[0].shape))
assert len(hidden_states) == config.num_hidden_layers + 1
assert_close(hidden_states[0], embeddings)
assert_close(llm.lm_head(hidden_states[-1]), hidden_out.logits)

# %% [markdown]
# 为了看到最终归一化层的作用，用一个前向钩子截获最后一个解码器层的原始输出（钩子不返回任何东西，所以只是旁观），再手动调用最终归一化层：

# %%
captured = {}


def keep_output(module, args, output):
    captured["last_layer"] = output[0] if isinstance(output, tuple) else output


handle = llm.model.layers[-1].register_forward_hook(keep_output)
backbone(input_ids=input_ids)
handle.remove()
assert_close(llm.model.norm(captured["last_layer"]), hidden_states[-1])
assert not torch.allclose(captured["last_layer"], hidden_states[-1])

# %% [markdown]
# ## `output_attentions`
#
# 微型副本和真实模型一样，默认使用 PyTorch 的融合注意力（`sdpa`）。融合算子从不显式生成注意力矩阵，也就没有权重可以返回：传入 `output_attentions=True` 时，transformers 会打出一条警告，并且不返回权重（5.24 上是空元组，4.57 上是 `None`）。

# %%
from vla_backbone.notebook import transformers_log

with transformers_log() as logged:
    sdpa_out = backbone(input_ids=input_ids, output_attentions=True)
print(f"attn_implementation={config._attn_implementation!r}  attentions={sdpa_out.attentions!r}")
print("transformers log:", logged)
assert config._attn_implementation == "sdpa" and sdpa_out.attentions == (() if compat.IS_V5 else None)
assert any("does not support `output_attentions=True`" in message for message in logged)

# %% [markdown]
# 解决办法是改用朴素的（“eager”）实现，它会显式计算 softmax 矩阵。可以在加载时选择（`from_pretrained` 里传 `attn_implementation="eager"`），也可以对已加载的模型调用 `set_attn_implementation` 切换，权重保持不变。logits 不会变；现在每层都有一个形状为 `(batch, heads, query, key)` 的张量，每一行之和为 1，也没有任何位置关注未来。

# %%
llm.set_attn_implementation("eager")
eager_out = backbone(input_ids=input_ids, output_attentions=True)
llm.set_attn_implementation("sdpa")

attentions = eager_out.attentions
print(len(attentions), "tensors of shape", tuple(attentions[0].shape))
assert_close(eager_out.logits, reference.logits)
assert len(attentions) == config.num_hidden_layers
assert attentions[0].shape == (1, config.num_attention_heads, n, n)
assert_close(attentions[0].sum(-1), torch.ones(1, config.num_attention_heads, n))
assert torch.all(attentions[0][0, 0].triu(diagonal=1) == 0)
assert config._attn_implementation == "sdpa"

# %% [markdown]
# 单个注意力头的热图呈现出一个三角形：每个查询行把权重分配给它自己和它之前的键。微型副本的权重是随机的，所以不必从权重的具体分布里解读出什么含义。

# %%
fig, ax = plt.subplots(figsize=(5.5, 4.8))
image = ax.imshow(attentions[0][0, 0], cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(n), tokens, rotation=45, ha="right", fontsize=8)
ax.set_yticks(range(n), tokens, fontsize=8)
ax.set_xlabel(TEXT["attn_x"])
ax.set_ylabel(TEXT["attn_y"])
ax.set_title(TEXT["attn_title"], fontsize=10)
fig.colorbar(image, ax=ax, fraction=0.046)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## `return_dict` 与 `CausalLMOutputWithPast`
#
# 返回的是一个 `CausalLMOutputWithPast`：一个有五个字段的 dataclass——`loss`、`logits`、缓存、`hidden_states`、`attentions`——同时它还可以像有序字典、像由已设置字段组成的元组那样使用。值为 `None` 的字段不会出现在 `keys()` 里，也不参与下标索引，所以有损失时 `output[0]` 是损失，没有时则是 logits。

# %%
from transformers.modeling_outputs import CausalLMOutputWithPast

fields = list(CausalLMOutputWithPast.__dataclass_fields__)
print(type(output).__name__, fields, "set:", list(output.keys()))
assert isinstance(output, CausalLMOutputWithPast)
assert fields == ["loss", "logits", CACHE_NAME, "hidden_states", "attentions"]
assert list(output.keys()) == ["loss", "logits"]
assert output[0] is output.loss and output[1] is output.logits and reference[0] is reference.logits

# %% [markdown]
# `return_dict=False` 则直接返回普通元组（很老的代码期望的就是这种形式）：

# %%
as_tuple = backbone(input_ids=input_ids, labels=labels, return_dict=False)
print(type(as_tuple).__name__, len(as_tuple))
assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
assert_close(as_tuple[0], output.loss)
assert_close(as_tuple[1], output.logits)

# %% [markdown]
# ## 动手试试：所有模型家族
#
# 上面这些恒等关系对每个家族的骨干网络都成立。`check_family` 加载一个骨干网络，检查嵌入查表、`inputs_embeds`、手算损失、增量解码以及隐藏状态的个数，然后打印一行结果。在 JupyterLab 里可以从下拉菜单选择家族；作为脚本运行时，它只检查第一个。无论哪种方式，这个单元格随后都会检查其余四个。

# %%
from vla_backbone.notebook import explore


def check_family(backbone_id):
    family_backbone, family_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer(backbone_id)
    ids = family_tokenizer([PROMPT], return_tensors="pt").input_ids
    table = family_backbone.llm.get_input_embeddings().weight
    assert_close(family_backbone.embed_input_ids(ids), table[ids])

    targets = ids.clone()
    targets[:, :5] = IGNORE_INDEX
    out = family_backbone(input_ids=ids, labels=targets, output_hidden_states=True)
    via_embeddings = family_backbone(input_ids=None, inputs_embeds=family_backbone.embed_input_ids(ids))
    assert_close(via_embeddings.logits, out.logits)
    flat = F.cross_entropy(out.logits[0, :-1], targets[0, 1:], ignore_index=IGNORE_INDEX)
    assert_close(flat, out.loss)

    first = family_backbone(input_ids=ids[:, :-1], use_cache=True)
    last = family_backbone(input_ids=ids[:, -1:], past_key_values=compat.output_cache(first), use_cache=True)
    assert_close(last.logits[0, -1], out.logits[0, -1])
    layers = family_backbone.llm.config.num_hidden_layers
    assert len(out.hidden_states) == layers + 1
    print(f"{backbone_id}: {type(family_backbone.llm).__name__}, {ids.shape[1]} tokens, {layers} layers, "
          f"{type(compat.output_cache(last)).__name__}, loss {out.loss.item():.3f} — all identities hold")
    return out.loss.item()


first_loss = explore(
    check_family,
    backbone_id=["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"],
)
assert abs(first_loss - output.loss.item()) < 1e-5
for other_id in ["mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]:
    check_family(other_id)

# %% [markdown]
# ## 小结
# - `embed_input_ids(ids)` 就是 `llm.get_input_embeddings()(ids)`，即按行查表 `weight[ids]`；把这些嵌入作为 `inputs_embeds` 传入，得到的 logits 与直接传 id 相同，VLM 正是这样加入图像 patch 的。两者都传（或都不传）会引发 `ValueError`。
# - Gemma 会把嵌入乘以 √`hidden_size`：transformers 5.4.0 以前，模型会缩放任何 `inputs_embeds`（投影后的 patch 也在内）；从 5.4.0 起只有嵌入模块做这件事。文本不受影响；以 5.4.0 为界，在一侧训练的投影器到了另一侧，就会差这个倍数。
# - `forward` 把十个参数原样传下去；`compat.forward_kwargs` 丢掉未设置的参数，并在 transformers 改了名的版本上把 `past_key_values` 换成 `cache`。读取缓存请用 `compat.output_cache`。
# - 右侧填充时真实位置不受影响（仅凭因果性就能保证，掩码修正的是填充位置的输出）。Llama 的 RoPE 位置只通过位置之差起作用。
# - 损失是 `logits[:, :-1]` 对 `labels[:, 1:]` 的交叉熵在非 `-100` 标签上的平均；被忽略的位置、`labels[:, 0]` 和最后一个位置的 logits 都不计入。
# - `use_cache=True` 返回的缓存每步增长一个位置，结果与完整前向传播一致；`output_hidden_states` 给出“层数 + 1”个张量，最后一个在最终归一化层之后；要拿到注意力权重需要 eager 注意力。
#
# ## 练习
# 1. 把两个“图像 patch”向量（`torch.randn(1, 2, backbone.embed_dim)`）拼接到嵌入中 BOS 之后，相应地扩展注意力掩码和标签（patch 的标签为 `-100`），然后运行 `forward`。检查 BOS 处的 logits 不变，并且损失等于你只在文本标签上手算的交叉熵。
# 2. 改成*左侧*填充（`tokenizer.padding_side = "left"`）。带上注意力掩码后，Llama 上真实位置的 logits 是否仍与不填充时一致？OPT 呢？结合你在 `position_ids` 一节看到的现象解释原因。
# 3. 写一个函数 `greedy_with_cache(backbone, ids, steps)`，遇到 EOS 时提前停止，并在两个模型家族上与 `llm.generate(..., max_new_tokens=steps)` 对照检查。
# 4. 把 batch 中某一行的最后五个标签设为 `-100`，手算这个两行 batch 的损失。它是两行各自损失的平均，还是所有被评分 token 的平均？用 `output.loss` 验证。
