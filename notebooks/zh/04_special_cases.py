# %% [markdown]
# # 04 · 特殊情况：phi-2、Qwen、PAD token 与按 64 的倍数 resize
#
# notebook 03 的结尾有两个家族故意通不过 BOS 检查，还有一个集合 `SPECIAL_CASES` 放它们过关。本 notebook 先看这两个家族是怎么补上 BOS 的，再转向每个 batch 都离不开的另一个 token：PAD。Llama-2 和 Mistral 发布时没有 PAD，所以由家族代码添加；之后每个家族都会把嵌入矩阵 resize 成“分词器长度向上取整到 64 的倍数”那么多行。对 Llama-2 来说，这会把 32000 行*扩大*到 32064 行——这就是为什么 OpenVLA 的 checkpoint 词表只有 32000 个词，却输出 32064 个 logits，这个数字经常有人问起（openvla issue #267）。同一条规则却会让 phi-2 和 Qwen 的矩阵*缩小*，因为它们的 checkpoint 里行数比分词器的 token 数还多。下面所有内容都基于各家族真实的分词器文件和 Hub 配置里的行数，所以每个 id、每个行数都是真实的。
#
# **你将学到**
# - phi-2 如何得到一个它的分词器从不添加的 BOS（`<|endoftext|>`，id 50256，同时充当 BOS、EOS 和 UNK）；
# - 为什么 Qwen 既不需要 BOS，也不需要新的 PAD，以及 `SPECIAL_CASES` 豁免了哪些 id；
# - 哪些家族会添加 PAD token、它拿到哪个 id，以及随之而来的行数：Llama-2 和 Mistral 是 32000 -> 32064，OPT 是 50272 -> 50304（变大）；phi-2 是 51200 -> 50304，Qwen 是 151936 -> 151680（变小）；`-extra` 的 256 个动作 token 则落在 Qwen checkpoint 原本就有的行上；
# - 哪些行被保留、哪些行是新的以及如何初始化、哪些行被删去；为什么 PAD 行永远进不了损失；
# - 在如今的 transformers 上，输入梯度钩子能挺过 resize（上游用的 4.40 上会丢失）。

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
# ## 1. phi-2：BOS、EOS、UNK 共用一个 token，BOS 由模板手写
#
# phi-2 的分词器（GPT-2 的字节级 BPE，外加 38 个空白符 token）只有一个特殊 token：`<|endoftext|>`，id 50256，它同时充当 BOS、EOS 和 UNK。要求添加特殊 token 时它什么也不加，所以 notebook 03 那个探测文本的两种编码完全相同：`[14402, 17031]`。

# %%
import torch

from vla_backbone.registry import get_llm_backbone_and_tokenizer

phi, phi_tok = get_llm_backbone_and_tokenizer("phi-2-3b")
print("bos:", phi_tok.bos_token, phi_tok.bos_token_id, " eos:", phi_tok.eos_token, phi_tok.eos_token_id,
      " unk:", phi_tok.unk_token, phi_tok.unk_token_id)
print(phi_tok("Test 123").input_ids, phi_tok("Test 123", add_special_tokens=False).input_ids)

# %%
assert phi_tok.bos_token == phi_tok.eos_token == phi_tok.unk_token == "<|endoftext|>"
assert phi_tok.bos_token_id == phi_tok.eos_token_id == phi_tok.unk_token_id == 50256
assert phi_tok("Test 123").input_ids == phi_tok("Test 123", add_special_tokens=False).input_ids == [14402, 17031]

# %% [markdown]
# 所以 `PhiPromptBuilder` 自己在第一个 human 轮次前面写上 `<|endoftext|>`，并且在生成最终提示词时保留它（其他构造器则会去掉开头的 `<s>`，因为它们的分词器自己会加）。分词器会把写出来的这段文本读回成那个特殊 token，所以位置 0 上终究还是 id 50256。

# %%
from vla_backbone.prompting import PhiPromptBuilder, openvla_action_prompt

instruction = "pick up the cup"
builder = PhiPromptBuilder("openvla")
builder.add_turn("human", openvla_action_prompt(instruction))
phi_prompt = builder.get_prompt()
phi_ids = phi_tok(phi_prompt).input_ids
print(repr(phi_prompt))
print(phi_ids)

# %%
bos = phi_tok.bos_token_id
assert phi_prompt.startswith("<|endoftext|>Input: ")
assert phi_ids[0] == bos == 50256 and phi_ids.count(bos) == 1

