# %% [markdown]
# # 12 · 添加你自己的骨干网络
#
# 把 OpenVLA 移植到一个新的语言模型上，就是再写一个家族：一个小类，告诉 `HFCausalLLMBackbone` 加载哪个 HuggingFace 模型、哪个 block 算解码器层、提示词长什么样、最后微调哪些模块。难的不是这个类，而是围绕它要做的决定，其中最要紧的是 BOS——VLM 要把图像拼接在它后面。本 notebook 给这个包加上第六个家族 GPT-NeoX（即 Pythia 系列模型，无需申请访问，参数量从 70M 起），从分词器一直做到 FSDP 包装计划，而且不改包里的任何一个文件：所有东西都在这里定义，注册也只在需要的那段时间内有效。最后，新家族要通过每个内置家族都能通过的那套检查。作业 A1 会请你对 GPT-2 做同样的事。
#
# **你将学到**
# - 一个家族必须提供什么：五个类属性和两个 `@property` 成员；
# - 如何确定分词器的 BOS 行为，以及绕过 BOS 检查的两条路；
# - 如何在临时目录里构建一个离线的微型 checkpoint（配置、固定种子的权重、分词器）；
# - 如何为它编写 `FamilyBackbone` 子类、提示词构造器和注册表条目；
# - 如何检查结果：能否实例化、BOS、PAD、嵌入矩阵 resize、输入梯度钩子、损失、最后一层相关模块、FSDP 单元。

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
# | `models` | 骨干网络 id → hub 仓库 | `LLAMA2_MODELS` |
# | `llm_cls_path` | `*ForCausalLM` 类，写成点分字符串 | `"transformers.LlamaForCausalLM"` |
# | `decoder_layer_path` | FSDP 包装、梯度检查点重算的那个 block | `"...modeling_llama.LlamaDecoderLayer"` |
# | `pad_token` | 分词器没有 PAD 时要添加的 PAD token | `"<PAD>"` |
# | `prompt_builder_fn` | 提示词构造器类（property） | `-pure` id 用 `PurePromptBuilder` |
# | `last_layer_finetune_modules` | 输入嵌入、最后一个解码器层、LM head（property） | 三个模块 |
#
# 在 `FamilyBackbone` 里仍是抽象的成员只剩这两个 `@property`；类路径写成字符串，是为了让 `import vla_backbone` 不必导入 transformers 的所有模型类。

# %%
import torch

from vla_backbone.families import FAMILIES
from vla_backbone.families._common import FamilyBackbone

for family in FAMILIES:
    print(f"{family.family:8s} {family.llm_cls_path:34s} {family.decoder_layer_path.rsplit('.', 1)[1]:20s} pad={family.pad_token!r}")

# %%
assert FamilyBackbone.__abstractmethods__ == {"prompt_builder_fn", "last_layer_finetune_modules"}
assert all(not family.__abstractmethods__ for family in FAMILIES)
assert {family.family for family in FAMILIES} == {"llama2", "mistral", "phi", "qwen25", "opt"}

# %% [markdown]
# ## 架构：GPT-NeoX
#
# transformers 自带 `GPTNeoXForCausalLM`，它的解码器层是 `GPTNeoXLayer`；包里没有哪个家族用到它。一个微型配置（隐藏维度 64、两层、四个注意力头）几毫秒就能建好。它的模块有自己的命名：各层在 `gpt_neox.layers` 里，token 嵌入是 `gpt_neox.embed_in`。LM head 的名字甚至随 transformers 版本而变（4.57 上叫 `embed_out`，较新的 5.x 上叫 `lm_head`），所以我们的代码统一通过 `get_input_embeddings()` 和 `get_output_embeddings()` 去拿嵌入和 LM head，两个版本上都适用。

# %%
import time

from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXLayer

from vla_backbone import compat

assert not any("GPTNeoX" in family.llm_cls_path for family in FAMILIES)
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
        "max_position_embeddings": 2048}
