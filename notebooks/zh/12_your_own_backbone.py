# %% [markdown]
# # 12 · 添加你自己的骨干网络
#
# 把 OpenVLA 移植到一个新的语言模型上，就是再写一个家族：一个小类，告诉 `HFCausalLLMBackbone` 加载哪个 HuggingFace 模型、哪个 block 算解码器层、提示词长什么样、最后微调哪些模块。难的不是这个类，而是围绕它要做的决定，其中最要紧的是 BOS——VLM 要把图像拼接在它后面。本 notebook 给这个包加上第六个家族 GPT-2（无需申请访问，参数量从 124M 起），从分词器一直做到 FSDP 包装计划，用的是 GPT-2 真实的分词器，而且不改包里的任何一个文件：所有东西都在这里定义。最后，新家族要通过每个内置家族都能通过的那套契约检查。作业 A1 会请你按自己的决定完成同样的移植，并自动评分。
#
# **你将学到**
# - 一个家族必须提供什么：五个类属性和两个 `@property` 成员；
# - 离线时 GPT-2 真实的分词器从哪里来，以及怎样验证自己推导出的分词器确实是真的；
# - 如何确定分词器的 BOS 行为，以及为什么 `add_bos_token` 这样的标志说了不算；
# - 如何给包添加新家族的微型副本：一个带 `tokenizer_dir=` 的 `TinySpec`；
# - 如何为它编写 `FamilyBackbone` 子类、提示词构造器和注册表条目；
# - 如何用 `vla_backbone.contract.check_backbone_contract` 检查结果，以及每个错误决定会怎样失败。

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
# ## 一个家族要提供什么
#
# 家族就是 `FamilyBackbone`（`vla_backbone/families/_common.py`）的一个子类。加载工作全由父类完成，子类只需填上五个类属性和两个 `@property` 成员：
#
# | 成员 | 含义 | Llama-2 的取值 |
# |---|---|---|
# | `family` | 简短的家族名 | `"llama2"` |
# | `models` | 骨干网络 id → Hub 仓库 | `LLAMA2_MODELS` |
# | `llm_cls_path` | `*ForCausalLM` 类，写成点分字符串 | `"transformers.LlamaForCausalLM"` |
# | `decoder_layer_path` | FSDP 包装的那个 block（梯度检查点重算哪些模块由 transformers 自己决定，通常也是这个 block） | `"...modeling_llama.LlamaDecoderLayer"` |
# | `pad_token` | 分词器没有 PAD 时要添加的 PAD token | `"<PAD>"` |
# | `prompt_builder_fn` | 提示词构造器类（`@property` 成员） | `-pure` id 用 `PurePromptBuilder` |
# | `last_layer_finetune_modules` | 输入嵌入、最后一个解码器层、LM head（`@property` 成员） | 三个模块 |
#
# 在 `FamilyBackbone` 里仍是抽象的成员只剩这两个 `@property`；类路径写成字符串，是为了让 `import vla_backbone` 不必导入 transformers 的所有模型类。另有两个可选的类属性决定 `load_tokenizer` 怎样加载分词器：`tokenizer_kwargs` 给 `AutoTokenizer.from_pretrained` 传额外的参数（Qwen 在 4.57.3 到 4.57.x 上用它，Llama-2 用它传 `legacy=True`），`tokenizer_from_file = True` 则让它完全按 checkpoint 里的 tokenizer.json 切分文本（Llama-2 就是这样；否则 transformers 5 会重新构建它的分词器，得到不同的 id，见 notebook 05）。还有两个成员带默认实现，家族可以按需覆盖：`extra_tokens()` 给出加载后追加的 token（Qwen 的 `-extra` id 会加上 256 个 `<|extra_i|>`），`embed_dim` 给出 `embed_input_ids` 返回的嵌入维度（OPT 用到它：opt-350m 的嵌入只有 512 维，隐藏维度却是 1024）。

# %%
import torch

from vla_backbone.families import FAMILIES, LLaMa2LLMBackbone
from vla_backbone.families._common import FamilyBackbone

for family in FAMILIES:
    print(f"{family.family:8s} {family.llm_cls_path:34s} {family.decoder_layer_path.rsplit('.', 1)[1]:20s} "
          f"pad={family.pad_token!r:16s} tokenizer_kwargs={family.tokenizer_kwargs} "
          f"from_file={family.tokenizer_from_file}")

# %%
assert FamilyBackbone.__abstractmethods__ == {"prompt_builder_fn", "last_layer_finetune_modules"}
assert all(not family.__abstractmethods__ for family in FAMILIES)
assert {family.family for family in FAMILIES} == {"llama2", "mistral", "phi", "qwen25", "opt"}
assert [family.family for family in FAMILIES if family.tokenizer_from_file] == ["llama2"]
assert [family.family for family in FAMILIES if family.extra_tokens is not FamilyBackbone.extra_tokens] == ["qwen25"]
assert [family.family for family in FAMILIES if "embed_dim" in vars(family)] == ["opt"]