# %% [markdown]
# 模型回答之后，同一个 id 会第二次出现，这次是作为 EOS：gpt 轮次以 `\n<|endoftext|>` 结尾。同一个 id 扮演两个角色，只能靠位置来区分。

# %%
# A fresh builder, so that this cell can run again after you change the answer.
builder = PhiPromptBuilder("openvla")
builder.add_turn("human", openvla_action_prompt(instruction))
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
# 共用一个 token 还有一个后果：phi-2 的 PAD 必须是一个*新的* token（`<|pad|>`，id 50295，紧跟在 50257-50294 这 38 个空白符 token 之后；见第 3 节）。常见的偷懒做法是让 PAD = EOS，而如果代码把所有 id 等于 `pad_token_id` 的位置都从损失里屏蔽掉，真正的 EOS（对 phi-2 来说还有 BOS）也会一起被屏蔽，模型就永远学不会停下来。PAD 是独立的 token 时，被屏蔽的就只有填充：

# %%
padded = phi_tok([builder.get_prompt()], padding="max_length", max_length=len(conversation_ids) + 3,
                 return_tensors="pt").input_ids[0]
masked_with_own_pad = (padded == phi_tok.pad_token_id).nonzero().flatten().tolist()
masked_if_pad_were_eos = (padded == phi_tok.eos_token_id).nonzero().flatten().tolist()
print("pad =", phi_tok.pad_token, phi_tok.pad_token_id, "-> masked positions", masked_with_own_pad)
print("pad = eos would mask", masked_if_pad_were_eos)
assert phi_tok.pad_token == "<|pad|>" and phi_tok.pad_token_id == 50295 != phi_tok.eos_token_id
assert phi_tok.convert_ids_to_tokens([50257, 50294]) == [" " * 31, "\t\t"]
assert masked_with_own_pad == [len(conversation_ids), len(conversation_ids) + 1, len(conversation_ids) + 2]
assert masked_if_pad_were_eos == [0, len(conversation_ids) - 1]

# %% [markdown]
# **动手试试：** 修改上面的指令或回答，然后重新运行；BOS 始终在位置 0，并且每条提示词里只出现一次。

# %% [markdown]
# ## 2. Qwen：根本没有 BOS token
#
# Qwen-2.5（由 MiniVLA 引入）没有 BOS token：`bos_token` 是 `None`。它的提示词使用 ChatML 标记 `<|im_start|>`（151644）和 `<|im_end|>`（151645），`<|endoftext|>`（151643）则充当 EOS，并且本来就是 PAD。每个标记都是单独一个 token。

# %%
qwen, qwen_tok = get_llm_backbone_and_tokenizer("qwen25-0_5b-pure")
print("bos:", qwen_tok.bos_token, qwen_tok.bos_token_id, " eos:", qwen_tok.eos_token, " pad:", qwen_tok.pad_token)
markers = {m: qwen_tok(m, add_special_tokens=False).input_ids for m in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}
print(markers)

# %%
assert qwen_tok.bos_token is None and qwen_tok.bos_token_id is None
assert markers == {"<|im_start|>": [151644], "<|im_end|>": [151645], "<|endoftext|>": [151643]}
assert qwen_tok.pad_token == qwen_tok.eos_token == "<|endoftext|>"
assert qwen_tok("Test 123").input_ids == [2271, 220, 16, 17, 18]

# %% [markdown]
# 每个 Qwen 提示词都以 `<|im_start|>` 开头（系统提示词块排在最前面），所以 VLM 拼接时留在图像前面的 token，在每个样本里都是同一个固定的标记：BOS 检查要保护的正是这个性质，只不过这里不靠 BOS 也做到了。

# %%
from vla_backbone.prompting import QwenPromptBuilder

qwen_builder = QwenPromptBuilder("openvla")
qwen_builder.add_turn("human", openvla_action_prompt("pick up the cup"))
qwen_ids = qwen_tok(qwen_builder.get_prompt()).input_ids
print(qwen_tok.convert_ids_to_tokens(qwen_ids[:4]), "...")
assert qwen_ids[0] == qwen_tok.convert_tokens_to_ids("<|im_start|>") == 151644

# %% [markdown]
# 所以 `SPECIAL_CASES` 就是 phi-2 加上注册表中所有 Qwen-2.5 的 id，别无其他。

# %%
from vla_backbone.families import QWEN25_MODELS

print(sorted(SPECIAL_CASES))
assert SPECIAL_CASES == {"phi-2-3b"} | set(QWEN25_MODELS) == {
    "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra", "qwen25-1_5b-pure", "qwen25-3b-pure", "qwen25-7b-pure"}

