# %% [markdown]
# # 03 · BOS 断言
#
# OpenVLA 的每个骨干网络在构造函数的最后都会对分词器做一个两行的检查：对 `"Test 123"` 编码时，带特殊 token 的结果必须以 BOS（beginning-of-sequence，序列起始）id 开头，不带特殊 token 的结果则不能以它开头。这看上去像是吹毛求疵，但视觉-语言模型恰恰依赖这一点：它把图像拼接进提示词的固定位置——紧跟在第一个 token 之后，并默认第一个 token 就是 BOS。分词器只要违反其中任何一个条件，图像就会悄悄挪了位置，或者 BOS 被重复，而训练照常进行，不报任何错。本 notebook 在五个家族真实的分词器文件上运行这个检查，并故意把真实的 Llama-2 分词器弄坏，让两个条件各被违反一次。
#
# **你将学到**
# - 为什么图像 patch 需要位置 0 上有 BOS，用的是 OpenVLA 动作提示词的真实 id；
# - 检查的两个条件各管什么，以及每个条件在真实的 Llama-2 分词器上怎样被违反：去掉 post-processor、`add_bos_token=False`、由 normalizer 写入的 BOS、本身就以 `<s>` 开头的文本；
# - 哪些家族能通过、哪些被豁免（`SPECIAL_CASES`：phi-2 和各个 Qwen id），以及为什么 OPT 的 BOS 是 `</s>`；
# - 为什么这个包写的是 `raise` 而不是 `assert`（在 `python -O` 下验证）；
# - 为什么在 transformers 5 上要检查编码出来的 id，而绝不能看 `add_bos_token` 标志。

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
# ## 1. 图像放在哪里：紧跟在 BOS 之后
#
# VLM 用骨干网络的 `embed_input_ids` 得到提示词的嵌入，把图像投影成同样宽度的 patch 向量，再沿序列维度拼接：`[emb[:, :1], patches, emb[:, 1:]]`。切片 `:1` 是写死的：位置 0 上无论是什么 token，都会排在图像前面，其余 token 都排在图像后面。
#
# 我们完全按骨干网络的方式加载 Llama-2 分词器：读的是微型副本里真实的分词器文件，用的是该家族自己的 `load_tokenizer`，Llama-2 的分词器直接从它的 tokenizer.json 读取（原因见 notebook 05）。然后把 OpenVLA 的动作提示词编码两次：一次正常编码，一次不带特殊 token——相当于一个从不添加 BOS 的分词器会给出的结果。这些 id 都是真实的 Llama-2 id，`1` 就是 `<s>`。

# %%
import torch
from transformers import AutoTokenizer

from vla_backbone.registry import backbone_class, checkpoint_path


def family_tokenizer(backbone_id: str):
    """The tokenizer as `backbone_id`'s backbone loads it, before the family adds its PAD token."""
    return backbone_class(backbone_id).load_tokenizer(checkpoint_path(backbone_id))


llama_tok = family_tokenizer("llama2-7b-pure")
ACTION_PROMPT = "In: What action should the robot take to pick up the cup?\nOut:"
prompt = ACTION_PROMPT
with_bos = llama_tok(prompt).input_ids
without_bos = llama_tok(prompt, add_special_tokens=False).input_ids
print("with BOS:   ", with_bos)
print("without BOS:", without_bos)
print(llama_tok.convert_ids_to_tokens(with_bos))

# %%
assert without_bos == with_bos[1:] and llama_tok.bos_token == "<s>" and llama_tok.bos_token_id == 1
if prompt == ACTION_PROMPT:  # the ids the real Llama-2 tokenizer gives OpenVLA's prompt
    assert with_bos == [1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 18002, 29973, 13, 3744,
                        29901]


# %% [markdown]
# 为了看清每个位置最后落在哪里，我们给每个 token 一个只有一个数的“嵌入”：它自己的 id。patch 用负数 -1、-2、-3 表示，不会和任何 token 混淆。拼接用的就是 VLM 里那一行代码。

