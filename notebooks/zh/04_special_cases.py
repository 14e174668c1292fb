# %% [markdown]
# # 04 · 特殊情况：phi-2、Qwen、PAD token 与按 64 的倍数 resize
#
# Notebook 03 最后留下了两个故意通不过 BOS 检查的家族，以及放行它们的集合 `SPECIAL_CASES`。本 notebook 先看这两个家族用什么办法替代 BOS，再转向每个批次都离不开的另一个 token：PAD。Llama-2 和 Mistral 发布时没有 PAD，于是家族类会添加一个，并扩大嵌入矩阵——不是只加一行，而是一直补到下一个 64 的倍数。这就是为什么基于 Llama-2 的 OpenVLA checkpoint 的词表只有 32000 个 token，输出却有 32064 个 logit；这个数字经常有人来问（openvla issue #267）。
#
# **你将学到**
# - 分词器从不添加 BOS 时，phi-2 怎样得到 BOS（`<|endoftext|>` 同时身兼 BOS、EOS 和 UNK）；
# - 为什么 Qwen 不需要 BOS，也不需要新的 PAD，以及 `SPECIAL_CASES` 豁免了哪些 id；
# - 哪些家族会添加 PAD token、它拿到哪个 id，以及随之而来的嵌入矩阵行数（32000 + 1 -> 32064）；
# - 新增的行怎样初始化，为什么 PAD 这一行永远进不了损失，以及超出分词器范围的那些行是什么；
# - 在如今的 transformers 上，输入梯度钩子在 resize 之后依然保留（上游所用的 4.40 会丢失它）。

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
# ## 1. phi-2：BOS、EOS、UNK 共用一个 token，BOS 靠手写
#
# phi-2 的分词器只认识一个特殊 token：`<|endoftext|>`，并把它同时用作 BOS、EOS 和 UNK。要求添加特殊 token 时，它什么也不加，所以对 notebook 03 的探测文本，两次编码的结果完全相同。

# %%
import torch
from vla_backbone.registry import get_llm_backbone_and_tokenizer

phi, phi_tok = get_llm_backbone_and_tokenizer("phi-2-3b")
print("bos:", phi_tok.bos_token, phi_tok.bos_token_id, " eos:", phi_tok.eos_token, phi_tok.eos_token_id,
      " unk:", phi_tok.unk_token)
print(phi_tok("Test 123").input_ids, phi_tok("Test 123", add_special_tokens=False).input_ids)

# %%
assert phi_tok.bos_token == phi_tok.eos_token == phi_tok.unk_token == "<|endoftext|>"
assert phi_tok.bos_token_id == phi_tok.eos_token_id == 0
assert phi_tok("Test 123").input_ids == phi_tok("Test 123", add_special_tokens=False).input_ids

# %% [markdown]
# 因此 `PhiPromptBuilder` 自己在第一轮 human 消息前面写上 `<|endoftext|>`，并且在生成最终提示词时保留它（其他构造器则相反，会去掉开头的 `<s>`，因为它们的分词器自己会加）。分词器会把写进文本的这段字符重新识别为特殊 token，所以位置 0 上终究还是 BOS 的 id。

# %%
from vla_backbone.prompting import PhiPromptBuilder, openvla_action_prompt

builder = PhiPromptBuilder("openvla")
builder.add_turn("human", openvla_action_prompt("pick up the cup"))
phi_prompt = builder.get_prompt()
phi_ids = phi_tok(phi_prompt).input_ids
print(repr(phi_prompt))
print(phi_ids)

# %%
bos = phi_tok.bos_token_id
assert phi_prompt.startswith("<|endoftext|>Input: ")
assert phi_ids[0] == bos and phi_ids.count(bos) == 1

# %% [markdown]
# 模型回答之后，同一个 id 会第二次出现，这次是作为 EOS：gpt 轮次以 `\n<|endoftext|>` 结尾。同一个 id 扮演两个角色，只能靠位置来区分。

# %%
builder.add_turn("gpt", "1 2 3")
conversation_ids = phi_tok(builder.get_prompt()).input_ids
print(conversation_ids)
assert [i for i, t in enumerate(conversation_ids) if t == bos] == [0, len(conversation_ids) - 1]