# %% [markdown]
# ## 3. PAD token 与按 64 的倍数 resize
#
# batch 用 `pad_token_id` 在右侧填充，所以每个骨干网络都需要一个 PAD token。先看各个 checkpoint 自带的分词器和配置，直接从微型副本的文件加载，还没经过家族代码的任何改动：PAD token、`len(tokenizer)`（所有 token，包括后加的）、`vocab_size`（只算基础词表），以及 Hub 配置里声明的嵌入矩阵行数。

# %%
from transformers import AutoConfig

from vla_backbone.registry import backbone_class, checkpoint_path

IDS = ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra", "opt-125m"]
shipped = {}
for i in IDS:
    # `-extra` reads the same files as `-pure` (it adds its tokens later): load them once.
    same_files = [j for j in shipped if checkpoint_path(j) == checkpoint_path(i)]
    shipped[i] = shipped[same_files[0]] if same_files else backbone_class(i).load_tokenizer(checkpoint_path(i))
hub_rows = {i: AutoConfig.from_pretrained(checkpoint_path(i)).vocab_size for i in IDS}
for backbone_id, tokenizer in shipped.items():
    print(f"{backbone_id:22s} pad = {tokenizer.pad_token!s:15s} len = {len(tokenizer):6d}  "
          f"vocab_size = {tokenizer.vocab_size:6d}  hub rows = {hub_rows[backbone_id]}")

# %%
assert [shipped[i].pad_token for i in IDS] == [None, None, None, "<|endoftext|>", "<|endoftext|>", "<pad>"]
assert [len(shipped[i]) for i in IDS] == [32000, 32000, 50295, 151665, 151665, 50265]
assert [shipped[i].vocab_size for i in IDS] == [32000, 32000, 50257, 151643, 151643, 50265]
assert [hub_rows[i] for i in IDS] == [32000, 32000, 51200, 151936, 151936, 50272]
assert hub_rows["phi-2-3b"] % 64 == hub_rows["qwen25-0_5b-pure"] % 64 == 0
assert hub_rows["opt-125m"] % 8 == 0 and hub_rows["opt-125m"] % 64 != 0


# %% [markdown]
# 可以看出有两类 checkpoint。Llama-2 和 Mistral 每个 token 正好一行。phi-2、Qwen 和 OPT 保存时的行数却*多于*分词器的 token 数（50295 个 token 对应 51200 行，151665 对应 151936，50265 对应 50272）：它们的作者早已把矩阵向上取整过了（51200 和 151936 是 64 的倍数，50272 是 8 的倍数）。
#
# Llama-2 和 Mistral 由家族代码添加 `<PAD>`，phi-2 添加 `<|pad|>`。新 token 拿到下一个空闲 id，也就是分词器原来的长度。`-extra` 则添加 256 个动作 token `<|extra_0|>` ... `<|extra_255|>`。然后家族代码设置 `config.pad_token_id`，并调用 `resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)`。新的行数就是 token 数向上取整到 64 的倍数，*不管 checkpoint 原来有多少行*：resize 既可能让矩阵变大，也可能让它变小。写成函数就是：