# %%
def splice(embeddings: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """Insert the image patches after the first position, as the VLM does."""
    return torch.cat([embeddings[:, :1], patches, embeddings[:, 1:]], dim=1)


patches = -torch.arange(1.0, 4.0).view(1, 3, 1)
spliced_good = splice(torch.tensor([with_bos], dtype=torch.float).unsqueeze(-1), patches)
spliced_bad = splice(torch.tensor([without_bos], dtype=torch.float).unsqueeze(-1), patches)
print("with BOS:   ", spliced_good.squeeze().tolist()[:8], "...")
print("without BOS:", spliced_bad.squeeze().tolist()[:8], "...")

# %% [markdown]
# 有 BOS 时，图像位于 BOS 和文本之间，与训练时完全一致。没有 BOS 时，提示词的第一个 token（`▁In`，id 512）和后面的内容被拆开，图像落进了提示词格式里的 `In:` 标记中间。整个过程不会失败：序列只是短了一个位置，下游的形状都跟着变，没有任何报错——变的只是含义。

# %%
bos_id = llama_tok.bos_token_id
assert spliced_good.shape == (1, len(with_bos) + 3, 1) and spliced_bad.shape == (1, len(without_bos) + 3, 1)
assert spliced_good[0, 0, 0] == bos_id and spliced_good[0, 1:4, 0].tolist() == [-1.0, -2.0, -3.0]
assert int(spliced_bad[0, 0, 0]) == without_bos[0] != bos_id
if prompt == ACTION_PROMPT:
    assert without_bos[0] == 512 and llama_tok.convert_ids_to_tokens(512) == "▁In"
assert spliced_bad[0, 1:4, 0].tolist() == [-1.0, -2.0, -3.0]

# %% [markdown]
# **动手试试：** 修改 `prompt`，然后从本节开头重新运行：没有 BOS 时，图像总是落在碰巧排在第一位的那个 token 之后。

# %% [markdown]
# 把这两条序列画成图：每个位置一个方块。

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"title": "Where the VLM splices the image patches", "good": "BOS added", "bad": "no BOS",
           "patch": "patch"},
    "zh": {"title": "VLM 把图像 patch 拼接在哪里", "good": "添加了 BOS", "bad": "没有 BOS", "patch": "patch"},
}[LANG]
COLORS = {"bos": "#2ca02c", "patch": "#ff7f0e", "text": "#1f77b4"}


def labels_for(spliced: torch.Tensor) -> list[tuple[str, str]]:
    out = []
    for value in spliced.squeeze().tolist():
        if value < 0:
            out.append((f"{TEXT['patch']} {int(-value)}", "patch"))
        else:
            out.append((llama_tok.convert_ids_to_tokens(int(value)), "bos" if int(value) == bos_id else "text"))
    return out


fig, ax = plt.subplots(figsize=(14, 2.2))
for row, (name, spliced) in enumerate([(TEXT["good"], spliced_good), (TEXT["bad"], spliced_bad)]):
    for column, (label, kind) in enumerate(labels_for(spliced)):
        ax.add_patch(plt.Rectangle((column, -row), 0.95, 0.8, color=COLORS[kind], alpha=0.8))
        ax.text(column + 0.47, -row + 0.4, label, ha="center", va="center", fontsize=7, color="white")
    ax.text(-0.2, -row + 0.4, name, ha="right", va="center")
ax.set_xlim(-2.2, spliced_good.shape[1])
ax.set_ylim(-1.1, 0.9)
ax.axis("off")
ax.set_title(TEXT["title"])
plt.show()

# %% [markdown]
# ## 2. 检查的两个条件
#
# `vla_backbone.hf_causal` 中的 `check_bos` 会把探测文本 `"Test 123"` 编码两次：
#
# 1. `add_special_tokens=True` 时，id 必须以 `bos_token_id` 开头：VLM 拿到它需要的 BOS；
# 2. `add_special_tokens=False` 时，id **不能**以它开头：只有明确要求时才加 BOS。
#
# 下面是完整的函数。注意末尾那个显式的 `raise`；第 6 节会说明为什么不用 `assert`。

# %%
import inspect

from vla_backbone.hf_causal import BOS_PROBE_TEXT, SPECIAL_CASES, check_bos

print(inspect.getsource(check_bos))

# %% [markdown]
# 真实的 Llama-2 分词器能通过：带特殊 token 时 `<s>`（id 1）排在最前，不带时直接从文本开始：先是 `▁Test`（4321），然后是 `▁`、`1`、`2`、`3`（29871、29896、29906、29941）——SentencePiece 会把数字逐位拆开。一切正常时 `check_bos` 返回 `None`。

# %%
ids_with = llama_tok(BOS_PROBE_TEXT, add_special_tokens=True).input_ids
ids_without = llama_tok(BOS_PROBE_TEXT, add_special_tokens=False).input_ids
print(BOS_PROBE_TEXT, "->", ids_with, "with special tokens,", ids_without, "without")
print(llama_tok.convert_ids_to_tokens(ids_with))