# %% [markdown]
# BOS 检查本身会拒绝这个分词器；上面的骨干网络之所以照样能加载，是因为 `"phi-2-3b"` 在 `SPECIAL_CASES` 里，构造函数对它跳过了检查。

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error

assert "phi-2-3b" in SPECIAL_CASES
with expect_error(TokenizerBOSError, match="does not prepend BOS"):
    check_bos(phi_tok, "phi-2-3b")

# %% [markdown]
# 共用一个 token 还有一个后果：phi-2 的 PAD 必须是一个*新的* token（`<|pad|>`，见第 3 节）。常见的偷懒做法是令 PAD = EOS；如果代码把所有 id 等于 `pad_token_id` 的位置都从损失中屏蔽掉，那么真正的 EOS（对 phi-2 来说还有 BOS）也会一并被屏蔽，模型就永远学不会停下来。PAD 独立之后，被屏蔽的就只有填充部分：

# %%
padded = phi_tok([builder.get_prompt()], padding="max_length", max_length=len(conversation_ids) + 3,
                 return_tensors="pt").input_ids[0]
masked_with_own_pad = (padded == phi_tok.pad_token_id).nonzero().flatten().tolist()
masked_if_pad_were_eos = (padded == phi_tok.eos_token_id).nonzero().flatten().tolist()
print("pad =", phi_tok.pad_token, phi_tok.pad_token_id, "-> masked positions", masked_with_own_pad)
print("pad = eos would mask", masked_if_pad_were_eos)
assert phi_tok.pad_token == "<|pad|>" and phi_tok.pad_token_id != phi_tok.eos_token_id
assert masked_with_own_pad == [len(conversation_ids), len(conversation_ids) + 1, len(conversation_ids) + 2]
assert masked_if_pad_were_eos == [0, len(conversation_ids) - 1]

# %% [markdown]
# **动手试试：** 修改上面的指令或回答，然后重新运行；BOS 始终在位置 0，并且每条提示词里只出现一次。

# %% [markdown]
# ## 2. Qwen：根本没有 BOS token
#
# Qwen-2.5（由 MiniVLA 引入）没有 BOS token：`bos_token` 是 `None`。它的提示词使用 ChatML 标记 `<|im_start|>` 和 `<|im_end|>`，而 `<|endoftext|>` 既是 EOS，也早已是 PAD。每个标记都是单独一个 token。

# %%
qwen, qwen_tok = get_llm_backbone_and_tokenizer("qwen25-0_5b-pure")
print("bos:", qwen_tok.bos_token, qwen_tok.bos_token_id, " eos:", qwen_tok.eos_token, " pad:", qwen_tok.pad_token)
markers = {m: qwen_tok(m, add_special_tokens=False).input_ids for m in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}
print(markers)

# %%
assert qwen_tok.bos_token is None and qwen_tok.bos_token_id is None
assert all(ids == [qwen_tok.convert_tokens_to_ids(m)] for m, ids in markers.items())
assert qwen_tok.pad_token == qwen_tok.eos_token == "<|endoftext|>"

# %% [markdown]
# 每条 Qwen 提示词都以 `<|im_start|>` 开头，所以 VLM 拼接时留在图像前面的，在每个样本里都是同一个固定标记：BOS 检查要保护的正是这个性质，只不过这里不靠 BOS 也做到了。

# %%
from vla_backbone.prompting import QwenPromptBuilder

qwen_builder = QwenPromptBuilder("openvla")
qwen_builder.add_turn("human", openvla_action_prompt("pick up the cup"))
qwen_ids = qwen_tok(qwen_builder.get_prompt()).input_ids
print(qwen_tok.convert_ids_to_tokens(qwen_ids[:4]), "...")
assert qwen_ids[0] == qwen_tok.convert_tokens_to_ids("<|im_start|>")

# %% [markdown]
# 所以 `SPECIAL_CASES` 就是 phi-2 加上注册表中所有 Qwen-2.5 的 id，别无其他。

# %%
from vla_backbone.families import QWEN25_MODELS