# %% [markdown]
# ## 架构：GPT-2
#
# transformers 自带 `GPT2LMHeadModel`（GPT-2 出现得比 `*ForCausalLM` 这套命名更早），它的解码器层是 `GPT2Block`；包里没有哪个家族用到它。它的模块有自己的命名：各个 block 在 `transformer.h` 里，token 嵌入是 `transformer.wte`（另有可学习的位置嵌入 `transformer.wpe`），LM head 是 `lm_head`，与 `wte` 绑定（共享同一个权重）。我们的代码通过 `get_input_embeddings()` 和 `get_output_embeddings()` 去拿嵌入和 LM head，这对任何模型类都适用。

# %%
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

assert not any("GPT2" in family.llm_cls_path for family in FAMILIES)
toy = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=64, vocab_size=100, bos_token_id=0, eos_token_id=0))
print([name for name, _ in toy.named_children()], [name for name, _ in toy.transformer.named_children()])
assert all(isinstance(block, GPT2Block) for block in toy.transformer.h) and len(toy.transformer.h) == 2
assert toy.get_input_embeddings() is toy.transformer.wte and toy.get_output_embeddings() is toy.lm_head
assert toy.lm_head.weight is toy.transformer.wte.weight
del toy

# %% [markdown]
# ## 第 1 步 · GPT-2 真实的分词器，取自包里附带的文件
#
# 这套 notebook 里的每个 id 都来自真实的分词器，GPT-2 也不例外。包里没有 GPT-2 的分词器，但有 phi-2 的，而 phi-2 的分词器*就是* GPT-2 的字节级 BPE（同样的 50257 个 token，其中 `<|endoftext|>` = 50256；同样的 50000 条合并规则），再加上 phi-2 为代码添加的 38 个空白符 token（id 50257-50294）。去掉这 38 个，剩下的就是 GPT-2 的分词器。这一点我们不想当然，而是用两项依据来自 phi-2 文件之外的检查来确认：
#
# 1. 包里还附带了 OPT 的 `merges.txt`，它来自另一个来源（metaseq），同样是 GPT-2 的 BPE：它的合并规则必须与 phi-2 的逐行相同，它的词表也必须包含同样的 50257 个字符串（OPT 按自己的顺序给它们编号，另外还加了 8 个自己的 token）。
# 2. transformers 在 `GPT2Tokenizer` 的 docstring 里写明了真实 GPT-2 分词器给出的 id：`"Hello world"` -> `[15496, 995]`，`" Hello world"` -> `[18435, 995]`。我们的分词器必须给出同样的结果。

# %%
import json

from vla_backbone.tiny import TOKENIZERS

EOT = "<|endoftext|>"
phi_files = json.loads((TOKENIZERS / "phi" / "tokenizer.json").read_text(encoding="utf-8"))
bpe = phi_files["model"]
whitespace_tokens = [token for token in phi_files["added_tokens"] if token["content"] != EOT]
opt_merges = (TOKENIZERS / "opt" / "merges.txt").read_text(encoding="utf-8").splitlines()
opt_vocab = json.loads((TOKENIZERS / "opt" / "vocab.json").read_text(encoding="utf-8"))
print(f"phi-2: {bpe['type']} with {len(bpe['vocab'])} tokens and {len(bpe['merges'])} merges; "
      f"{len(whitespace_tokens)} added whitespace tokens, ids {whitespace_tokens[0]['id']}-{whitespace_tokens[-1]['id']}")
print(f"OPT: {len(opt_merges) - 1} merges ({opt_merges[0]!r} first), {len(opt_vocab)} tokens, of which not in "
      f"phi-2's BPE: {sorted(set(opt_vocab) - set(bpe['vocab']))}")

# %%
assert bpe["type"] == "BPE" and len(bpe["vocab"]) == 50257 and len(bpe["merges"]) == 50000
assert bpe["vocab"][EOT] == 50256 and len(whitespace_tokens) == 38
assert [token["id"] for token in whitespace_tokens] == list(range(50257, 50295))
assert all(token["content"].strip() == "" for token in whitespace_tokens)
assert opt_merges[0] == "#version: 0.2" and opt_merges[1:] == bpe["merges"]
assert set(bpe["vocab"]) <= set(opt_vocab) and len(set(opt_vocab) - set(bpe["vocab"])) == 8

# %% [markdown]
# 现在写出 GPT-2 的分词器文件：去掉 38 个空白符 token 的 phi-2 `tokenizer.json`，以及一个 `tokenizer_config.json`。transformers 的 GPT-2 分词器类自有默认值，这个文件只补上 GPT-2 还需要的设置：上下文长度 1024，以及让 `<|endoftext|>` 充当 BOS、EOS 和 UNK（这本来就是类的默认值，写出来是为了让文件自己把话说清楚）。这些文件放在包缓存里的一个文件夹中，和微型副本放在一起，并且一直保留，因为微型副本是按这些文件的字节来区分的。每个文件先用隐藏文件名写出，再改名，这样同时运行的另一份本 notebook 永远不会读到写了一半的文件。

# %%
import filecmp
import inspect
import os
from pathlib import Path

from transformers import AutoTokenizer, GPT2Tokenizer, GPT2TokenizerFast

from vla_backbone.tiny import tiny_home

GPT2_FILES = tiny_home() / "notebook-12" / "gpt2-tokenizer"
GPT2_FILES.mkdir(parents=True, exist_ok=True)