# %%
def embedding_rows(num_tokens: int, multiple: int = 64) -> int:
    """Rows after `resize_token_embeddings(num_tokens, pad_to_multiple_of=multiple)`."""
    return -(-num_tokens // multiple) * multiple


for name, tokens in [("Llama-2 + <PAD>", 32000 + 1), ("phi-2 + <|pad|>", 50295 + 1), ("Qwen", 151665),
                     ("Qwen + 256 extra", 151665 + 256), ("OPT", 50265)]:
    print(f"{name:17s} {tokens:6d} tokens -> {embedding_rows(tokens)} rows")
assert [embedding_rows(n) for n in (32001, 50296, 151665, 151921, 50265)] == [32064, 50304, 151680, 151936, 50304]

# %% [markdown]
# 现在用加载好的骨干网络来对照这个函数。每一行依次是：PAD token 及其 id、`config.pad_token_id`、分词器长度、checkpoint 里的行数，以及家族 resize 之后输入嵌入和 LM head 的行数。

# %%
loaded = {"phi-2-3b": (phi, phi_tok), "qwen25-0_5b-pure": (qwen, qwen_tok)}
backbones = {i: loaded[i] if i in loaded else get_llm_backbone_and_tokenizer(i) for i in IDS}
print(f"{'backbone id':22s} {'pad token':14s} {'pad id':>6s} {'config':>6s} {'len(tok)':>8s} {'hub rows':>8s} "
      f"{'emb rows':>8s} {'head rows':>9s}")
for backbone_id, (backbone, tokenizer) in backbones.items():
    llm = backbone.llm
    print(f"{backbone_id:22s} {tokenizer.pad_token:14s} {tokenizer.pad_token_id:6d} {llm.config.pad_token_id:6d} "
          f"{len(tokenizer):8d} {hub_rows[backbone_id]:8d} {llm.get_input_embeddings().weight.shape[0]:8d} "
          f"{llm.get_output_embeddings().weight.shape[0]:9d}")

# %% [markdown]
# - Llama-2 和 Mistral 得到 `<PAD>` = 32000：共 32001 个 token，矩阵从 32000 行**变大**到 32064 行。
# - OPT 沿用自己的 `<pad>`（id 1），什么也不添加，可矩阵同样**变大**了，从 50272 到 50304：50265 个 token 向上取整是 50304，而它的 checkpoint 的 50272 只是 8 的倍数，不是 64 的倍数。
# - phi-2 得到 `<|pad|>` = 50295：共 50296 个 token，50304 行。checkpoint 原有 51200 行，所以矩阵**变小**了 896 行。
# - Qwen 沿用 `<|endoftext|>`（151643）作 PAD，什么也不添加：151665 个 token，151680 行，原来是 151936 行，**变小**了 256 行。
# - `qwen25-0_5b-extra` 添加了 256 个动作 token：151921 个 token，151936 行，与 checkpoint 的行数正好相同。动作 token `<|extra_0|>` ... `<|extra_255|>` 拿到的 id 是 151665-151920，这些行 checkpoint 里原本就有。
#
# 每种情况下，行数都等于 `embedding_rows(len(tokenizer))`，输入嵌入和 LM head 都是如此。

# %%
for backbone_id, (backbone, tokenizer) in backbones.items():
    rows = backbone.llm.get_input_embeddings().weight.shape[0]
    assert rows == backbone.llm.get_output_embeddings().weight.shape[0] == embedding_rows(len(tokenizer))
    assert rows % 64 == 0 and backbone.llm.config.pad_token_id == tokenizer.pad_token_id == backbone.pad_token_id
expected_pad = {"llama2-7b-pure": ("<PAD>", 32000), "mistral-v0.1-7b-pure": ("<PAD>", 32000),
                "phi-2-3b": ("<|pad|>", 50295), "qwen25-0_5b-pure": ("<|endoftext|>", 151643),
                "qwen25-0_5b-extra": ("<|endoftext|>", 151643), "opt-125m": ("<pad>", 1)}
assert {i: (t.pad_token, t.pad_token_id) for i, (_, t) in backbones.items()} == expected_pad
rows_after = {i: b.llm.get_input_embeddings().weight.shape[0] for i, (b, _) in backbones.items()}
assert list(rows_after.values()) == [32064, 32064, 50304, 151680, 151936, 50304]
assert [len(backbones[i][1]) for i in IDS] == [32001, 32001, 50296, 151665, 151921, 50265]
extra_tok = backbones["qwen25-0_5b-extra"][1]
assert extra_tok("<|extra_0|><|extra_255|>", add_special_tokens=False).input_ids == [151665, 151920]

# %% [markdown]
# 把同样的内容画成图：从 checkpoint 的行数到骨干网络的行数，每次 resize 增加了（右）或删去了（左）多少行。

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"title": "Embedding rows: checkpoint -> after the family's resize", "change": "rows added (+) or cut (-)",
           "grows": "grows", "shrinks": "shrinks", "same": "same count"},
    "zh": {"title": "嵌入矩阵行数：checkpoint -> 家族 resize 之后", "change": "增加 (+) 或删去 (-) 的行数",
           "grows": "变大", "shrinks": "变小", "same": "行数不变"},
}[LANG]
change = {i: rows_after[i] - hub_rows[i] for i in IDS}
kinds = {i: "grows" if change[i] > 0 else "shrinks" if change[i] < 0 else "same" for i in IDS}
COLORS = {"grows": "#2ca02c", "shrinks": "#d62728", "same": "#7f7f7f"}
fig, ax = plt.subplots(figsize=(8, 3))
ax.barh(IDS, [change[i] for i in IDS], color=[COLORS[kinds[i]] for i in IDS])
for row, backbone_id in enumerate(IDS):
    ax.text(-2350, row, f"{hub_rows[backbone_id]} -> {rows_after[backbone_id]} "
            f"({change[backbone_id]:+d}, {TEXT[kinds[backbone_id]]})", va="center", fontsize=8)