print(sorted(SPECIAL_CASES))
assert SPECIAL_CASES == {"phi-2-3b"} | set(QWEN25_MODELS)

# %% [markdown]
# ## 3. PAD token 与按 64 的倍数 resize
#
# 批次在右侧用 `pad_token_id` 填充，所以每个骨干网络都需要一个 PAD token。下面是各 checkpoint 自带的分词器（这里直接从微型副本的文件加载，家族类还没有对它们做任何修改）：

# %%
from transformers import AutoTokenizer
from vla_backbone.registry import backbone_class, checkpoint_path

IDS = ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra", "opt-125m"]
shipped = {i: AutoTokenizer.from_pretrained(checkpoint_path(i)) for i in IDS}
for backbone_id, tokenizer in shipped.items():
    print(f"{backbone_id:22s} pad = {tokenizer.pad_token!s:15s} len = {len(tokenizer)}")

# %%
assert shipped["llama2-7b-pure"].pad_token is None and shipped["mistral-v0.1-7b-pure"].pad_token is None
assert shipped["phi-2-3b"].pad_token is None
assert shipped["qwen25-0_5b-pure"].pad_token == "<|endoftext|>" and shipped["opt-125m"].pad_token == "<pad>"
assert all(len(tokenizer) == 1024 for tokenizer in shipped.values())


# %% [markdown]
# 对 Llama-2 和 Mistral，家族类添加 `<PAD>`；对 phi-2，添加 `<|pad|>`。新 token 拿到下一个空闲的 id，也就是分词器原来的长度。随后家族类设置 `config.pad_token_id`，并调用 `resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)`。行数就是 token 数向上取整到 64 的倍数。写成函数是这样：