def write_tokenizer_file(name: str, data: dict) -> None:
    hidden = GPT2_FILES / f".{name}.{os.getpid()}"
    hidden.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(hidden, GPT2_FILES / name)


gpt2_json = {**phi_files, "added_tokens": [token for token in phi_files["added_tokens"] if token["content"] == EOT]}
write_tokenizer_file("tokenizer.json", gpt2_json)
special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
write_tokenizer_file("tokenizer_config.json", {"model_max_length": 1024, **special})

gpt2_tokenizer = GPT2TokenizerFast.from_pretrained(GPT2_FILES)
print(type(gpt2_tokenizer).__name__, "| len:", len(gpt2_tokenizer), "| vocab_size:", gpt2_tokenizer.vocab_size,
      "| pad:", gpt2_tokenizer.pad_token)
for text in ["Hello world", " Hello world", "Test 123"]:
    print(f"{text!r:15s} -> {gpt2_tokenizer(text).input_ids}")

# %%
defaults = inspect.signature(GPT2TokenizerFast.__init__).parameters
assert all(defaults[role].default == EOT for role in special)
documented = GPT2Tokenizer.__doc__
assert 'from_pretrained("openai-community/gpt2")' in documented
assert "[15496, 995]" in documented and "[18435, 995]" in documented
assert gpt2_tokenizer("Hello world").input_ids == [15496, 995]
assert gpt2_tokenizer(" Hello world").input_ids == [18435, 995]
assert len(gpt2_tokenizer) == gpt2_tokenizer.vocab_size == 50257 and gpt2_tokenizer.pad_token is None
assert gpt2_tokenizer.bos_token_id == gpt2_tokenizer.eos_token_id == gpt2_tokenizer.unk_token_id == 50256

# %% [markdown]
# 在普通文本上，GPT-2 和 phi-2 给出的 id 相同（`"Test 123"` -> `[14402, 17031]`，即 notebook 03 里 phi-2 的真实 id）。二者的分歧在连续空格上：phi-2 用它新增的空白符 token 编码，GPT-2 则用 `Ġ` 片段逐个写出（id 220 就是一个空格）。

# %%
phi_tokenizer = AutoTokenizer.from_pretrained(TOKENIZERS / "phi")
code = "    return x"
print(f"{code!r}: GPT-2 {gpt2_tokenizer(code).input_ids}, phi-2 {phi_tokenizer(code).input_ids}")
assert gpt2_tokenizer("Test 123").input_ids == phi_tokenizer("Test 123").input_ids == [14402, 17031]
assert gpt2_tokenizer(code).input_ids == [220, 220, 220, 1441, 2124]
assert any(50257 <= i <= 50294 for i in phi_tokenizer(code).input_ids)

# %% [markdown]
# ## 第 2 步 · BOS 的取舍
#
# GPT-2 的分词器只有一个特殊 token `<|endoftext|>`，身兼三职，而且无论带不带特殊 token，它都从不在文本前面加 BOS。因此 `check_bos`（notebook 03）会拒绝它。

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error

assert gpt2_tokenizer("Test 123").input_ids == gpt2_tokenizer("Test 123", add_special_tokens=False).input_ids
with expect_error(TokenizerBOSError, match="does not prepend BOS"):
    check_bos(gpt2_tokenizer, "gpt2-124m")

# %% [markdown]
# 有两条出路，包里都已经用过：
#
# - **方案 A：由分词器在开头加 BOS**，就像真实的 Llama-2、Mistral 和 OPT 分词器那样，`check_bos` 能通过。transformers 的 GPT-2 分词器甚至接受一个 `add_bos_token` 参数，家族可以通过 `tokenizer_kwargs` 把它传进去。
# - **方案 B：由提示词构造器写出 BOS。** 分词器保持原样，把 id 加进 `SPECIAL_CASES` 以跳过检查，再让提示词构造器在第一个轮次的开头写上 `<|endoftext|>`。OpenVLA 对 phi-2 就是这么做的，而 phi-2 的分词器正是这个分词器再加 38 个 token。
#
# 在我们的文件上试试方案 A 的参数。在 transformers 5 上它会加上 BOS。在 4.57 上，从 `tokenizer.json` 构建的 fast GPT-2 分词器会接受这个参数，然后把它忽略：id 没有任何变化，也没有任何警告。标志说明不了什么，id 才说了算（notebook 03 在 Llama-2 上展示过同样的情况）。

# %%
from vla_backbone import compat

asked_for_bos = GPT2TokenizerFast.from_pretrained(GPT2_FILES, add_bos_token=True)
print(f"transformers {compat.TRANSFORMERS_VERSION}, add_bos_token=True: 'Test 123' -> {asked_for_bos('Test 123').input_ids}")
if compat.IS_V5:
    assert asked_for_bos("Test 123").input_ids == [50256, 14402, 17031]
    check_bos(asked_for_bos, "gpt2-124m")
else:
    assert asked_for_bos("Test 123").input_ids == [14402, 17031]
    with expect_error(TokenizerBOSError, match="does not prepend BOS"):
        check_bos(asked_for_bos, "gpt2-124m")