ax.axvline(0, color="black", linewidth=0.8)
ax.set_xlim(-2400, 200)
ax.invert_yaxis()
ax.set_xlabel(TEXT["change"])
ax.set_title(TEXT["title"])
plt.show()
assert [change[i] for i in IDS] == [64, 64, -896, -256, 0, 32]

# %% [markdown]
# ### 为什么是 64 的倍数？
#
# 嵌入矩阵的形状同时也是 LM head 矩阵乘法的形状，每个 batch 的每个位置都要算一遍。GPU 上的矩阵乘法 kernel（fp16/bf16 下的 tensor core）按分块（tile）计算，矩阵各维都是分块大小的整数倍时才能全速运行；像 32001 这样的零散尺寸会留下一个不完整的最后一块，还可能让库退回到更慢的 kernel。向上取整到 64，词表这一维就成了一个干净的倍数。nanoGPT 对 GPT-2 的词表也是这么做的：50257 -> 50304。这是 GPU 上的效应，在这台 CPU 上测量说明不了什么，所以我们只算它的代价：对 Llama-2 来说，32064 行里有 63 行填充，约占嵌入参数的 0.2%（Llama-2-7B 的隐藏维度是 4096）。

# %%
llama2_hidden = 4096
padding_rows_real = embedding_rows(32001) - 32001
print(f"{padding_rows_real} padding rows, {2 * padding_rows_real * llama2_hidden:,} parameters in embedding + "
      f"LM head, {padding_rows_real / 32064:.2%} of the rows")
assert embedding_rows(50257) == 50304
assert padding_rows_real == 63 and padding_rows_real / 32064 < 0.002

# %% [markdown]
# ### 库的行为与之一致
#
# 我们的函数只是 `resize_token_embeddings` 的一个模型；下面直接调用库本身：取一份新的 Llama-2 微型副本（32000 行，和骨干网络一样以 float32 加载），要求 32001 个 token，并像这个包一样传入 `mean_resizing=False`（见第 4 节）。同一次调用还能说明输入梯度钩子不会丢：我们先像骨干网络的构造函数那样用 `enable_input_require_grads()` 注册钩子，resize 之后再检查一次。

# %%
from transformers import LlamaForCausalLM

from vla_backbone import compat

fresh = LlamaForCausalLM.from_pretrained(checkpoint_path("llama2-7b-pure"), dtype=torch.float32)
rows_before = fresh.get_input_embeddings().weight.shape[0]
fresh.enable_input_require_grads()
module_before, hook_before = fresh.get_input_embeddings(), compat.has_input_grad_hook(fresh)
fresh.resize_token_embeddings(32001, pad_to_multiple_of=64, mean_resizing=False)
module_after, hook_after = fresh.get_input_embeddings(), compat.has_input_grad_hook(fresh)
print("rows:", rows_before, "->", tuple(module_after.weight.shape), "head:",
      tuple(fresh.get_output_embeddings().weight.shape), "config.vocab_size:", fresh.config.vocab_size)
print("input-grad hook before:", hook_before, " after:", hook_after, " same module:", module_before is module_after)

# %% [markdown]
# 两个矩阵都是 32064 行，钩子也还在。在 transformers 4.57 和 5.x 上，resize 会把新权重复制进*原有的*嵌入模块，所以注册在它上面的钩子得以保留。在上游 OpenVLA 固定使用的 4.40 上，resize 会装上一个新模块，钩子随之丢失（这是上游已知的行为；本套件没有安装 4.40，所以这里无法演示）。钩子的作用是：即使所有权重都被冻结，嵌入层的输出仍然需要梯度。

# %%
assert rows_before == 32000
assert module_after.weight.shape[0] == fresh.get_output_embeddings().weight.shape[0] == fresh.config.vocab_size == 32064
assert hook_before and hook_after and module_before is module_after
fresh.requires_grad_(False)
assert fresh.get_input_embeddings()(torch.tensor([[1, 2, 3]])).requires_grad

# %% [markdown]
# 上面那些骨干网络也经历了同样的顺序（先注册钩子，再在家族的构造函数里 resize），无论矩阵变大还是变小，钩子都还在：

# %%
assert all(compat.has_input_grad_hook(backbone.llm) for backbone, _ in backbones.values())