# %%
def embedding_rows(num_tokens: int, multiple: int = 64) -> int:
    """Rows after `resize_token_embeddings(num_tokens, pad_to_multiple_of=multiple)`."""
    return -(-num_tokens // multiple) * multiple


real_llama2_vocab = 32000
real_pad_id = real_llama2_vocab
print("real Llama-2: pad id", real_pad_id, "->", embedding_rows(real_llama2_vocab + 1), "rows")
print("tiny replica: pad id", 1024, "->", embedding_rows(1024 + 1), "rows")
assert embedding_rows(real_llama2_vocab + 1) == 32064
assert embedding_rows(1024 + 1) == 1088

# %% [markdown]
# 现在拿同一个函数去对照已加载的骨干网络。每个骨干网络列出：PAD token 及其 id、`config.pad_token_id`、分词器长度，以及输入嵌入和 LM head 的行数。

# %%
loaded = {"phi-2-3b": (phi, phi_tok), "qwen25-0_5b-pure": (qwen, qwen_tok)}
backbones = {i: loaded[i] if i in loaded else get_llm_backbone_and_tokenizer(i) for i in IDS}
print(f"{'backbone id':22s} {'pad token':14s} {'pad id':>6s} {'config':>6s} {'len(tok)':>8s} {'emb rows':>8s} "
      f"{'head rows':>9s}")
for backbone_id, (backbone, tokenizer) in backbones.items():
    llm = backbone.llm
    print(f"{backbone_id:22s} {tokenizer.pad_token:14s} {tokenizer.pad_token_id:6d} {llm.config.pad_token_id:6d} "
          f"{len(tokenizer):8d} {llm.get_input_embeddings().weight.shape[0]:8d} "
          f"{llm.get_output_embeddings().weight.shape[0]:9d}")

# %% [markdown]
# Llama-2、Mistral 和 phi-2 的 PAD id 都是 1024，行数都是 1088，正是 32000 -> 32064 的缩小版。OPT 保留自己的 `<pad>`（id 1），Qwen 保留 `<|endoftext|>`：什么都不加，1024 行仍是 1024 行，本来就是 64 的倍数。`qwen25-0_5b-extra` 添加了 256 个动作 token `<|extra_0|>` ... `<|extra_255|>`：1024 + 256 = 1280 行，同样是 64 的倍数，所以没有补齐行。所有情况下，行数都等于 `embedding_rows(len(tokenizer))`。

# %%
for backbone_id, (backbone, tokenizer) in backbones.items():
    rows = backbone.llm.get_input_embeddings().weight.shape[0]
    assert rows == backbone.llm.get_output_embeddings().weight.shape[0] == embedding_rows(len(tokenizer))
    assert rows % 64 == 0 and backbone.llm.config.pad_token_id == tokenizer.pad_token_id == backbone.pad_token_id
expected_pad = {"llama2-7b-pure": ("<PAD>", 1024), "mistral-v0.1-7b-pure": ("<PAD>", 1024),
                "phi-2-3b": ("<|pad|>", 1024), "qwen25-0_5b-pure": ("<|endoftext|>", 0),
                "qwen25-0_5b-extra": ("<|endoftext|>", 0), "opt-125m": ("<pad>", 1)}
assert {i: (t.pad_token, t.pad_token_id) for i, (_, t) in backbones.items()} == expected_pad
extra_tok = backbones["qwen25-0_5b-extra"][1]
assert len(extra_tok) == 1280
assert extra_tok("<|extra_0|><|extra_255|>", add_special_tokens=False).input_ids == [1024, 1279]

# %% [markdown]
# 用一张图把这件事再讲一遍：checkpoint 自带的词表、家族类新增的 token，以及只为凑够 64 的倍数而存在的那些行。

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"title": "Embedding rows after the family's resize", "shipped": "shipped vocabulary",
           "added": "added tokens (PAD, extra)", "padding": "rows up to a multiple of 64", "rows": "rows"},
    "zh": {"title": "各家族 resize 之后的嵌入矩阵行数", "shipped": "checkpoint 自带的词表",
           "added": "新增 token（PAD、extra）", "padding": "补齐到 64 倍数的行", "rows": "行数"},
}[LANG]
shipped_len = [len(shipped[i]) for i in IDS]
added = [len(backbones[i][1]) - len(shipped[i]) for i in IDS]
padding_rows = [backbones[i][0].llm.get_input_embeddings().weight.shape[0] - len(backbones[i][1]) for i in IDS]
fig, ax = plt.subplots(figsize=(8, 3))
ax.barh(IDS, shipped_len, color="#1f77b4", label=TEXT["shipped"])
ax.barh(IDS, added, left=shipped_len, color="#2ca02c", label=TEXT["added"])
ax.barh(IDS, padding_rows, left=[s + a for s, a in zip(shipped_len, added)], color="#ff7f0e", label=TEXT["padding"])
totals = [v + a + p for v, a, p in zip(shipped_len, added, padding_rows)]
for row, (v, a, p) in enumerate(zip(shipped_len, added, padding_rows)):
    ax.text(totals[row] + 4, row, f"{v} + {a} + {p} = {totals[row]}", va="center", fontsize=8)
ax.set_xlim(900, 1420)
ax.invert_yaxis()
ax.set_xlabel(TEXT["rows"])
ax.set_title(TEXT["title"])
ax.legend(loc="upper right", fontsize=8)
plt.show()
assert padding_rows == [63, 63, 63, 0, 0, 0] and added == [1, 1, 1, 0, 256, 0]
assert totals == [1088, 1088, 1088, 1024, 1280, 1024]

# %% [markdown]
# ### 为什么是 64 的倍数？
#
# 嵌入矩阵的形状也决定了 LM head 那次矩阵乘法的形状，而这次乘法要在每个批次的每个位置上执行。GPU 的矩阵乘法内核（fp16/bf16 下的 tensor core）按分块（tile）计算，矩阵维度是分块大小的整数倍时才能跑满速度；像 32001 这样的奇数会在最后留下一个不完整的分块，还可能让计算库退回到更慢的内核。向上取整到 64，词表这一维就成了整齐的倍数。nanoGPT 对 GPT-2 的词表也是这么做的：50257 -> 50304。这是 GPU 上的效应，在这台 CPU 上测量说明不了什么，所以我们只算它的代价：32064 行里有 63 行是补齐行，约占嵌入参数的 0.2%（Llama-2-7B 的隐藏维度为 4096）。