# %% [markdown]
# **我们选方案 B。** 它让 GPT-2 与 phi-2 遵循同样的 BOS 规则，在每个 transformers 版本上行为都一样，分词器文件也保持 GPT-2 的原样。代价是：`check_bos` 不再守护这个家族，而且只有经由构造器生成的提示词才以 BOS 开头（notebook 11 展示过 Qwen 在这方面的弱点）。所以这个保证落在构造器身上，第 8 步会加一项检查，确认它生成的提示词恰好以一个 BOS 开头。
#
# 第 5 步要用的注册表得先写出来，因为 `SPECIAL_CASES` 是按骨干网络 id 记录的。在包内部，这些 id 应写进 `vla_backbone/hf_causal.py` 里的 `SPECIAL_CASES`；这里我们只在当前内核里把它们加进这个集合。

# %%
# === Registry: backbone id -> HuggingFace hub repo ===
GPT2_MODELS = {
    "gpt2-124m": "openai-community/gpt2",
    "gpt2-355m": "openai-community/gpt2-medium",
    "gpt2-774m": "openai-community/gpt2-large",
    "gpt2-1.5b": "openai-community/gpt2-xl",
}
SPECIAL_CASES.update(GPT2_MODELS)
assert set(GPT2_MODELS) <= SPECIAL_CASES

# %% [markdown]
# ## 第 3 步 · 提示词构造器
#
# 每个家族都要指明自己的提示词格式。我们用一个简单的问答模板：先 `Q: ...`，再 `A: ...`，基于 `TurnPromptBuilder` 实现——轮次交替、删除 `<image>`、去除首尾空白，它都已经处理好了。构造器要说明 human 轮次怎么包装、回答以哪个 EOS 结尾；采用方案 B 时，它还要在第一个轮次前写上 BOS，并在生成最终提示词时保留它（默认的 `finish()` 会去掉开头的 BOS，那是为自己会加 BOS 的分词器准备的）。

# %%
from vla_backbone.errors import PromptTurnError
from vla_backbone.prompting import TurnPromptBuilder, openvla_action_prompt


class QAPromptBuilder(TurnPromptBuilder):
    bos = eos = EOT

    def wrap_human(self, message: str) -> str:
        return f"Q: {message}\nA: "

    def first_human_turn(self, message: str) -> str:
        # The BOS GPT-2's tokenizer does not add: the VLM splices image patches in right after it.
        return self.bos + self.wrap_human(message)

    def finish(self, prompt: str) -> str:
        # The hand-written BOS stays: only trailing whitespace goes.
        return prompt.rstrip()


question = openvla_action_prompt("Pick up the red cup")
builder = QAPromptBuilder("openvla")
print(repr(builder.get_potential_prompt(question)))
assert builder.get_potential_prompt(question) == f"{EOT}Q: What action should the robot take to pick up the red cup?\nA:"
assert builder.add_turn("human", "<image>\n" + question) == f"{EOT}Q: {question}\nA: "
assert builder.add_turn("gpt", "move left") == f"move left{EOT}"
assert builder.get_prompt() == f"{EOT}Q: {question}\nA: move left{EOT}"
with expect_error(PromptTurnError, match="must come from 'human'"):
    builder.add_turn("gpt", "again")


# %% [markdown]
# 用 GPT-2 的分词器编码后，提示词恰好以一个 `<|endoftext|>`（50256）开头，同一个 id 又作为 EOS 出现在回答末尾，和 phi-2 的提示词一样（notebook 04）。忘了写 BOS 的构造器，提示词开头就成了单词 `Q`。

# %%
class QAWithoutBOSPromptBuilder(QAPromptBuilder):
    def first_human_turn(self, message: str) -> str:
        return self.wrap_human(message)


def prompt_ids(builder_cls, tokenizer) -> list[int]:
    builder = builder_cls("openvla")
    builder.add_turn("human", question)
    builder.add_turn("gpt", "move left")
    return tokenizer(builder.get_prompt()).input_ids


ids = prompt_ids(QAPromptBuilder, gpt2_tokenizer)
without = prompt_ids(QAWithoutBOSPromptBuilder, gpt2_tokenizer)
print("with the builder's BOS:", ids[:4], "...", ids[-2:], "| without:", without[:4], "...")
assert ids[0] == 50256 and ids[1] != 50256 and [i for i, t in enumerate(ids) if t == 50256] == [0, len(ids) - 1]
# Without it, the prompt starts with the template's first word (`Q` here).
assert without == ids[1:] and QAPromptBuilder("openvla").wrap_human("").startswith(
    gpt2_tokenizer.convert_ids_to_tokens(without[0]))

# %% [markdown]
# **动手试试。** 把 `wrap_human` 里的模板改成 `f"User: {message}\nRobot: "`，重新运行这一步的各个单元格：字符串层面的断言会失败，因为它们逐字符地钉死了模板；token 层面的断言则照样通过，因为 BOS 规则与措辞无关。无论你最后在这里留下什么模板，第 8 步的契约检查都会再检查一遍提示词。