# %% [markdown]
# ## 4. 哪些行被保留，哪些行是新的，哪些行被删去
#
# checkpoint 自己的嵌入矩阵保存在它的 `model.safetensors` 里；我们直接读出来（以 float16 或 bfloat16 存储），与每个骨干网络的矩阵比较。resize 保留下来的行原样复制。
#
# - **Llama-2（变大）**：第 0-31999 行来自 checkpoint；第 32000 行是 `<PAD>`，第 32001-32063 行是填充，这两部分都是新的。
# - **phi-2（变小）**：第 0-50303 行来自 checkpoint，*包括*新 token `<|pad|>` 所在的那一行（50295）：checkpoint 里本来就有这个下标的行，所以什么都不用初始化。第 50304-51199 行被删去，输入嵌入、phi-2 独立的 LM head 以及它的 bias 都是如此。
# - **Qwen（变小）**：第 0-151679 行来自 checkpoint；第 151680-151935 行被删去。输入嵌入和输出嵌入是绑定的（共享同一个权重），所以这是同一个矩阵。
# - **`-extra`（行数不变）**：全部 151936 行都来自 checkpoint，256 个动作 token 所在的第 151665-151920 行也不例外：`-extra` 复用的是 checkpoint 原本就有的行。

# %%
from safetensors import safe_open


def checkpoint_tensor(backbone_id: str, name: str) -> torch.Tensor:
    """A tensor as stored in the replica's model.safetensors, in float32."""
    with safe_open(f"{checkpoint_path(backbone_id)}/model.safetensors", framework="pt") as weights:
        return weights.get_tensor(name).float()


def kept_rows(backbone_id: str, matrix: torch.Tensor, name: str = "model.embed_tokens.weight") -> int:
    """How many leading rows of `matrix` are exactly the checkpoint's."""
    stored = checkpoint_tensor(backbone_id, name)
    rows = min(len(stored), len(matrix))
    same = (matrix[:rows].detach() == stored[:rows]).reshape(rows, -1).all(dim=1)
    return rows if bool(same.all()) else int((~same).nonzero()[0])


embedding = {i: backbones[i][0].llm.get_input_embeddings().weight for i in IDS}
for backbone_id in ["llama2-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra"]:
    kept = kept_rows(backbone_id, embedding[backbone_id])
    print(f"{backbone_id:20s} checkpoint rows {hub_rows[backbone_id]:6d}, kept {kept:6d}, "
          f"new {rows_after[backbone_id] - kept:3d}, cut {hub_rows[backbone_id] - kept:3d}")

# %%
assert kept_rows("llama2-7b-pure", embedding["llama2-7b-pure"]) == 32000
assert kept_rows("phi-2-3b", embedding["phi-2-3b"]) == 50304 and phi_tok.pad_token_id < 50304
phi_head = phi.llm.get_output_embeddings()
assert kept_rows("phi-2-3b", phi_head.weight, "lm_head.weight") == 50304
torch.testing.assert_close(phi_head.bias.detach(), checkpoint_tensor("phi-2-3b", "lm_head.bias")[:50304], rtol=0, atol=0)
assert kept_rows("qwen25-0_5b-pure", embedding["qwen25-0_5b-pure"]) == 151680
assert kept_rows("qwen25-0_5b-extra", embedding["qwen25-0_5b-extra"]) == 151936
assert qwen.llm.get_output_embeddings().weight is embedding["qwen25-0_5b-pure"]

# %% [markdown]
# 只有让矩阵变大的 resize 才会创建新行。新行使用模型的常规初始化：均值为 0、标准差为 `config.initializer_range`（0.02）的正态分布，这正是 transformers 4.40（OpenVLA 和 MiniVLA 训练时用的版本）的做法。较新的 transformers 默认改用 `mean_resizing=True`；这个包传入 `mean_resizing=False` 以保持上游的行为，并固定随机数种子，让每次加载得到的新行都相同。下面是 Llama-2 的 64 个新行：

# %%
llama, llama_tok = backbones["llama2-7b-pure"]
new_rows = embedding["llama2-7b-pure"].detach()[32000:]
print(f"new rows: {len(new_rows)}, mean {new_rows.mean():.5f}, std {new_rows.std():.4f}; "
      f"initializer_range = {llama.llm.config.initializer_range}")
reloaded_llama, _ = get_llm_backbone_and_tokenizer("llama2-7b-pure")

# %%
import inspect
from transformers import PreTrainedModel

assert inspect.signature(PreTrainedModel.resize_token_embeddings).parameters["mean_resizing"].default is True
assert len(new_rows) == 64 and llama.llm.config.initializer_range == 0.02
assert abs(new_rows.mean()) < 0.002 and abs(new_rows.std() - llama.llm.config.initializer_range) < 0.002
torch.testing.assert_close(reloaded_llama.llm.get_input_embeddings().weight, llama.llm.get_input_embeddings().weight,
                           rtol=0, atol=0)