start = time.perf_counter()
toy = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=1024, **TINY))
build_s = time.perf_counter() - start
head_name = "lm_head" if hasattr(toy, "lm_head") else "embed_out"
print(f"built in {build_s * 1000:.0f} ms;", [name for name, _ in toy.named_children()], [name for name, _ in toy.gpt_neox.named_children()])
print(f"transformers {compat.TRANSFORMERS_VERSION}: the head is `{head_name}`")

# %%
assert build_s < 2.0
assert all(isinstance(layer, GPTNeoXLayer) for layer in toy.gpt_neox.layers) and len(toy.gpt_neox.layers) == 2
assert toy.get_input_embeddings() is toy.gpt_neox.embed_in
assert toy.get_output_embeddings() is getattr(toy, head_name)
del toy

# %% [markdown]
# ## 第 1 步 · 分词器，以及 BOS 的取舍
#
# 包里附带了五个家族真实的分词器文件，但没有 Pythia 的（GPT-NeoX-20B 的字节级 BPE，5 万个 token）。所以我们的微型副本用一个在代码里训练的替身：在几条机器人指令上训练一个字节级 BPE，唯一的特殊 token 是 GPT-NeoX 的 `<|endoftext|>`，id 为 0，和真实分词器一样；然后用任何合并都不会产生的 `<unused_i>` token 把词表补齐到 1024 个。下面要紧的是真实分词器也具备的那一点：它不会添加 BOS。

# %%
import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOT = "<|endoftext|>"
CORPUS = [
    "pick up the red cup", "open the top drawer and put the sponge inside", "close the microwave door",
    "move the blue block to the left of the bowl", "stack the green block on the yellow block",
    "What action should the robot take to pick up the cup?", "Test 123",
]