# %% [markdown]
# ## 第 4 步 · 微型副本：带 `tokenizer_dir=` 的 `TinySpec`
#
# 包根据 `vla_backbone.tiny.TINY_SPECS` 构建离线的微型副本：每个家族一项，写明模型类、Hub 配置中的关键字段（词表大小、特殊 id、是否绑定嵌入）、Hub 上 checkpoint 的存储 dtype、玩具级的宽度和深度，以及分词器文件在哪里。新家族只要添加一个 `TinySpec`，让 `tokenizer_dir` 指向它真实的分词器文件；`tiny_checkpoint` 就会像对内置家族一样，把微型副本构建一次，存进包的缓存（文件逐字节复制，旁边保存一个固定种子的随机模型）。GPT-2 的 Hub 配置（`openai-community/gpt2`）：50257 行，BOS = EOS = 50256，没有 PAD，1024 个位置，输入嵌入与输出嵌入绑定，权重以 float32 存储。
#
# 缓存按完整的 spec 区分微型副本，连分词器文件的每个字节都算在内：这里的 spec 和作业 A1 的 `"gpt2"` spec 只有完全一致时才共用一个副本；spec 一改，就会另建一个新副本，而不会沿用过时的旧副本。下面对复制文件的断言检查这个副本里装的确实是我们的文件。

# %%
from safetensors import safe_open
from transformers import AutoConfig

from vla_backbone.tiny import TINY_SPECS, TinySpec, tiny_checkpoint

TINY_SPECS["gpt2"] = TinySpec(
    "gpt2", "GPT2Config", "GPT2LMHeadModel",
    {"vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256, "n_positions": 1024, "tie_word_embeddings": True},
    torch.float32, {"n_embd": 64, "n_layer": 2, "n_head": 4}, tokenizer_dir=GPT2_FILES,
)
TINY_GPT2 = str(tiny_checkpoint("gpt2"))
print("tiny GPT-2 at", TINY_GPT2)
print(sorted(path.name for path in Path(TINY_GPT2).iterdir()))

# %%
assert all(filecmp.cmp(GPT2_FILES / name, Path(TINY_GPT2) / name, shallow=False)
           for name in ("tokenizer.json", "tokenizer_config.json")), f"{TINY_GPT2} holds other tokenizer files"
replica_config = AutoConfig.from_pretrained(TINY_GPT2)
assert (replica_config.vocab_size, replica_config.bos_token_id, replica_config.eos_token_id) == (50257, 50256, 50256)
assert replica_config.tie_word_embeddings and replica_config.n_embd == 64 and replica_config.n_layer == 2
assert replica_config.n_positions == 1024
with safe_open(Path(TINY_GPT2) / "model.safetensors", framework="pt") as weights:
    assert weights.get_tensor("transformer.wte.weight").dtype == torch.float32

# %% [markdown]
# ## 第 5 步 · 子类
#
# 现在写家族本身。`models` 就是第 2 步的注册表：骨干网络 id 映射到真实 GPT-2 权重所在的 Hub 仓库；`hf_hub_path=` 用我们的微型副本替换这个路径。GPT-2 的分词器没有 PAD token，所以和 phi-2 一样，家族添加一个专属的 `<|pad|>`，让填充与 EOS 互不混淆。`last_layer_finetune_modules` 用通用的访问方法拿嵌入和 LM head。另外，GPT-2 只学了 1024 个位置嵌入，每个位置一个：输入再长就会越界、直接崩溃，而包里 `llm_max_length` 的默认值是 2048（注册表也传这个值）。所以这个家族把它限制在模型的上下文长度以内。

# %%
from typing import Sequence

from torch import nn


class GPT2LLMBackbone(FamilyBackbone):
    family = "gpt2"
    models = GPT2_MODELS
    llm_cls_path = "transformers.GPT2LMHeadModel"
    decoder_layer_path = "transformers.models.gpt2.modeling_gpt2.GPT2Block"
    pad_token = "<|pad|>"
    context = 1024  # GPT-2's learned positions (config.n_positions)

    def __init__(self, llm_backbone_id: str, llm_max_length: int = 2048, **kwargs) -> None:
        super().__init__(llm_backbone_id, llm_max_length=min(llm_max_length, self.context), **kwargs)

    @property
    def prompt_builder_fn(self) -> type[TurnPromptBuilder]:
        return QAPromptBuilder

    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.get_input_embeddings(), self.llm.transformer.h[-1], self.llm.get_output_embeddings())


backbone = GPT2LLMBackbone("gpt2-124m", hf_hub_path=TINY_GPT2)
tokenizer = backbone.get_tokenizer()
rows = backbone.llm.get_input_embeddings().weight.shape[0]
print(type(backbone.llm).__name__, "| tokens:", len(tokenizer), "| pad:", tokenizer.pad_token, backbone.pad_token_id,
      f"| embedding rows: {replica_config.vocab_size} -> {rows}")

# %% [markdown]
# `<|pad|>` 拿到下一个空闲 id 50257，所以分词器有 50258 个 token，resize 到 64 的倍数后，50257 行变大为 50304 行：正是 nanoGPT 给 GPT-2 用的那个数（notebook 04）。LM head 与嵌入绑定，所以跟着一起变大。长度上限是 1024，再多一个 token 就真的超出了位置表。