# %%
assert BOS_PROBE_TEXT == "Test 123"
assert ids_with == [1, 4321, 29871, 29896, 29906, 29941]
assert ids_without == [4321, 29871, 29896, 29906, 29941] and ids_with == [llama_tok.bos_token_id] + ids_without
assert llama_tok.convert_ids_to_tokens(ids_without) == ["▁Test", "▁", "1", "2", "3"]
assert check_bos(llama_tok, "llama2-7b-pure") is None

# %% [markdown]
# ## 3. 违反条件一：去掉 BOS 的真实分词器
#
# fast 分词器本质上是 `tokenizers` 库里的一条流水线：normalizer、pre-tokenizer、模型（这里是 BPE）和 post-processor。添加 BOS 是 post-processor 的工作：Llama-2 的 `tokenizer.json` 里有一个 `TemplateProcessing`，模板是 `<s> $A`（`$A` 代表文本），只在请求特殊 token 时才运行。
#
# 我们用 `tokenizers` 库读入这个文件本身，再配上 Llama-2 的特殊 token，把它包装成 transformers 的分词器。先不做任何改动，它给出的 id 必须和骨干网络加载的分词器完全一致（探测文本和动作提示词都要一致）；然后再把它的模板换成只有 `$A`。

# %%
import json

from tokenizers import Tokenizer, processors
from transformers import PreTrainedTokenizerFast

from vla_backbone.tiny import TOKENIZERS

LLAMA_TOKENIZER_JSON = TOKENIZERS / "llama2" / "tokenizer.json"