# %%
llama2_hidden = 4096
padding_rows_real = embedding_rows(32001) - 32001
print(f"{padding_rows_real} padding rows, {2 * padding_rows_real * llama2_hidden:,} parameters in embedding + "
      f"LM head, {padding_rows_real / 32064:.2%} of the rows")
assert embedding_rows(50257) == 50304
assert padding_rows_real == 63 and padding_rows_real / 32064 < 0.002

# %% [markdown]
# ### 与库的实现对照
#
# 我们的函数是 `resize_token_embeddings` 的一个模型；下面直接调用库本身：在一份全新的 Llama 微型副本上，要求 32001 个 token，并像这个包一样传入 `mean_resizing=False`（见第 4 节）。同一次调用还能说明输入梯度钩子会保留下来：我们先像骨干网络的构造函数那样调用 `enable_input_require_grads()` 注册钩子，resize 之后再检查一次。

# %%
from transformers import LlamaForCausalLM
from vla_backbone import compat

fresh = LlamaForCausalLM.from_pretrained(checkpoint_path("llama2-7b-pure"))
shipped_rows = fresh.get_input_embeddings().weight.detach().clone()
fresh.enable_input_require_grads()
module_before, hook_before = fresh.get_input_embeddings(), compat.has_input_grad_hook(fresh)
fresh.resize_token_embeddings(32001, pad_to_multiple_of=64, mean_resizing=False)
module_after, hook_after = fresh.get_input_embeddings(), compat.has_input_grad_hook(fresh)
print("rows:", tuple(module_after.weight.shape), "head:", tuple(fresh.get_output_embeddings().weight.shape),
      "config.vocab_size:", fresh.config.vocab_size)
print("input-grad hook before:", hook_before, " after:", hook_after, " same module:", module_before is module_after)

# %% [markdown]
# 两个矩阵都是 32064 行，钩子也还在。在 transformers 4.57 和 5.x 上，resize 会把新的权重复制进*原有的*嵌入模块，所以注册在该模块上的钩子得以保留。而在上游 OpenVLA 锁定的 4.40 版本上，resize 会换上一个新模块，钩子随之丢失（这是上游已知的行为；本套 notebook 没有安装 4.40，所以无法在这里演示）。钩子带来的好处是：即使所有权重都被冻结，嵌入层的输出仍然需要梯度。

# %%
assert module_after.weight.shape[0] == fresh.get_output_embeddings().weight.shape[0] == fresh.config.vocab_size == 32064
assert hook_before and hook_after and module_before is module_after
fresh.requires_grad_(False)
assert fresh.get_input_embeddings()(torch.tensor([[1, 2, 3]])).requires_grad
del fresh, module_before, module_after

# %% [markdown]
# 上面那些骨干网络也经历了同样的顺序（先注册钩子，再在家族类的构造函数中 resize），它们的钩子都还在：

# %%
assert all(compat.has_input_grad_hook(backbone.llm) for backbone, _ in backbones.values())

# %% [markdown]
# ## 4. 新增的行里是什么
#
# 以 Llama-2 微型副本为例：第 0-1023 行来自 checkpoint，第 1024 行是 `<PAD>`，第 1025-1087 行是补齐行。旧的行被原样复制。新行使用模型的常规初始化：均值为 0、标准差为 `config.initializer_range`（0.02）的正态分布——这正是 transformers 4.40（OpenVLA 和 MiniVLA 训练时所用的版本）的做法。较新的 transformers 默认改用 `mean_resizing=True`；这个包传入 `mean_resizing=False` 以保持上游的行为，并固定随机数种子，让每次加载得到的新行都完全相同。

# %%
llama, llama_tok = backbones["llama2-7b-pure"]
new_matrix = llama.llm.get_input_embeddings().weight.detach()
new_rows = new_matrix[1024:]
print(f"new rows: mean {new_rows.mean():.5f}, std {new_rows.std():.4f}; "
      f"initializer_range = {llama.llm.config.initializer_range}")
reloaded_llama, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure")