# %%
assert isinstance(backbone.llm, GPT2LMHeadModel) and backbone.transformer_layer_cls is GPT2Block
assert len(tokenizer) == 50258 and tokenizer.pad_token == "<|pad|>" and backbone.pad_token_id == 50257
assert rows == 50304 and backbone.llm.get_output_embeddings().weight is backbone.llm.get_input_embeddings().weight
assert backbone.half_precision_dtype is torch.bfloat16
assert backbone.llm_max_length == tokenizer.model_max_length == backbone.llm.config.n_positions == 1024
with expect_error(IndexError, match="index out of range"), torch.no_grad():
    backbone.llm(input_ids=torch.zeros(1, 1025, dtype=torch.long))

# %% [markdown]
# 父类会拿 id 去 `models` 里核对；不完整的子类在构造时就会失败，并指出还缺哪些成员。这正是上游 OpenVLA 中 Mistral 和 Phi 类的缺陷（notebook 01），在这里还没加载任何权重就被发现了。

# %%
from vla_backbone.errors import UnknownBackboneError

with expect_error(UnknownBackboneError, match="Known gpt2 ids"):
    GPT2LLMBackbone("llama2-7b-pure", hf_hub_path=TINY_GPT2)


class Incomplete(FamilyBackbone):
    family, models = "gpt2", GPT2_MODELS
    llm_cls_path, decoder_layer_path = GPT2LLMBackbone.llm_cls_path, GPT2LLMBackbone.decoder_layer_path

    @property
    def prompt_builder_fn(self):
        return QAPromptBuilder


with expect_error(TypeError, match="last_layer_finetune_modules"):
    Incomplete("gpt2-124m", hf_hub_path=TINY_GPT2)

# %% [markdown]
# ## 第 6 步 · 注册表条目
#
# `get_llm_backbone_and_tokenizer(id)` 通过 `vla_backbone.registry.LLM_BACKBONES` 找到家族，这是一个从骨干网络 id 到家族类的字典。在包内部，要让新家族永久生效，需要把它的类加进 `FAMILIES`（`vla_backbone/families/__init__.py`），把它的 `TinySpec` 加进 `TINY_SPECS`，把分词器文件放进 `vla_backbone/tokenizers/`（登记在 `SHA256SUMS` 里，许可证写进 `NOTICE`），再把它在 Hub checkpoint 上实测的数据写进 `tests/test_tiny.py`（`HUB_FACTS`）；这些 notebook 把内置的五个家族写死在断言里，也得跟着看一遍。这里我们只是临时借用注册表：一个上下文管理器插入我们的 id，结束时再把它们删掉，即使中途出错也一样。有了第 4 步的 `TinySpec`，默认的 `source="tiny"` 就能为每个 GPT-2 id 找到微型副本：四种尺寸共用这一个家族副本。

# %%
import contextlib

import vla_backbone
from vla_backbone.registry import LLM_BACKBONES, hub_path


@contextlib.contextmanager
def registered(family_cls):
    """Register every id of `family_cls` while the block runs."""
    added = [backbone_id for backbone_id in family_cls.models if backbone_id not in LLM_BACKBONES]
    LLM_BACKBONES.update({backbone_id: family_cls for backbone_id in added})
    try:
        yield added
    finally:
        for backbone_id in added:
            del LLM_BACKBONES[backbone_id]


with registered(GPT2LLMBackbone) as added:
    print("registered:", added)
    assert set(GPT2_MODELS) <= set(vla_backbone.list_backbones())
    assert hub_path("gpt2-124m") == "openai-community/gpt2"
    loaded, loaded_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("gpt2-355m", source="tiny")
print(type(loaded).__name__, loaded.identifier, loaded.hf_hub_path, "| after the block:",
      "gpt2-355m" in vla_backbone.list_backbones())

# %%
assert isinstance(loaded, GPT2LLMBackbone) and loaded.identifier == "gpt2-355m" and loaded.hf_hub_path == TINY_GPT2
assert loaded_tokenizer is loaded.get_tokenizer()
assert not any(backbone_id.startswith("gpt2") for backbone_id in vla_backbone.list_backbones())
with expect_error(UnknownBackboneError, match="Unknown backbone id 'gpt2-124m'"):
    vla_backbone.get_llm_backbone_and_tokenizer("gpt2-124m")

# %% [markdown]
# ## 第 7 步 · FSDP 包装策略
#
# `HFCausalLLMBackbone.get_fsdp_wrapping_policy()` 会包装所有类型为 `transformer_layer_cls` 的模块，这个类由 `decoder_layer_path` 指定。`wrap_plan`（notebook 10）无需启动任何进程就能预览 FSDP 单元：根单元保留 token 嵌入、位置嵌入、最终归一化层和绑定的 LM head，此外每个 `GPT2Block` 各成一个单元。

# %%
from vla_backbone.fsdp import unit_parameter_counts, wrap_plan

plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
counts = unit_parameter_counts(backbone, backbone.get_fsdp_wrapping_policy())
for unit, numel in counts.items():
    print(f"  {unit or '(root)':24s} {numel:>10,} parameters")