# %% [markdown]
# 作为对比，在一份全新的副本上看看 transformers 自己的默认做法。`mean_resizing=True` 从一个以旧行均值为中心的正态分布中采样新行，协方差是旧行协方差乘以 1e-9，所以实际上每个新行*就是*平均嵌入（transformers 会打印一条相关提示）。

# %%
shipped_rows = checkpoint_tensor("llama2-7b-pure", "model.embed_tokens.weight")
from vla_backbone.notebook import transformers_log

mean_resized = LlamaForCausalLM.from_pretrained(checkpoint_path("llama2-7b-pure"), dtype=torch.float32)
with transformers_log() as note:
    mean_resized.resize_token_embeddings(32001, pad_to_multiple_of=64, mean_resizing=True)
print("transformers log:", note)
assert any("multivariate normal" in message for message in note)
old_mean = shipped_rows.mean(dim=0)
mean_rows = mean_resized.get_input_embeddings().weight.detach()[32000:]
print("old rows: mean distance from their mean", f"{(shipped_rows - old_mean).norm(dim=1).mean():.4f}")
print("mean_resizing rows: max distance       ", f"{(mean_rows - old_mean).norm(dim=1).max():.2e}")
torch.testing.assert_close(mean_rows, old_mean.expand(64, -1), rtol=0, atol=1e-4)
del mean_resized

# %% [markdown]
# 第 32001-32063 行不属于任何 token：分词器只有 32001 个条目，永远不会产生这些 id，它们解码出来也是空的。但它们仍然存在于 LM head 中，所以模型会为每一行输出一个 logit。

# %%
print("len(tokenizer):", len(llama_tok), " largest id in the vocabulary:", max(llama_tok.get_vocab().values()))
print("id 32050 ->", llama_tok.convert_ids_to_tokens(32050), repr(llama_tok.decode([32050])))
assert max(llama_tok.get_vocab().values()) == len(llama_tok) - 1 == 32000
assert llama_tok.convert_ids_to_tokens(32050) is None and llama_tok.decode([32050]) == ""

# %% [markdown]
# ### PAD 行与损失
#
# 在填充后的 batch 里，填充位置的标签是 -100，注意力掩码也让其他位置看不到填充。所以*输入*嵌入里 PAD 那一行放什么都无所谓：损失不变，这一行也得不到梯度。*输出*一侧则不同。LM head 的每一行——包括 PAD 和那些不用的行——都会在每个位置产生一个 logit，并出现在 softmax 的分母里。由于这些 id 从来不是标签，损失对它们 logit 的梯度与它们（为正的）概率成正比，所以训练只会把它们往下压。只用两段短文本，logits 张量就不大：2 段文本 x 填充后的长度 x 32064 行。

# %%
texts = ["In: pick up the cup\nOut: 1 2 3</s>", "In: open the drawer\nOut:"]
batch = llama_tok(texts, padding=True, return_tensors="pt")
labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
print(batch.input_ids.shape, batch.input_ids)


def loss_and_logits():
    out = llama(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels)
    return out.loss, out.logits


pad_id = llama_tok.pad_token_id
embeddings = llama.llm.get_input_embeddings().weight
pad_shift = 100.0
loss_before, _ = loss_and_logits()
with torch.no_grad():
    saved_pad_row = embeddings[pad_id].clone()
    embeddings[pad_id] += pad_shift
loss_changed_pad, _ = loss_and_logits()
with torch.no_grad():
    embeddings[pad_id] = saved_pad_row
print(f"loss {loss_before.item():.6f}, with the PAD row moved by {pad_shift:g}: {loss_changed_pad.item():.6f}")

# %%
assert pad_id == 32000 and (batch.input_ids == pad_id).sum() > 0 and batch.input_ids.shape[0] == len(texts)
torch.testing.assert_close(loss_changed_pad, loss_before, rtol=0, atol=0)

llama.llm.zero_grad(set_to_none=True)
loss, logits = loss_and_logits()
logits.retain_grad()
loss.backward()
input_grad = embeddings.grad
head_grad = llama.llm.get_output_embeddings().weight.grad
print("input-embedding grad, rows >= 32000:", input_grad[32000:].abs().max().item())
print("LM-head grad norm, PAD row:", f"{head_grad[32000].norm():.2e}", " unused rows:", f"{head_grad[32001:].norm():.2e}")
assert input_grad[32000:].abs().max() == 0 and input_grad[:32000].abs().max() > 0
assert head_grad[32000].norm() > 0 and head_grad[32001:].norm() > 0
assert (logits.grad[..., 32000:] >= 0).all() and (logits.grad[..., 32000:] > 0).any()
llama.llm.zero_grad(set_to_none=True)