# %%
torch.testing.assert_close(new_matrix[:1024], shipped_rows)
assert abs(new_rows.mean()) < 0.002 and abs(new_rows.std() - llama.llm.config.initializer_range) < 0.002
torch.testing.assert_close(reloaded_llama.llm.get_input_embeddings().weight, llama.llm.get_input_embeddings().weight,
                           rtol=0, atol=0)
del reloaded_llama

# %% [markdown]
# 作为对比，在一份全新的副本上看看 transformers 自己的默认做法。`mean_resizing=True` 从一个以旧行均值为中心的正态分布中采样新行，协方差是旧行协方差乘以 1e-9，所以实际上每个新行*就是*平均嵌入（transformers 会打印一条相关提示）。

# %%
from vla_backbone.notebook import transformers_log

mean_resized = LlamaForCausalLM.from_pretrained(checkpoint_path("llama2-7b-pure"))
with transformers_log() as note:
    mean_resized.resize_token_embeddings(1025, pad_to_multiple_of=64, mean_resizing=True)
print("transformers log:", note)
old_mean = shipped_rows.mean(dim=0)
mean_rows = mean_resized.get_input_embeddings().weight.detach()[1024:]
print("old rows: mean distance from their mean", f"{(shipped_rows - old_mean).norm(dim=1).mean():.4f}")
print("mean_resizing rows: max distance       ", f"{(mean_rows - old_mean).norm(dim=1).max():.2e}")
torch.testing.assert_close(mean_rows, old_mean.expand(64, -1), rtol=0, atol=1e-4)
del mean_resized

# %% [markdown]
# 第 1025-1087 行不属于任何 token：分词器只有 1025 个条目，永远不会产生这些 id，它们解码出来也是空的。但 LM head 里仍然有这些行，所以模型会为其中每一行输出一个 logit。

# %%
print("len(tokenizer):", len(llama_tok), " largest id in the vocabulary:", max(llama_tok.get_vocab().values()))
print("id 1050 ->", llama_tok.convert_ids_to_tokens(1050), repr(llama_tok.decode([1050])))
assert max(llama_tok.get_vocab().values()) == len(llama_tok) - 1 == 1024
assert llama_tok.convert_ids_to_tokens(1050) is None and llama_tok.decode([1050]) == ""

# %% [markdown]
# ### PAD 这一行与损失
#
# 在填充过的批次里，填充位置的标签是 -100，注意力掩码又让其他所有位置都看不到填充部分。因此 PAD 的*输入*嵌入行里放什么都无所谓：损失纹丝不动，这一行也得不到梯度。*输出*一侧则不同：LM head 的每一行，包括 PAD 行和那些未使用的行，都会在每个位置上产生一个 logit，并出现在 softmax 的分母里。由于这些 id 从来不是标签，损失对它们 logit 的梯度与它们的概率（为正）成正比，所以训练只会把它们往下压。

# %%
texts = ["In: pick up the cup\nOut: 1 2 3</s>", "In: open the drawer\nOut:"]
batch = llama_tok(texts, padding=True, return_tensors="pt")
labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
print(batch.input_ids)