assert plan == ["", "llm.transformer.h.0", "llm.transformer.h.1"]
assert sum(counts.values()) == sum(p.numel() for p in backbone.parameters())
root_modules = [backbone.llm.transformer.wte, backbone.llm.transformer.wpe, backbone.llm.transformer.ln_f]
assert counts[""] == sum(p.numel() for module in root_modules for p in module.parameters()) == (50304 + 1024) * 64 + 2 * 64

# %% [markdown]
# ## 第 8 步 · 每个家族都要通过的契约
#
# 每个骨干网络都要遵守的约定，包里写成了一个函数：`vla_backbone.contract.check_backbone_contract`。它检查：没有遗留的抽象成员；有 PAD token，且配置与分词器一致；右侧填充；`llm_max_length` 不超过模型的位置数；提示词构造器的 EOS 是单个特殊 token；BOS 检查（`SPECIAL_CASES` 中的 id 跳过）；嵌入矩阵的行数补齐到 64 的倍数；输入梯度钩子；`enable_gradient_checkpointing()` 能开启梯度检查点且不丢掉这个钩子（检查完会再关掉）；最后一层相关模块；FSDP 包装计划恰好是各解码器层；以及一次损失有限的前向传播。包自己的测试（`tests/test_families.py`）用它检查注册表里的每一个 id。检查不通过时，它抛出的 `AssertionError` 会写明哪里不对。
#
# 方案 B 把 BOS 挪进了提示词构造器，所以我们再加一项自己的检查，呼应 notebook 11：构造器生成的提示词必须恰好以一个 BOS 开头，因为图像紧跟在它后面。
#
# 第一次计算损失时，transformers 会提示 GPT-2 的配置里没有 `loss_type`。它本来会根据类名推断损失，而 `GPT2LMHeadModel` 出现得比 `*ForCausalLM` 这套命名更早，于是退回到默认的因果语言模型损失 `ForCausalLMLoss`——这正是该用的那个。

# %%
from vla_backbone.contract import check_backbone_contract
from vla_backbone.notebook import transformers_log


def check_prompt_starts_with_one_bos(backbone) -> None:
    """Raise AssertionError unless the builder's prompt, tokenized, starts with exactly one BOS (if there is a BOS)."""
    tokenizer = backbone.get_tokenizer()
    ids = prompt_ids(backbone.prompt_builder_fn, tokenizer)
    bos = tokenizer.bos_token_id
    if bos is not None and not (ids[0] == bos and ids[1] != bos):
        raise AssertionError(f"{backbone.identifier}: the prompt starts {ids[:2]}, not with exactly one BOS ({bos})")


with transformers_log() as notes:
    check_backbone_contract(backbone)
print("transformers log:", notes)
assert any("loss_type" in note and "ForCausalLMLoss" in note for note in notes)
check_prompt_starts_with_one_bos(backbone)
assert "ForCausalLM" not in type(backbone.llm).__name__ and backbone.llm.loss_function.__name__ == "ForCausalLMLoss"
lopsided = GPT2LLMBackbone("gpt2-124m", hf_hub_path=TINY_GPT2)
lopsided.tokenizer.padding_side = "left"
with expect_error(AssertionError, match="pads on the left"):
    check_backbone_contract(lopsided)
del lopsided

# %% [markdown]
# 对每个内置家族各取一个 id，做同样的两项检查：全部通过，可见这份契约没有提出任何包内家族尚未满足的要求。phi-2 和 Qwen 是作为特殊情况通过 BOS 检查的；Qwen 根本没有 BOS token，所以提示词检查对它不适用。

# %%
from vla_backbone.registry import get_llm_backbone_and_tokenizer

for backbone_id in ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]:
    builtin, builtin_tokenizer = get_llm_backbone_and_tokenizer(backbone_id)
    check_backbone_contract(builtin)
    check_prompt_starts_with_one_bos(builtin)
    first = builtin_tokenizer.convert_ids_to_tokens(prompt_ids(builtin.prompt_builder_fn, builtin_tokenizer)[0])
    print(f"{backbone_id:22s} passes; BOS check {'skipped' if backbone_id in SPECIAL_CASES else 'passed'}; "
          f"the prompt starts with {first!r}")
del builtin

# %% [markdown]
# ## 动手试试：故意把家族弄坏
#
# 下面每个变体只改动本 notebook 的一个决定。选一个，看看什么失败了、在哪里失败：是在构造时（`TypeError`、`TokenizerBOSError`），还是在契约检查里（`AssertionError`）。这个单元格会先把所有变体都跑一遍，并断言结果符合预期。然后在上面的单元格里亲手做同样的改动（例如在第 5 步设 `pad_token = None`），再重新运行。
#
# 最后一个变体是方案 A：把这些 id 从 `SPECIAL_CASES` 里拿掉，换一个不写 BOS 的构造器，并设 `tokenizer_kwargs = {"add_bos_token": True}`。在 transformers 5 上它能通过；在 4.57 上分词器忽略了这个参数，BOS 检查在构造时就把它拦下：这正是检查的本职。
#
# 下拉菜单用到的一切在“Run All”之后都还在：包缓存里的微型副本和分词器文件，以及 `SPECIAL_CASES` 里的 GPT-2 id。

# %%
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

from vla_backbone.notebook import explore