def train_tokenizer(vocab_size: int = 1024) -> Tokenizer:
    """A byte-level BPE with one special token, no post-processor yet."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    data = json.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    for index in range(len(vocab), vocab_size):
        vocab[f"<unused_{index}>"] = index
    return Tokenizer.from_str(json.dumps(data))


base_tokenizer = train_tokenizer()
print("vocabulary:", base_tokenizer.get_vocab_size(), " <|endoftext|> id:", base_tokenizer.token_to_id(EOT))
assert base_tokenizer.get_vocab_size() == 1024 and base_tokenizer.token_to_id(EOT) == 0

# %% [markdown]
# 把它包装成 transformers 分词器，并让 `<|endoftext|>` 同时充当 BOS、EOS 和 UNK 之后，它不会往文本里添加任何东西，和真实的 GPT-NeoX 分词器一样，也和 phi-2 的分词器一样（包里的 phi-2 微型副本用的就是真实文件：`<|endoftext|>` 同样身兼三职，也不加 BOS）。因此 `check_bos`（notebook 03）会拒绝它。

# %%
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos
from vla_backbone.notebook import expect_error
from vla_backbone.prompting import PhiPromptBuilder
from vla_backbone.registry import checkpoint_path

ROLES = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}


def as_transformers(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **ROLES)


plain = as_transformers(base_tokenizer)
print("'Test 123' ->", plain("Test 123").input_ids, "with special tokens,", plain("Test 123", add_special_tokens=False).input_ids, "without")
phi_tokenizer = AutoTokenizer.from_pretrained(checkpoint_path("phi-2-3b"))
assert plain("Test 123").input_ids == plain("Test 123", add_special_tokens=False).input_ids
assert phi_tokenizer.bos_token == phi_tokenizer.eos_token == phi_tokenizer.unk_token == EOT
assert phi_tokenizer("Test 123").input_ids == phi_tokenizer("Test 123", add_special_tokens=False).input_ids
with expect_error(TokenizerBOSError, match="does not prepend BOS"):
    check_bos(plain, "pythia-70m")

# %% [markdown]
# 有两条出路，包里都已经用过：
#
# - **方案 A：由分词器在开头加 BOS。** 用一个 `TemplateProcessing` post-processor，在每段带特殊 token 编码的文本前面放上 `<|endoftext|>`，Llama-2 和 OPT 真实的分词器就是这么做的。`check_bos` 能通过。
# - **方案 B：由提示词构造器写出 BOS。** 分词器保持原样，把 id 加进 `SPECIAL_CASES` 以跳过检查，再让提示词构造器在第一个轮次的开头写上 `<|endoftext|>`，和 phi-2 的构造器一样。

# %%
with_bos = Tokenizer.from_str(base_tokenizer.to_str())
with_bos.post_processor = processors.TemplateProcessing(
    single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B", special_tokens=[(EOT, 0)]
)
option_a = as_transformers(with_bos)
print("'Test 123' ->", option_a("Test 123").input_ids, "with special tokens,", option_a("Test 123", add_special_tokens=False).input_ids, "without")
check_bos(option_a, "pythia-70m")
assert option_a("Test 123").input_ids == [0] + plain("Test 123").input_ids
for backbone_id, bos in (("llama2-7b-pure", "<s>"), ("opt-125m", "</s>")):
    shipped = AutoTokenizer.from_pretrained(checkpoint_path(backbone_id))
    assert type(shipped.backend_tokenizer.post_processor).__name__ == "TemplateProcessing"
    assert shipped.convert_ids_to_tokens(shipped("Test 123").input_ids)[0] == bos
assert "phi-2-3b" in SPECIAL_CASES and PhiPromptBuilder("openvla").add_turn("human", "hi").startswith(EOT)

# %% [markdown]
# **我们选方案 A。** 这样 `check_bos` 会一直守护这个家族：分词器一旦丢了 BOS，加载时就会当场报错，而不是让图像悄悄错位一个 token。不需要改动包级别的任何集合；而且每段文本都以 BOS 开头，不只是经由构造器生成的提示词（notebook 11 展示过 Qwen 在这方面的弱点）。代价是：这个保证存在于我们保存的分词器文件里。从别处加载的分词器如果不加 BOS，就会被 `check_bos` 拒绝（当场报错，这正是目的所在）；这时可以用这个 post-processor 重新保存它，或者改走方案 B。方案 B 的完整写法见第 3 步以及最后的“动手试试”。
#
# ## 第 2 步 · 临时目录里的微型 checkpoint
#
# checkpoint 就是一个目录，里面有 `config.json`、权重和分词器文件，正好是 `from_pretrained` 要读的东西。我们固定权重的随机种子，保证每次运行都构建出同一个模型，把所有文件存进一个新建的临时目录，再用 `AutoTokenizer` 和模型类加载回来。另一个目录存放同一个模型，但配的是方案 B 的分词器，供后面比较用。

# %%
import os
import tempfile

workdir = tempfile.TemporaryDirectory(prefix="tiny_gpt_neox_")


def save_checkpoint(tokenizer: PreTrainedTokenizerFast, name: str) -> str:
    path = os.path.join(workdir.name, name)
    config = GPTNeoXConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, **TINY)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPTNeoXForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


start = time.perf_counter()
CHECKPOINT = save_checkpoint(option_a, "option_a")
CHECKPOINT_B = save_checkpoint(plain, "option_b")
print(f"saved in {time.perf_counter() - start:.2f} s:", sorted(os.listdir(CHECKPOINT)))

# %% [markdown]
# 重新加载后，分词器依然会在开头加 BOS。我们检查的是编码出的 id，绝不看 `add_bos_token` 这类标志：在 transformers 5 上，重新加载的分词器报告这个标志为 False，实际上却照样加 BOS（4.57 上这里根本没有这个标志；详见 notebook 03）。权重则逐位原样恢复。

# %%
reloaded = AutoTokenizer.from_pretrained(CHECKPOINT)
reloaded_model = GPTNeoXForCausalLM.from_pretrained(CHECKPOINT)
check_bos(reloaded, "pythia-70m")
print("ids:", reloaded("Test 123").input_ids, "| add_bos_token flag:", getattr(reloaded, "add_bos_token", "(none on this version)"))
assert getattr(reloaded, "add_bos_token", False) is False
with torch.random.fork_rng(devices=[]):
    torch.manual_seed(0)
    fresh = GPTNeoXForCausalLM(reloaded_model.config)
for name, tensor in fresh.state_dict().items():
    torch.testing.assert_close(reloaded_model.state_dict()[name], tensor, rtol=0, atol=0)
assert os.path.isfile(os.path.join(CHECKPOINT, "config.json")) and reloaded_model.config.hidden_size == 64
assert reloaded("Test 123").input_ids == option_a("Test 123").input_ids
del reloaded_model, fresh

# %% [markdown]
# ## 第 3 步 · 提示词构造器
#
# 每个家族都要指明自己的提示词格式。我们用一个简单的问答模板：先 `Q: ...`，再 `A: ...`，基于 `TurnPromptBuilder` 实现——轮次交替、删除 `<image>`、去除首尾空白，它都已经处理好了。构造器只需说明 human 轮次怎么包装、回答以哪个 EOS 结尾。把 `bos` 也设上很重要：`finish()` 会去掉开头的 `bos`，保证 BOS 不会出现两次。

# %%
from vla_backbone.errors import PromptTurnError
from vla_backbone.prompting import TurnPromptBuilder, openvla_action_prompt


class QAPromptBuilder(TurnPromptBuilder):
    bos = eos = EOT

    def wrap_human(self, message: str) -> str:
        return f"Q: {message}\nA: "


question = openvla_action_prompt("Pick up the red cup")
builder = QAPromptBuilder("openvla")
print(repr(builder.get_potential_prompt(question)))
assert builder.get_potential_prompt(question) == "Q: What action should the robot take to pick up the red cup?\nA:"
assert builder.add_turn("human", "<image>\n" + question) == f"Q: {question}\nA: "
assert builder.add_turn("gpt", "move left") == f"move left{EOT}"
assert builder.get_prompt() == f"Q: {question}\nA: move left{EOT}"
assert builder.get_potential_prompt("and then?") == f"Q: {question}\nA: move left{EOT}Q: and then?\nA:"
with expect_error(PromptTurnError, match="must come from 'human'"):
    builder.add_turn("gpt", "again")


# %% [markdown]
# 采用方案 A 时，BOS 由分词器提供，所以提示词的 id 恰好以一个 `<|endoftext|>` 开头。方案 B 的构造器自己写出 `<|endoftext|>` 并保留它（phi-2 的做法：重写 `first_human_turn` 和 `finish`）。它配上自己的分词器，得到的 id 完全相同；若配上方案 A 的分词器，BOS 就会出现两次。

# %%
class QAWithBOSPromptBuilder(QAPromptBuilder):
    def first_human_turn(self, message: str) -> str:
        return self.bos + self.wrap_human(message)

    def finish(self, prompt: str) -> str:
        return prompt.rstrip()


def prompt_ids(builder_cls, tokenizer) -> list[int]:
    builder = builder_cls("openvla")
    builder.add_turn("human", question)
    return tokenizer(builder.get_prompt()).input_ids


ids_a = prompt_ids(QAPromptBuilder, option_a)
ids_b = prompt_ids(QAWithBOSPromptBuilder, plain)
ids_both = prompt_ids(QAWithBOSPromptBuilder, option_a)
print("option A:", ids_a[:5], " option B:", ids_b[:5], " both:", ids_both[:5])
assert ids_a == ids_b and ids_a[0] == 0 and ids_a[1] != 0
assert ids_both[:2] == [0, 0]

# %% [markdown]
# **动手试试。** 把 `wrap_human` 里的模板改成 `f"User: {message}\nRobot: "`，重新运行上面两个单元格：字符串层面的断言会失败，因为它们逐字符地钉死了模板；token 层面的断言则照样通过，因为 BOS 规则与措辞无关。无论你最后在这里留下什么模板，第 7 步的检查清单都会再检查一遍提示词。

# %% [markdown]
# ## 第 4 步 · 子类
#
# 现在写家族本身。最上面的注册表把骨干网络 id 映射到真实 Pythia 权重所在的 hub 仓库；`hf_hub_path=` 用我们的 checkpoint 替换这个路径。字节级分词器没有 PAD token，所以和 phi-2 一样，家族添加一个专属的 `<|pad|>`，让填充与 EOS 互不混淆。`last_layer_finetune_modules` 使用通用的访问方法，无论 LM head 叫什么名字都能工作。

# %%
from typing import Sequence

from torch import nn

# === Registry: backbone id -> HuggingFace hub repo ===
PYTHIA_MODELS = {
    "pythia-70m": "EleutherAI/pythia-70m",
    "pythia-160m": "EleutherAI/pythia-160m",
    "pythia-410m": "EleutherAI/pythia-410m",
    "pythia-1b": "EleutherAI/pythia-1b",
}


class GPTNeoXLLMBackbone(FamilyBackbone):
    family = "gpt_neox"
    models = PYTHIA_MODELS
    llm_cls_path = "transformers.GPTNeoXForCausalLM"
    decoder_layer_path = "transformers.models.gpt_neox.modeling_gpt_neox.GPTNeoXLayer"
    pad_token = "<|pad|>"

    @property
    def prompt_builder_fn(self) -> type[TurnPromptBuilder]:
        return QAPromptBuilder

    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.get_input_embeddings(), self.llm.gpt_neox.layers[-1], self.llm.get_output_embeddings())


backbone = GPTNeoXLLMBackbone("pythia-70m", hf_hub_path=CHECKPOINT)
tokenizer = backbone.get_tokenizer()
print(type(backbone.llm).__name__, "| tokens:", len(tokenizer), "| embedding rows:", backbone.llm.get_input_embeddings().weight.shape[0],
      "| pad id:", backbone.pad_token_id)

# %%
assert isinstance(backbone.llm, GPTNeoXForCausalLM) and backbone.transformer_layer_cls is GPTNeoXLayer
assert len(tokenizer) == 1025 and tokenizer.pad_token == "<|pad|>" and backbone.pad_token_id == 1024
assert backbone.llm.get_input_embeddings().weight.shape[0] == 1088
assert backbone.half_precision_dtype is torch.bfloat16

# %% [markdown]
# 父类会拿 id 去 `models` 里核对；不完整的子类在构造时就会失败，并指出还缺哪些成员。这正是上游 OpenVLA 中 Mistral 和 Phi 类的缺陷（notebook 01），在这里还没加载任何权重就被发现了。

# %%
from vla_backbone.errors import UnknownBackboneError

with expect_error(UnknownBackboneError, match="Known gpt_neox ids"):
    GPTNeoXLLMBackbone("llama2-7b-pure", hf_hub_path=CHECKPOINT)


class Incomplete(FamilyBackbone):
    family, models = "gpt_neox", PYTHIA_MODELS
    llm_cls_path, decoder_layer_path = GPTNeoXLLMBackbone.llm_cls_path, GPTNeoXLLMBackbone.decoder_layer_path

    @property
    def prompt_builder_fn(self):
        return QAPromptBuilder


with expect_error(TypeError, match="last_layer_finetune_modules"):
    Incomplete("pythia-70m", hf_hub_path=CHECKPOINT)

# %% [markdown]
# ## 第 5 步 · 注册表条目
#
# `get_llm_backbone_and_tokenizer(id)` 通过 `vla_backbone.registry.LLM_BACKBONES` 找到家族，这是一个从骨干网络 id 到家族类的字典。在包内部，要让新家族永久生效，就把它的类加进 `vla_backbone/families/__init__.py` 里的 `FAMILIES`。这里我们只是临时借用注册表：一个上下文管理器插入我们的 id，结束时再把它们删掉，即使中途出错也一样。`source=` 指向我们的 checkpoint；若用 `source="tiny"`，则需要在 `vla_backbone.tiny.TINY_SPECS` 里为这个家族添加一个 `TinySpec`（作业 A1 为 GPT-2 做的就是这件事）。

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


with registered(GPTNeoXLLMBackbone) as added:
    print("registered:", added)
    assert set(PYTHIA_MODELS) <= set(vla_backbone.list_backbones())
    assert hub_path("pythia-70m") == "EleutherAI/pythia-70m"
    loaded, loaded_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("pythia-160m", source=CHECKPOINT)
    with expect_error(ValueError, match="No tiny replica for family 'gpt_neox'"):
        vla_backbone.get_llm_backbone_and_tokenizer("pythia-70m", source="tiny")
print(type(loaded).__name__, loaded.identifier, "| after the block:", "pythia-160m" in vla_backbone.list_backbones())

# %%
assert isinstance(loaded, GPTNeoXLLMBackbone) and loaded.identifier == "pythia-160m"
assert loaded_tokenizer is loaded.get_tokenizer()
assert not any(backbone_id.startswith("pythia") for backbone_id in vla_backbone.list_backbones())
with expect_error(UnknownBackboneError, match="Unknown backbone id 'pythia-70m'"):
    vla_backbone.get_llm_backbone_and_tokenizer("pythia-70m", source=CHECKPOINT)

# %% [markdown]
# ## 第 6 步 · FSDP 包装策略
#
# `HFCausalLLMBackbone.get_fsdp_wrapping_policy()` 会包装所有类型为 `transformer_layer_cls` 的模块，这个类由 `decoder_layer_path` 指定。`wrap_plan`（notebook 10）无需启动任何进程就能预览 FSDP 单元：根单元保留嵌入、最终归一化层和 LM head，此外每个 `GPTNeoXLayer` 各成一个单元。

# %%
from vla_backbone.fsdp import unit_parameter_counts, wrap_plan

plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
counts = unit_parameter_counts(backbone, backbone.get_fsdp_wrapping_policy())
for unit, numel in counts.items():
    print(f"  {unit or '(root)':24s} {numel:>8,} parameters")
assert plan == ["", "llm.gpt_neox.layers.0", "llm.gpt_neox.layers.1"]
assert sum(counts.values()) == sum(p.numel() for p in backbone.parameters())
root_modules = [backbone.llm.get_input_embeddings(), backbone.llm.gpt_neox.final_layer_norm, backbone.llm.get_output_embeddings()]
assert counts[""] == sum(p.numel() for module in root_modules for p in module.parameters())

# %% [markdown]
# ## 第 7 步 · 每个家族都要通过的检查清单
#
# 包的测试会加载每个已注册的 id，并检查同一组性质。我们把这组检查写成一个函数，这样它既能检查我们的家族，也能检查内置家族。每项检查返回一个结论和一句简短说明；“skipped”表示这一项不适用（特殊情况下的 BOS 检查，或者分词器根本没有 BOS token 时的提示词检查）。最后一项呼应 notebook 11：构造器生成的提示词必须恰好以一个 BOS 开头，因为图像紧跟在它后面。

# %%
from vla_backbone.registry import backbone_class, checkpoint_path


def contract(family_cls, backbone_id: str, path: str) -> dict:
    """Check `family_cls(backbone_id, hf_hub_path=path)` the way the package tests check every family."""
    results = {}
    missing = sorted(family_cls.__abstractmethods__)
    results["instantiable"] = (not missing, ", ".join(missing) or "no abstract members left")
    if missing:
        return results
    try:
        backbone = family_cls(backbone_id, hf_hub_path=path)
    except TokenizerBOSError as error:
        results["BOS check"] = (False, str(error).split(":")[1].split(".")[0].strip())
        return results
    tokenizer, llm = backbone.get_tokenizer(), backbone.llm
    results["BOS check"] = (True, "skipped (SPECIAL_CASES)" if backbone_id in SPECIAL_CASES else "passed")
    results["embed_dim"] = (backbone.embed_dim == llm.config.hidden_size, str(backbone.embed_dim))
    results["pad_token_id"] = (backbone.pad_token_id is not None and backbone.pad_token_id == llm.config.pad_token_id,
                               str(backbone.pad_token_id))
    rows = llm.get_input_embeddings().weight.shape[0]
    results["embeddings % 64"] = (rows % 64 == 0 and rows >= len(tokenizer), f"{rows} rows for {len(tokenizer)} tokens")
    results["input-grad hook"] = (compat.has_input_grad_hook(llm), "training mode")
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", question)
    builder.add_turn("gpt", "move left")
    ids = torch.tensor([tokenizer(builder.get_prompt()).input_ids])
    loss = backbone(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
    results["finite loss"] = (bool(torch.isfinite(loss)), f"{loss.item():.3f}")
    layers = [name for name, module in backbone.named_modules() if isinstance(module, backbone.transformer_layer_cls)]
    embeddings, last, head = backbone.last_layer_finetune_modules
    results["last-layer modules"] = (
        embeddings is llm.get_input_embeddings() and head is llm.get_output_embeddings()
        and last is backbone.get_submodule(layers[-1]) and len(layers) == llm.config.num_hidden_layers,
        f"last layer: {layers[-1]}",
    )
    plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
    in_layer_list = all(isinstance(backbone.get_submodule(unit.rpartition(".")[0]), nn.ModuleList) for unit in plan[1:])
    results["FSDP units"] = (plan == ["", *layers] and len(layers) == llm.config.num_hidden_layers and in_layer_list,
                             f"{len(plan) - 1} units, first: {plan[1]}")
    bos, first = tokenizer.bos_token_id, ids[0, :2].tolist()
    results["one BOS in front"] = (True, "skipped (no BOS token)") if bos is None else (
        first[0] == bos and first[1] != bos, f"starts {first}")
    return results


def show(results: dict) -> list[str]:
    for check, (ok, detail) in results.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {check:20s} {detail}")
    return [check for check, (ok, _) in results.items() if not ok]


ALL_CHECKS = ["instantiable", "BOS check", "embed_dim", "pad_token_id", "embeddings % 64", "input-grad hook",
              "finite loss", "last-layer modules", "FSDP units", "one BOS in front"]
ours = contract(GPTNeoXLLMBackbone, "pythia-70m", CHECKPOINT)
assert show(ours) == [] and list(ours) == ALL_CHECKS

# %% [markdown]
# 用同一个函数检查每个内置家族的一个 id，都从包自己的微型副本加载：全部通过，可见这份清单没有提出任何包内家族尚未满足的要求。phi-2 和 Qwen 以特殊情况的身份通过 BOS 检查；Qwen 根本没有 BOS token，所以提示词检查对它不适用。

# %%
for backbone_id in ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]:
    results = contract(backbone_class(backbone_id), backbone_id, checkpoint_path(backbone_id))
    verdicts = {check: detail for check, (_, detail) in results.items()}
    print(f"{backbone_id:22s} {'all pass' if all(ok for ok, _ in results.values()) else 'FAILS'}   "
          f"BOS check: {verdicts['BOS check']}; one BOS in front: {verdicts['one BOS in front']}")
    assert all(ok for ok, _ in results.values()) and list(results) == ALL_CHECKS
    assert (verdicts["BOS check"] == "passed") == (backbone_id not in SPECIAL_CASES)

# %% [markdown]
# 同样的要求，包里也写成了一个函数：`vla_backbone.contract.check_backbone_contract`，包自己的测试（`tests/test_families.py`）就用它检查注册表里的每一个 id。检查不通过时，它抛出的 `AssertionError` 会写明哪里不对，所以给自己的家族写测试时，一行调用就够了。

# %%
from vla_backbone.contract import check_backbone_contract
from vla_backbone.notebook import expect_error

check_backbone_contract(GPTNeoXLLMBackbone("pythia-70m", hf_hub_path=CHECKPOINT))
lopsided = GPTNeoXLLMBackbone("pythia-70m", hf_hub_path=CHECKPOINT)
lopsided.tokenizer.padding_side = "left"
with expect_error(AssertionError, match="pads on the left"):
    check_backbone_contract(lopsided)

# %% [markdown]
# ## 动手试试：故意把家族弄坏
#
# 下面每个变体只改动本 notebook 的一个决定。选一个，看看哪些检查失败；这个单元格会先把所有变体都跑一遍，并断言失败的恰好是预期的那几项。然后在上面的单元格里亲手做同样的改动（例如在第 4 步设 `pad_token = None`，或在第 2 步用 `plain` 代替 `option_a`），再重新运行。
#
# 最后一个变体是正确实现的方案 B：不加 BOS 的分词器、负责写出 BOS 的构造器，以及只在一个 `with` 代码块内加入 `SPECIAL_CASES` 的 id。它能通过，BOS 检查显示为跳过。
#
# 内核运行期间，这些 checkpoint 一直留在它们的临时目录里，所以“Run All”之后下拉菜单照样能用；内核关闭时 Python 会删除这个目录（想早点删，就调用 `workdir.cleanup()`）。

# %%
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXAttention

from vla_backbone.notebook import explore


@contextlib.contextmanager
def special_case(backbone_id: str):
    """Skip the BOS check for `backbone_id` while the block runs."""
    SPECIAL_CASES.add(backbone_id)
    try:
        yield
    finally:
        SPECIAL_CASES.discard(backbone_id)


class NoPad(GPTNeoXLLMBackbone):
    pad_token = None


class AttentionAsLayer(GPTNeoXLLMBackbone):
    decoder_layer_path = "transformers.models.gpt_neox.modeling_gpt_neox.GPTNeoXAttention"


class BOSTwice(GPTNeoXLLMBackbone):
    @property
    def prompt_builder_fn(self):
        return QAWithBOSPromptBuilder


class OptionB(BOSTwice):
    pass


VARIANTS = {
    "as written": (GPTNeoXLLMBackbone, CHECKPOINT, set()),
    "tokenizer without BOS": (GPTNeoXLLMBackbone, CHECKPOINT_B, {"BOS check"}),
    "no last_layer_finetune_modules": (Incomplete, CHECKPOINT, {"instantiable"}),
    "no PAD token": (NoPad, CHECKPOINT, {"pad_token_id"}),
    "attention as decoder layer": (AttentionAsLayer, CHECKPOINT, {"last-layer modules", "FSDP units"}),
    "template writes BOS too": (BOSTwice, CHECKPOINT, {"one BOS in front"}),
    "option B (special case)": (OptionB, CHECKPOINT_B, set()),
}


def try_variant(variant: str) -> list[str]:
    family_cls, path, _ = VARIANTS[variant]
    context = special_case("pythia-70m") if family_cls is OptionB else contextlib.nullcontext()
    with context:
        return show(contract(family_cls, "pythia-70m", path))


for variant, (_, _, expected) in VARIANTS.items():
    with contextlib.redirect_stdout(None):
        assert set(try_variant(variant)) == expected, variant
assert "pythia-70m" not in SPECIAL_CASES
failed_checks = explore(try_variant, variant=list(VARIANTS))
assert failed_checks == []

# %% [markdown]
# ## 小结
# - 一个家族就是五个类属性（`family`、`models`、`llm_cls_path`、`decoder_layer_path`、`pad_token`）加两个 `@property` 成员（`prompt_builder_fn`、`last_layer_finetune_modules`）；其余的由 `FamilyBackbone` 和 `HFCausalLLMBackbone` 完成。
# - 先定 BOS：要么由分词器在开头加上（`TemplateProcessing` post-processor；`check_bos` 通过并持续守护），要么由提示词构造器写出，同时把 id 加进 `SPECIAL_CASES`。
# - 临时目录里的微型 checkpoint（配置、固定种子的权重、分词器）可以像其他 checkpoint 一样，通过 `hf_hub_path=` 或 `source=` 加载；注册表条目可以用上下文管理器临时借用。
# - 模块名在不同 transformers 版本间有差异时，用 `get_input_embeddings()` / `get_output_embeddings()` 去访问；在训练任何东西之前，先检查 FSDP 包装计划和检查清单。
#
# ## 练习
# 1. 给 `vla_backbone.tiny.TINY_SPECS` 添加一个 `gpt_neox` 的 `TinySpec`（就像作业 A1 为 GPT-2 做的那样），让 `get_llm_backbone_and_tokenizer("pythia-70m")` 在默认的 `source="tiny"` 下也能工作：让它的 `tokenizer_dir` 指向第 2 步保存的方案 A 分词器。现在你的 BOS 决定体现在哪里？
# 2. 注册一个以 `-chat` 结尾的额外 id，并为它配第二个提示词构造器，在第一个轮次加上系统提示词。给 `contract` 增加一项检查：系统提示词恰好出现一次。
# 3. 用同样的方法移植 Falcon（`FalconForCausalLM`、`FalconDecoderLayer`）。七个成员里哪些要改？`last_layer_finetune_modules` 需要用到哪些模块名？
# 4. 用 `GPTNeoXLLMBackbone` 代替 Llama-2 运行 notebook 11 的训练循环。拼接进去的图像还紧跟在 `<|endoftext|>` 后面吗？