def loss_and_logits():
    out = llama(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
    return out.loss, out.logits


embeddings = llama.llm.get_input_embeddings().weight
loss_before, _ = loss_and_logits()
with torch.no_grad():
    saved_pad_row = embeddings[llama_tok.pad_token_id].clone()
    embeddings[llama_tok.pad_token_id] += 100.0
loss_changed_pad, _ = loss_and_logits()
with torch.no_grad():
    embeddings[llama_tok.pad_token_id] = saved_pad_row
print(f"loss {loss_before.item():.6f}, with the PAD row moved by 100: {loss_changed_pad.item():.6f}")

# %%
assert (batch.input_ids == llama_tok.pad_token_id).sum() > 0
torch.testing.assert_close(loss_changed_pad, loss_before, rtol=0, atol=0)

llama.llm.zero_grad(set_to_none=True)
loss, logits = loss_and_logits()
logits.retain_grad()
loss.backward()
input_grad = embeddings.grad
head_grad = llama.llm.get_output_embeddings().weight.grad
print("input-embedding grad, rows >= 1024:", input_grad[1024:].abs().max().item())
print("LM-head grad norm, PAD row:", f"{head_grad[1024].norm():.2e}", " unused rows:", f"{head_grad[1025:].norm():.2e}")
assert input_grad[1024:].abs().max() == 0 and input_grad[:1024].abs().max() > 0
assert head_grad[1024].norm() > 0 and head_grad[1025:].norm() > 0
assert (logits.grad[..., 1024:] >= 0).all() and (logits.grad[..., 1024:] > 0).any()
llama.llm.zero_grad(set_to_none=True)

# %% [markdown]
# **动手试试：** 把 PAD 行挪动别的幅度，或者修改 `texts`，然后重新运行：只要填充位置的标签是 -100，损失就不会变。再把某个填充位置的标签改成 PAD 的 id（1024），看看损失如何变化。

# %% [markdown]
# ## 动手试试
#
# 选一个词表大小和一个倍数；单元格会打印 `resize_token_embeddings` 会给出的行数，以及其中有多少是补齐行。试试带 PAD 的 Llama-2（32001）、GPT-2（50257），或者 `-extra` 副本（1280）配上 8 或 128 的倍数。

# %%
from vla_backbone.notebook import explore


def resize_report(num_tokens: int, multiple: int) -> int:
    rows = embedding_rows(num_tokens, multiple)
    print(f"{num_tokens} tokens, multiple of {multiple}: {rows} rows, {rows - num_tokens} padding rows")
    return rows


first = explore(resize_report, num_tokens=[32001, 32000, 50257, 1025, 1280], multiple=[64, 8, 128])
assert first == 32064

# %% [markdown]
# ## 小结
# - phi-2：`<|endoftext|>` 同时是 BOS、EOS 和 UNK，分词器不添加 BOS，所以 `PhiPromptBuilder` 在第一轮 human 消息开头手写它：正好一个 BOS，位于位置 0。它的 PAD 是新增的 `<|pad|>`，因此屏蔽填充时不会把 EOS 也屏蔽掉。
# - Qwen 没有 BOS（`bos_token_id` 为 `None`）；提示词以 `<|im_start|>` 开头，`<|endoftext|>` 早已是 PAD。`SPECIAL_CASES` = phi-2 + 所有 Qwen-2.5 的 id。
# - Llama-2 和 Mistral 得到 `<PAD>`（id = 原词表大小），phi-2 得到 `<|pad|>`；OPT 和 Qwen 保留自己的 PAD。嵌入矩阵扩大到 64 的倍数：真实的 Llama-2 是 32000 + 1 -> 32064，微型副本是 1024 + 1 -> 1088；`-extra` 是 1024 + 256 = 1280。
# - 新行使用模型常规的（固定种子的）初始化，与 transformers 4.40 一致；较新 transformers 的 `mean_resizing` 则会把它们放在平均嵌入上。PAD 的输入行永远进不了损失；PAD 行和未使用的 LM head 行只会被往下压。
# - 在 transformers 4.57 和 5.x 上，输入梯度钩子在 resize 后依然保留（同一个模块）；在 4.40 上则不会。
#
# ## 练习
# 1. 给 Llama-2 加一个选项，像 `qwen25-0_5b-extra` 那样再添加 256 个动作 token。真实的 7B 模型会有多少行（用 `embedding_rows` 算）？其中多少是补齐行？
# 2. 用*左侧*填充（`padding_side="left"`）重做第 4 节的损失实验。损失还会忽略 PAD 行吗？现在标签需要屏蔽哪些位置？
# 3. 分别用 `mean_resizing=True` 和 `False` 对全新的 Llama 副本做 resize，然后比较一个未训练的新行的 logit 与旧行的平均 logit。基于均值的初始化为什么可能有助于微调的起步？这个包为什么仍然保留 4.40 的行为？
# 4. 在 GPU 上，用 bf16 分别对 V = 32000、32001 和 32064 测量 LM head 的矩阵乘法 `(4096 tokens x 4096) @ (4096 x V)` 的耗时（使用 `vla_backbone.measure.median_seconds` 和 `torch.cuda.synchronize()`）。32001 是否更慢？