@contextlib.contextmanager
def not_special(backbone_ids):
    """Run the block with `backbone_ids` taken out of SPECIAL_CASES, then put them back."""
    removed = SPECIAL_CASES & set(backbone_ids)
    SPECIAL_CASES.difference_update(removed)
    try:
        yield
    finally:
        SPECIAL_CASES.update(removed)


class NoPad(GPT2LLMBackbone):
    pad_token = None


class AttentionAsLayer(GPT2LLMBackbone):
    decoder_layer_path = "transformers.models.gpt2.modeling_gpt2.GPT2Attention"


class TemplateWithoutBOS(GPT2LLMBackbone):
    @property
    def prompt_builder_fn(self):
        return QAWithoutBOSPromptBuilder


class OptionA(TemplateWithoutBOS):
    tokenizer_kwargs = {"add_bos_token": True}


# variant -> (family class, still a special case?, expected error type and words, or None when it passes)
VARIANTS = {
    "as written": (GPT2LLMBackbone, True, None),
    "not in SPECIAL_CASES": (GPT2LLMBackbone, False, (TokenizerBOSError, "does not prepend BOS")),
    "no last_layer_finetune_modules": (Incomplete, True, (TypeError, "last_layer_finetune_modules")),
    "no PAD token": (NoPad, True, (AssertionError, "has no PAD token")),
    "attention as decoder layer": (AttentionAsLayer, True, (AssertionError, "must be the last decoder layer")),
    "template without BOS": (TemplateWithoutBOS, True, (AssertionError, "not with exactly one BOS")),
    "option A (add_bos_token)": (OptionA, False, None if compat.IS_V5 else (TokenizerBOSError, "does not prepend BOS")),
}


def outcome(variant: str) -> tuple[type, str] | None:
    """Build the variant's backbone and run both checks: None if all pass, else the error's type and message."""
    family_cls, special, _ = VARIANTS[variant]
    with contextlib.nullcontext() if special else not_special(GPT2_MODELS):
        try:
            variant_backbone = family_cls("gpt2-124m", hf_hub_path=TINY_GPT2)
            check_backbone_contract(variant_backbone)
            check_prompt_starts_with_one_bos(variant_backbone)
        except (TypeError, TokenizerBOSError, AssertionError) as error:
            return type(error), str(error)
    return None


def try_variant(variant: str) -> str:
    result = outcome(variant)
    verdict = "passes" if result is None else f"{result[0].__name__}: {result[1]}"
    print(f"{variant}: {verdict}")
    return verdict


for variant, (_, _, expected) in VARIANTS.items():
    result = outcome(variant)
    if expected is None:
        assert result is None, (variant, result)
    else:
        assert result is not None and result[0] is expected[0] and expected[1] in result[1], (variant, result)
assert set(GPT2_MODELS) <= SPECIAL_CASES
first_verdict = explore(try_variant, variant=list(VARIANTS))
assert first_verdict == "passes"

# %% [markdown]
# ## 小结
# - 一个家族就是五个类属性（`family`、`models`、`llm_cls_path`、`decoder_layer_path`、`pad_token`）加两个 `@property` 成员（`prompt_builder_fn`、`last_layer_finetune_modules`）；其余的由 `FamilyBackbone` 和 `HFCausalLLMBackbone` 完成。家族需要时，可以用 `tokenizer_kwargs` 传额外的加载参数。
# - 用真实的分词器文件。GPT-2 的分词器就是去掉 38 个空白符 token 的 phi-2 分词器；OPT 的合并规则，以及 transformers 为 `openai-community/gpt2` 写明的 id，都证实了这一点。
# - 先定 BOS：要么由分词器在开头加上（`check_bos` 能通过，并继续为它把关），要么由提示词构造器写出，同时把 id 加进 `SPECIAL_CASES`，就像 phi-2 那样。判断分词器要看 id：`add_bos_token=True` 在 transformers 5 上会给 GPT-2 加上 BOS，在 4.57 上却什么也不做。
# - 带 `tokenizer_dir=` 的 `TinySpec` 让新家族拥有一个与内置家族构建方式相同的离线副本；注册表条目可以用上下文管理器临时借用。
# - `check_backbone_contract` 检查每个骨干网络都要遵守的约定；如果你的决定挪动了某个保证，就补一项自己的检查（这里是：每个提示词开头恰好一个 BOS）。
#
# ## 练习
# 1. 让方案 A 在每个版本上都成立：保留 GPT-2 的文件，但给家族写一个 `__init__`，在加载之后设置一个带 `<|endoftext|>` 的 `TemplateProcessing` post-processor。`SPECIAL_CASES` 要怎么处理？你又该在哪里自己调用 `check_bos`？
# 2. 注册一个以 `-chat` 结尾的额外 id，并为它配第二个提示词构造器，在第一个轮次加上系统提示词。再加一项检查：系统提示词恰好出现一次。
# 3. 用同样的方法移植 Pythia（`GPTNeoXForCausalLM`、`GPTNeoXLayer`）。七个成员里哪些要改？它的分词器不在包里：对你下载来的分词器文件，第 1 步的哪些检查还能做？
# 4. 用 `GPT2LLMBackbone` 代替 Llama-2 运行 notebook 11 的训练循环。拼接进去的图像还紧跟在 `<|endoftext|>` 后面吗？