def wrap(pipeline: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=pipeline, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


real_pipeline = Tokenizer.from_file(str(LLAMA_TOKENIZER_JSON))
print("post-processor in tokenizer.json:", real_pipeline.post_processor)
assert all(wrap(real_pipeline)(text).input_ids == llama_tok(text).input_ids for text in (BOS_PROBE_TEXT, prompt))
# The model is BPE, and the template for one text is `<s> $A`, as the file stores it.
stored = json.loads(real_pipeline.to_str())
assert stored["model"]["type"] == "BPE" and stored["post_processor"]["type"] == "TemplateProcessing"
assert stored["post_processor"]["single"] == [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]

never_pipeline = Tokenizer.from_file(str(LLAMA_TOKENIZER_JSON))
never_pipeline.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")
never_bos = wrap(never_pipeline)
print(never_bos(BOS_PROBE_TEXT).input_ids, never_bos(BOS_PROBE_TEXT, add_special_tokens=False).input_ids)

# %% [markdown]
# 它仍然知道自己的 BOS token（`bos_token_id` 是 1），只是从来不写它，所以条件一不成立。报错信息写明了分词器类名、骨干网络 id、两次编码结果和 BOS id，并告诉你该怎么做。

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.notebook import expect_error

assert never_bos.bos_token_id == 1 and never_bos(BOS_PROBE_TEXT).input_ids == ids_without
with expect_error(TokenizerBOSError, match="does not prepend BOS when add_special_tokens=True") as caught:
    check_bos(never_bos, "my-llm-7b")
message = str(caught[0])
assert type(never_bos).__name__ in message and "'my-llm-7b'" in message
assert str(ids_without) in message and "bos_token_id = 1" in message
assert "post-processor" in message and "SPECIAL_CASES" in message

# %% [markdown]
# 其实根本不用改文件，一个加载参数就够了：transformers 的 Llama 分词器会遵从 `add_bos_token=False`，在 4.57 和 5.x 上都一样，这时原封未动的真实文件编码出来就没有 BOS。构造函数里的检查要拦住的，正是这类改动。

# %%
switched_off = AutoTokenizer.from_pretrained(checkpoint_path("llama2-7b-pure"), add_bos_token=False)
print(type(switched_off).__name__, switched_off(BOS_PROBE_TEXT).input_ids)
assert switched_off(BOS_PROBE_TEXT).input_ids == ids_without
with expect_error(TokenizerBOSError, match="does not prepend BOS when add_special_tokens=True"):
    check_bos(switched_off, "llama2-7b-pure")

# %% [markdown]
# ## 4. 违反条件二：不是由特殊 token 步骤加上的 BOS
#
# 为什么要坚持不带特殊 token 时*不能*出现 BOS？因为构造训练样本的代码依赖这一点。Prismatic 的微调数据集（OpenVLA 沿用了它，见 `prismatic/preprocessing/datasets/datasets.py` 中的 `FinetuneDataset.__getitem__`）按轮次逐段对对话做分词，参数是 `add_special_tokens=(turn_idx == 0)`，再把各段拼起来：BOS 只出现一次，就在开头。
#
# 让 BOS 从别处冒出来，最简单的途径就是文本本身已经以 `<s>` 开头。真实的分词器会把写出来的 `<s>` 识别成那个特殊 token，于是不带特殊 token 的编码也以 BOS 开头，正常编码则有两个 BOS。正因为如此，凡是分词器会自己加 BOS 的提示词构造器，都会去掉文本开头的 `<s>`（见 notebook 05）。

# %%
from vla_backbone.prompting import PurePromptBuilder, openvla_action_prompt

written = "<s>" + BOS_PROBE_TEXT
print(repr(written), "->", llama_tok(written).input_ids, "with special tokens,",
      llama_tok(written, add_special_tokens=False).input_ids, "without")
assert llama_tok(written, add_special_tokens=False).input_ids == [1] + ids_without
assert llama_tok(written).input_ids == [1, 1] + ids_without
assert PurePromptBuilder("openvla").finish("<s>In: hi\nOut: ") == "In: hi\nOut:"

# %% [markdown]
# `check_bos` 编码的始终是自己的探测文本，所以文本骗不过它；但一个每次调用都写入 BOS 的*分词器*可以。post-processor 只在被要求时才运行，normalizer 却对每段文本都会运行。Llama-2 的 `tokenizer.json` 里有一个 normalizer，它在开头加上 `▁`（SentencePiece 的空格标记）并把空格替换成 `▁`；我们把它改成在开头加 `<s>▁`。要让它生效还有两个细节：`<s>` 这个 token 必须在规范化*之后*才去匹配（`normalized=True`）；而且这条规则不能改动文本 `<s>` 本身（`(?!<s>)`），因为分词器在查找每个新增 token 之前，也会先把这个 token 的文本规范化一遍。

# %%
from tokenizers import AddedToken, Regex, normalizers

print("normalizer in tokenizer.json:", real_pipeline.normalizer)
assert real_pipeline.normalizer.normalize_str("pick up") == "▁pick▁up"  # prepends ▁ and turns spaces into ▁
always_pipeline = Tokenizer.from_file(str(LLAMA_TOKENIZER_JSON))
always_pipeline.normalizer = normalizers.Sequence(
    [normalizers.Replace(Regex(r"\A(?!<s>)"), "<s>▁"), normalizers.Replace(" ", "▁")]
)
always_pipeline.add_special_tokens([AddedToken("<s>", normalized=True, special=True)])
always_bos = wrap(always_pipeline)
print(always_bos(BOS_PROBE_TEXT).input_ids, always_bos(BOS_PROBE_TEXT, add_special_tokens=False).input_ids)

# %% [markdown]
# 条件一成立，条件二不成立。带特殊 token 时，post-processor 又在 normalizer 写入的 BOS 前面加了一个：开头有了两个 BOS，图像会落在这两个 BOS 之间。

# %%
assert always_bos(BOS_PROBE_TEXT, add_special_tokens=False).input_ids == [1] + ids_without
assert always_bos(BOS_PROBE_TEXT).input_ids == [1, 1] + ids_without
with expect_error(TokenizerBOSError, match="starts with BOS even when add_special_tokens=False") as caught:
    check_bos(always_bos, "my-llm-7b")
assert "[1, 1, " in str(caught[0]) and type(always_bos).__name__ in str(caught[0])


# %% [markdown]
# 现在按 Prismatic 的方式构造一个两轮的训练样本：每一轮都来自 Pure 提示词构造器，只有第一轮带特殊 token。我们比较两个分词器分别在哪些位置产生 BOS。

# %%
def tokenize_turns(tokenizer, turns: list[str]) -> list[int]:
    ids = []
    for turn_idx, text in enumerate(turns):
        ids += tokenizer(text, add_special_tokens=turn_idx == 0).input_ids
    return ids


builder = PurePromptBuilder("openvla")
turns = [builder.add_turn("human", openvla_action_prompt("pick up the cup")).rstrip(), builder.add_turn("gpt", "1 2 3")]
print(turns)
for name, tokenizer in [("real Llama-2", llama_tok), ("always-BOS", always_bos)]:
    ids = tokenize_turns(tokenizer, turns)
    print(f"{name:13s} BOS at positions {[i for i, t in enumerate(ids) if t == 1]} of {len(ids)}")

# %% [markdown]
# 真实的分词器只在位置 0 给出一个 BOS（第一轮就是那条 18 个 token 的动作提示词）。有缺陷的那个则在开头给出两个 BOS，*并且*在样本中间的位置 19——恰好是回答开始的地方——又插入一个 BOS；模型会学着在那里预测 BOS。修复这类问题的办法是去掉在 post-processor 之外写入 BOS 的那个环节（这里是 normalizer），这样就只有 `add_special_tokens=True` 时才会添加 BOS。

# %%
good_ids, bad_ids = tokenize_turns(llama_tok, turns), tokenize_turns(always_bos, turns)
first_turn_length = len(llama_tok(turns[0]).input_ids)
assert first_turn_length == 18 and good_ids[:first_turn_length] == llama_tok(ACTION_PROMPT).input_ids
assert [i for i, t in enumerate(good_ids) if t == 1] == [0]
bad_positions = [i for i, t in enumerate(bad_ids) if t == 1]
assert bad_positions[:3] == [0, 1, first_turn_length + 1] == [0, 1, 19]
assert len(bad_positions) == len(turns) + 1  # one BOS per turn, and the double one at the start

# %% [markdown]
# **动手试试：** 给构造器再加一轮 human 和 gpt，然后重新运行：在有缺陷的样本里，每多一轮，中间就多一个 BOS；而真实的分词器始终只在位置 0 有一个 BOS。

# %% [markdown]
# ## 5. 在每个家族的真实分词器文件上检查
#
# 对每个家族做同样的两次编码，每个分词器都按其骨干网络的方式从真实文件加载。下面的 id 与 Hub 上的分词器给出的完全相同。条件一首先要求有 BOS id：Qwen 根本没有 BOS token，`bos_token_id` 是 `None`，所以条件一按定义就不成立。Phi-2 有 BOS token `<|endoftext|>`（50256，同时也是它的 EOS），但它的分词器从不添加。OPT 能通过，只是 BOS 有点特别：它在开头加的是 `</s>`（id 2），而这同时也是它的 EOS。在 transformers 5 上每个家族只有一个分词器类（Mistral 加载出来的是通用的 `TokenizersBackend`）；在 4.57 上则是各个 `*Fast` 类。

# %%
from vla_backbone import compat
from vla_backbone.registry import list_backbones

FAMILY_IDS = {"llama2": "llama2-7b-pure", "mistral": "mistral-v0.1-7b-pure", "phi": "phi-2-3b",
              "qwen25": "qwen25-0_5b-pure", "opt": "opt-125m"}
# Llama-2's is the one loaded in section 1; the others load the same way.
tokenizers_by_family = {family: llama_tok if family == "llama2" else family_tokenizer(backbone_id)
                        for family, backbone_id in FAMILY_IDS.items()}


def halves(tokenizer) -> tuple[list[int], list[int], bool, bool]:
    with_special = tokenizer(BOS_PROBE_TEXT, add_special_tokens=True).input_ids
    without_special = tokenizer(BOS_PROBE_TEXT, add_special_tokens=False).input_ids
    bos = tokenizer.bos_token_id
    return with_special, without_special, bos is not None and with_special[:1] == [bos], without_special[:1] != [bos]


print(f"{'family':8s} {'class':22s} {'BOS token':14s} {'id':>5s}  {'with special tokens':38s} half 1  half 2")
results = {}
for family, tokenizer in tokenizers_by_family.items():
    with_special, without_special, half1, half2 = results[family] = halves(tokenizer)
    print(f"{family:8s} {type(tokenizer).__name__:22s} {tokenizer.bos_token!s:14s} {tokenizer.bos_token_id!s:>5s}  "
          f"{with_special!s:38s} {'pass' if half1 else 'FAIL':7s} {'pass' if half2 else 'FAIL'}")

# %% [markdown]
# Llama-2、Mistral 和 OPT 两个条件都成立；Phi-2 和 Qwen 条件一不成立、条件二成立。

# %%
REAL_TEST_123 = {
    "llama2": [1, 4321, 29871, 29896, 29906, 29941],
    "mistral": [1, 3735, 28705, 28740, 28750, 28770],
    "phi": [14402, 17031],
    "qwen25": [2271, 220, 16, 17, 18],
    "opt": [2, 34603, 17072],
}
assert {family: result[0] for family, result in results.items()} == REAL_TEST_123
assert {family: result[1] for family, result in results.items()} == {
    family: ids[1:] if family in ("llama2", "mistral", "opt") else ids for family, ids in REAL_TEST_123.items()}
passing = {family for family, (_, _, half1, half2) in results.items() if half1 and half2}
assert passing == {"llama2", "mistral", "opt"}
assert all(results[family][3] and not results[family][2] for family in ("phi", "qwen25"))
opt_tok = tokenizers_by_family["opt"]
assert opt_tok.bos_token == opt_tok.eos_token == "</s>" and opt_tok.bos_token_id == 2
phi_tok = tokenizers_by_family["phi"]
assert phi_tok.bos_token == phi_tok.eos_token == "<|endoftext|>" and phi_tok.bos_token_id == 50256
assert tokenizers_by_family["qwen25"].bos_token is None and tokenizers_by_family["qwen25"].bos_token_id is None
CLASSES_V5 = ["LlamaTokenizer", "TokenizersBackend", "CodeGenTokenizer", "Qwen2Tokenizer", "GPT2Tokenizer"]
CLASSES_V4 = ["LlamaTokenizerFast", "LlamaTokenizerFast", "CodeGenTokenizerFast", "Qwen2TokenizerFast", "GPT2TokenizerFast"]
assert [type(t).__name__ for t in tokenizers_by_family.values()] == (CLASSES_V5 if compat.IS_V5 else CLASSES_V4)

# %% [markdown]
# 这些失败是设计使然，骨干网络的构造函数恰好对这些 id 跳过检查：也就是集合 `SPECIAL_CASES`。phi-2 的 id 来自 OpenVLA；Qwen-2.5 的各个 id 来自 MiniVLA，是它把 Qwen 加进了 OpenVLA。对注册表里的*每一个* id 运行检查（每个 id 使用其家族的分词器），失败的 id 正好就是这个集合。phi-2 和 Qwen 如何换一种方式得到固定的第一个 token，见 notebook 04。

# %%
failing_ids = set()
for backbone_id in list_backbones():
    try:
        check_bos(tokenizers_by_family[backbone_class(backbone_id).family], backbone_id)
    except TokenizerBOSError:
        failing_ids.add(backbone_id)
print(sorted(failing_ids))
assert failing_ids == SPECIAL_CASES
assert SPECIAL_CASES == {"phi-2-3b"} | {i for i in list_backbones() if backbone_class(i).family == "qwen25"} == {
    "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra", "qwen25-1_5b-pure", "qwen25-3b-pure", "qwen25-7b-pure"}

# %% [markdown]
# ## 6. 用 `raise` 而不是 `assert`：检查在 `python -O` 下依然有效
#
# 上游把这个检查写成了 `assert`。Python 以 `-O` 运行（或设置了环境变量 `PYTHONOPTIMIZE`）时，会丢掉所有 `assert` 语句，有缺陷的分词器就会静默通过。`check_bos` 最后用的是显式的 `raise`，`-O` 不会去掉它。
#
# 我们在一个单独的 `python -O` 进程里验证这一点。在那里导入 torch 和 transformers 要花不少时间（在 `-O` 下，Python 第一次运行时要重新编译它们），所以子进程运行的是 `check_bos` 的*原样源码*（通过 `inspect.getsource` 取得），作用对象是第 3 节那条从不加 BOS 的流水线（去掉了 BOS 模板的真实 Llama-2 `tokenizer.json`）——先存成文件，再只用 `tokenizers` 库读回来。旁边还放了一个用 `assert` 写的条件一检查作对照。

# %%
import os
import tempfile

assert "raise TokenizerBOSError" in inspect.getsource(check_bos) and "assert " not in inspect.getsource(check_bos)

CHILD = '''
import sys, types
from tokenizers import Tokenizer
from vla_backbone.errors import TokenizerBOSError

class PipelineTokenizer:
    """Just enough of a transformers tokenizer for check_bos."""
    bos_token_id = 1
    def __init__(self, path):
        self.pipeline = Tokenizer.from_file(path)
    def __call__(self, text, add_special_tokens=True):
        return types.SimpleNamespace(input_ids=self.pipeline.encode(text, add_special_tokens=add_special_tokens).ids)

def check_with_assert(tokenizer):
    assert tokenizer("Test 123").input_ids[:1] == [tokenizer.bos_token_id], "no BOS"

namespace = {"TokenizerBOSError": TokenizerBOSError, "BOS_PROBE_TEXT": "Test 123"}
exec(sys.argv[2], namespace)
tokenizer = PipelineTokenizer(sys.argv[1])
print("sys.flags.optimize =", sys.flags.optimize)
check_with_assert(tokenizer)
print("assert version: passed silently")
try:
    namespace["check_bos"](tokenizer, "my-llm-7b")
    print("check_bos: passed silently")
except TokenizerBOSError as error:
    print("check_bos: raised TokenizerBOSError")
'''

with tempfile.TemporaryDirectory() as tmp:
    pipeline_file = os.path.join(tmp, "never_bos.json")
    never_pipeline.save(pipeline_file)
    child = subprocess.run([sys.executable, "-O", "-c", CHILD, pipeline_file, inspect.getsource(check_bos)],
                           capture_output=True, text=True, timeout=60)
print(child.stdout, child.stderr[-2000:])

# %% [markdown]
# 在 `-O` 下，`assert` 版本放过了有缺陷的分词器；`check_bos` 依然抛出异常。

# %%
assert child.returncode == 0
assert child.stdout.splitlines() == [
    "sys.flags.optimize = 1",
    "assert version: passed silently",
    "check_bos: raised TokenizerBOSError",
]

# %% [markdown]
# ## 7. 检查 id，而不是标志
#
# Llama-2 的 `tokenizer_config.json` 写着 `"add_bos_token": true`，分词器对象上也有一个 `add_bos_token` 属性。人们很容易直接检查它，而不去真正编码。在 transformers 5 上这会得到错误的结论：`save_pretrained` 不再把 `add_bos_token` 写进 `tokenizer_config.json`，重新加载的分词器读到的标志是 `False`，却依然会在开头加 BOS——因为 BOS 现在保存在 post-processor 里。在 4.57 上，这个标志会被写入，并在重新加载后保留。
#
# 我们显式传入 `add_bos_token=True` 加载真实的 Llama-2 分词器，保存后再加载回来。

# %%
import json

hub_config = json.loads((TOKENIZERS / "llama2" / "tokenizer_config.json").read_text())
explicit = AutoTokenizer.from_pretrained(checkpoint_path("llama2-7b-pure"), add_bos_token=True)
with tempfile.TemporaryDirectory() as tmp:
    explicit.save_pretrained(tmp)
    saved_config = json.loads(open(os.path.join(tmp, "tokenizer_config.json")).read())
    reloaded = AutoTokenizer.from_pretrained(tmp)
print("transformers", compat.TRANSFORMERS_VERSION, "| the hub's tokenizer_config.json: add_bos_token =",
      hub_config["add_bos_token"])
print(f"before saving: {type(explicit).__name__}.add_bos_token = {explicit.add_bos_token}, ids",
      explicit(BOS_PROBE_TEXT).input_ids)
print("'add_bos_token' in the saved tokenizer_config.json:", "add_bos_token" in saved_config)
print(f"after reload:  {type(reloaded).__name__}.add_bos_token = {reloaded.add_bos_token}, ids",
      reloaded(BOS_PROBE_TEXT).input_ids)

# %% [markdown]
# VLM 看到的是 id，而 id 都是真实的 `[1, 4321, 29871, 29896, 29906, 29941]`，保存前后、在每个版本上都一样；只有标志的说法变了。下面的分支写明了每个版本的行为，所以这个单元格在 4.57 和 5.x 上都能运行。

# %%
assert hub_config["add_bos_token"] is True and explicit.add_bos_token is True
assert reloaded(BOS_PROBE_TEXT).input_ids == explicit(BOS_PROBE_TEXT).input_ids == [1, 4321, 29871, 29896, 29906, 29941]
assert check_bos(reloaded, "llama2-7b-pure") is None
assert "<s>" in str(reloaded.backend_tokenizer.post_processor)
if compat.IS_V5:
    assert "add_bos_token" not in saved_config and reloaded.add_bos_token is False
else:
    assert saved_config["add_bos_token"] is True and reloaded.add_bos_token is True

# %% [markdown]
# ## 动手试试
#
# 选一个家族和一段文本；这个单元格会打印两次编码的结果、对应的 token，以及 `check_bos` 的结论。在 JupyterLab 或 Colab 中会出现下拉菜单；作为脚本运行时，则用第一个选项运行一次。试试空文本：哪些家族仍然会产生 token？再试试 `"<s>Test 123"`：哪些分词器会把 `<s>` 识别成一个特殊 token？

# %%
from vla_backbone.hf_causal import BOS_PROBE_TEXT
from vla_backbone.notebook import explore


def bos_report(family: str, text: str) -> bool:
    tokenizer = tokenizers_by_family[family]
    with_special = tokenizer(text, add_special_tokens=True).input_ids
    without_special = tokenizer(text, add_special_tokens=False).input_ids
    print(f"{family}: bos_token = {tokenizer.bos_token!r}, bos_token_id = {tokenizer.bos_token_id}")
    print("  with special tokens:", with_special, tokenizer.convert_ids_to_tokens(with_special))
    print("  without:            ", without_special, tokenizer.convert_ids_to_tokens(without_special))
    bos = tokenizer.bos_token_id
    print(f"  this text: half 1 {'holds' if bos is not None and with_special[:1] == [bos] else 'fails'}, "
          f"half 2 {'fails' if bos is not None and without_special[:1] == [bos] else 'holds'}")
    try:
        check_bos(tokenizer, FAMILY_IDS[family])
        print(f"  check_bos (on its own probe, {BOS_PROBE_TEXT!r}): passes")
        return True
    except TokenizerBOSError as error:
        print(f"  check_bos (on its own probe, {BOS_PROBE_TEXT!r}):", str(error).split(":", 1)[1].split(".")[0].strip())
        return False


first = explore(bos_report, family=list(FAMILY_IDS), text=["Test 123", "pick up the red cup", "", "<s>Test 123"])
assert first is True

# %% [markdown]
# ## 小结
# - VLM 把图像 patch 拼接在位置 0 之后（`[emb[:, :1], patches, emb[:, 1:]]`），所以位置 0 必须是 BOS；否则图像会落在第一个文本 token（OpenVLA 提示词里的 `▁In`）之后，而且不会有任何报错。
# - 条件一：带特殊 token 时，id 以 BOS 开头。post-processor 丢了 BOS 模板，或者加载分词器时传了 `add_bos_token=False`，这个条件就不成立。
# - 条件二：不带特殊 token 时，id 不以 BOS 开头，因为训练样本是按轮次逐段分词的，只有第一轮带特殊 token。BOS 只要来自别处（以 `<s>` 开头的文本、会写入 BOS 的 normalizer），就会造成开头 BOS 重复，并在样本中间插入 BOS。
# - 在真实文件上，Llama-2、Mistral 和 OPT（BOS 为 `</s>`）能通过；phi-2（BOS = EOS = `<|endoftext|>`，从不添加）和 Qwen（没有 BOS token）按设计不满足条件一，它们恰好就是 `SPECIAL_CASES`。
# - 显式的 `raise` 在 `python -O` 下依然有效，`assert` 则不然。
# - 要检查编码出来的 id，绝不能只看 `add_bos_token` 标志：在 transformers 5 上，保存并重新加载之后它读作 `False`，而 BOS 照样会加在开头。
#
# ## 练习
# 1. 换一种方式违反条件一：保留 post-processor，但把包装后分词器的 `bos_token` 设为 `</s>`。`check_bos` 会报告什么？报错信息里的 `bos_token_id` 是哪个 id？
# 2. 写一个 `fix_always_bos(tokenizer)`，通过恢复原来的 normalizer 修好第 4 节那个总是添加 BOS 的分词器，并用 assert 验证之后 `check_bos` 能通过、`tokenize_turns` 只在位置 0 产生 BOS。
# 3. 用 Qwen 分词器和 `QwenPromptBuilder` 重做第 1 节的拼接。排在图像前面的是哪个 token？论证这是否可以接受，再与 notebook 04 对照。
# 4. 扩展 `python -O` 实验：不用 `-O`，而是在子进程的环境中设置 `PYTHONOPTIMIZE=2`，看看 `sys.flags.optimize` 报告什么，结果有没有变化。
# 5. 把真实的 Llama-2 文件复制到一个临时目录，从 `tokenizer.json` 里删掉 `post_processor`，再用 `AutoTokenizer` 加载这个目录。BOS 会回来吗？比较 transformers 4.57 和 5.x，找出每个版本是根据哪个设置重建 post-processor 的。