# %% [markdown]
# **动手试试：** 给 PAD 行换一个偏移量（`pad_shift`），或者修改 `texts`，然后重新运行：只要填充位置的标签是 -100，损失就纹丝不动。再把某个填充位置的标签改成 PAD 的 id（32000），看看损失怎么变；要选第一个填充位置之后的，因为第一个填充位置的标签是由最后一个真实 token 预测的，而它根本看不到 PAD 输入。

# %% [markdown]
# ## 动手试试
#
# 选一个 token 数和一个倍数；这个单元格会打印 `resize_token_embeddings` 会给出的行数，以及其中有多少行是填充。可选的 token 数是五个家族经过家族代码处理后的数目（加了 PAD 的 Llama-2、加了 PAD 的 phi-2、Qwen、加了 256 个动作 token 的 Qwen、OPT）；也试试 8 或 128 的倍数。

# %%
from vla_backbone.notebook import explore


def resize_report(num_tokens: int, multiple: int) -> int:
    rows = embedding_rows(num_tokens, multiple)
    print(f"{num_tokens} tokens, multiple of {multiple}: {rows} rows, {rows - num_tokens} padding rows")
    return rows


first = explore(resize_report, num_tokens=[32001, 50296, 151665, 151921, 50265], multiple=[64, 8, 128])
assert first == 32064

# %% [markdown]
# ## 小结
# - phi-2：`<|endoftext|>`（50256）同时是 BOS、EOS 和 UNK，分词器不添加 BOS，所以 `PhiPromptBuilder` 把它写在第一个 human 轮次的开头：恰好一个 BOS，位于位置 0。它的 PAD 是新加的 `<|pad|>`（50295），所以屏蔽填充时绝不会把 EOS 也屏蔽掉。
# - Qwen 没有 BOS（`bos_token_id` 是 `None`）；提示词以 `<|im_start|>`（151644）开头，`<|endoftext|>`（151643）本来就是 PAD。`SPECIAL_CASES` = phi-2 + 所有 Qwen-2.5 id。
# - Llama-2 和 Mistral 得到 `<PAD>` = 32000，phi-2 得到 `<|pad|>` = 50295；OPT 和 Qwen 沿用自己的 PAD。resize 把行数设为 `len(tokenizer)` 向上取整到 64 的倍数，不管 checkpoint 原来有多少行：Llama-2 和 Mistral 从 32000 变大到 32064，OPT 从 50272 变大到 50304，phi-2 从 51200 变小到 50304，Qwen 从 151936 变小到 151680，`-extra` 则把 256 个动作 token 放在 checkpoint 原有的第 151665-151920 行上（151936 -> 151936）。
# - 保留下来的行原样复制；只有让矩阵变大的 resize 才会创建新行，新行像 transformers 4.40 一样使用模型的常规（固定种子的）初始化（较新的 `mean_resizing` 会把它们放在平均嵌入处）。PAD 的输入行永远进不了损失；PAD 和不用的 LM head 行只会被往下压。
# - 在 transformers 4.57 和 5.x 上，输入梯度钩子能挺过 resize（还是同一个模块）；在 4.40 上则不然。
#
# ## 练习
# 1. 给 Llama-2 加一个选项，像 `qwen25-0_5b-extra` 那样再添加 256 个动作 token。它会有多少行（用 `embedding_rows` 算）？其中多少行是填充，哪些行是新的？
# 2. 用*左侧*填充（`padding_side="left"`）重做第 4 节的损失实验。损失还会忽略 PAD 行吗？现在标签需要屏蔽哪些位置？
# 3. 对一份新的 Llama-2 微型副本分别用 `mean_resizing=True` 和 `False` 做 resize，然后比较一个未经训练的新行的 logit 与旧行的平均 logit。为什么均值初始化可能有助于微调起步？这个包为什么仍然保留 4.40 的行为？
# 4. phi-2 的 resize 删去了 LM head 的 896 行。用真实权重（`source="hub"`）时，模型有没有可能预测出这些 id？看看删去之前 `len(tokenizer)` 对它们说明了什么。
# 5. 在 GPU 上，用 bf16 对 V = 32000、32001 和 32064 分别计时 LM head 的矩阵乘法 `(4096 tokens x 4096) @ (4096 x V)`（用 `vla_backbone.measure.median_seconds` 和 `torch.cuda.synchronize()`）。32001 会更慢吗？
