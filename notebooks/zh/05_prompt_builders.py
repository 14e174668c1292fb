# %% [markdown]
# # 05 · 提示词构造器与 OpenVLA 的动作提示词
#
# 语言模型在训练中学到的是一种精确到空格和换行的文本格式。一个 OpenVLA checkpoint 见过上百万次 `In: What action should the robot take to ...?\nOut: ` 后面跟着七个动作 token 的样本；推理时哪怕只差一个空格，它读到的就是训练里从没见过的 token 序列。负责写出这些字符串的小对象叫*提示词构造器*，每个骨干网络都会指明自己训练时用的是哪一个。本 notebook 把六个构造器放在同一段对话上并排比较，逐字节核对每个字符串，顺着动作提示词一路追到 token id，最后看清楚哪些 token 带有训练标签。
#
# **你将学到**
# - `PromptBuilder` 接口（`add_turn`、`get_potential_prompt`、`get_prompt`），以及所有构造器共用的轮次逻辑；
# - 六个构造器各自生成的确切字符串，连同其中的怪癖，以及为什么“修好”它们反而有害；
# - 哪个骨干网络 id 用哪个构造器；
# - OpenVLA 的动作提示词，以及训练时 `Out:` 后面有空格、推理时却没有的问题（openvla#104）；
# - 一段对话如何变成 token id 和标签，以及为什么只有动作 token（外加 EOS）带标签。

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
# ## 接口：三个方法加一个模型家族名
#
# `PromptBuilder(model_family, system_prompt=None)` 是一个抽象类。`model_family`（VLA 训练用 `"openvla"`，它所继承的 VLM 用 `"prismatic"`）只用来选择默认的系统提示词；没有系统提示词的模板会直接忽略它。对话按轮次逐步构建：
#
# - `add_turn(role, message)` 追加一个轮次，并且**返回它追加的那段文本**（训练代码会把这一段单独送进分词器，本 notebook 最后我们也会这么做）；
# - `get_potential_prompt(message)` 给出“如果用户接下来说了 `message`”时提示词的样子，但不改变构造器本身；
# - `get_prompt()` 返回到目前为止的完整对话，可以直接交给分词器。

# %%
import inspect

from vla_backbone.notebook import expect_error
from vla_backbone.prompting import (
    SYS_PROMPTS,
    LLaMa2ChatPromptBuilder,
    MistralInstructPromptBuilder,
    PhiPromptBuilder,
    PromptBuilder,
    PurePromptBuilder,
    QwenPromptBuilder,
    TurnPromptBuilder,
    VicunaV15ChatPromptBuilder,
    openvla_action_prompt,
)

print("PromptBuilder" + str(inspect.signature(PromptBuilder.__init__)).replace("self, ", ""))
for name in sorted(PromptBuilder.__abstractmethods__):
    print(f"  {name}{inspect.signature(getattr(PromptBuilder, name))}")
assert PromptBuilder.__abstractmethods__ == {"add_turn", "get_potential_prompt", "get_prompt"}
with expect_error(TypeError, match="abstract"):
    PromptBuilder("openvla")

# %% [markdown]
# 先看最小的对话：一个 human 轮次，用的是 OpenVLA 那套朴素的 `In:`/`Out:` 模板。`add_turn` 原样返回它追加的内容——这里 `Out:` 后面带一个空格——而 `get_prompt` 会去掉末尾的空白，所以交给分词器的提示词以 `Out:` 结尾。

# %%
builder = PurePromptBuilder("openvla")
appended = builder.add_turn("human", "What is on the table?")
print("add_turn returned:", repr(appended))
print("get_prompt():     ", repr(builder.get_prompt()))
assert appended == "In: What is on the table?\nOut: "
assert builder.get_prompt() == "In: What is on the table?\nOut:"

# %% [markdown]
# `get_potential_prompt` 是一次预览：它在现有文本后面再拼上一个 human 轮次，构造器本身保持不变。交互式演示可以借它实时显示用户正在输入的内容对应的提示词，而不必真的提交这一轮。

# %%
fresh = PurePromptBuilder("openvla")
preview = fresh.get_potential_prompt("What is on the table?")
print(repr(preview))
assert preview == "In: What is on the table?\nOut:"
assert fresh.get_prompt() == "" and fresh.turn_count == 0

# %% [markdown]
# ## 共用的轮次逻辑：`TurnPromptBuilder`
#
# 上游的 Prismatic 在每个构造器里都复制了一份几乎相同的 `add_turn`。这里只写一次，放在 `vla_backbone/prompting/base_prompter.py` 的 `TurnPromptBuilder` 中：
#
# 1. 角色必须按 `human`、`gpt`、`human`……交替出现（否则抛出 `PromptTurnError`）；
# 2. 每条消息都会去掉 `<image>` 占位符和首尾空白（`clean`）；
# 3. 空的 gpt 消息会变成一个空格；
# 4. 第一个 human 轮次可以和后面的不一样（`first_human_turn`：加上系统提示词，或者手写一个 BOS）；
# 5. 最终的提示词还要经过 `finish`（默认行为：去掉开头的 `<s>`，再去掉末尾空白）。
#
# 来读一下这个共用的 `add_turn`：

# %%
print(inspect.getsource(TurnPromptBuilder.add_turn))

# %% [markdown]
# 具体的构造器只重写自己需要的钩子方法。下表是直接从类本身算出来的：`Pure` 只需要一个方法，`Qwen` 五个全都重写了，而没有一个重新定义 `add_turn`。

# %%
BUILDERS = [
    PurePromptBuilder,
    LLaMa2ChatPromptBuilder,
    VicunaV15ChatPromptBuilder,
    MistralInstructPromptBuilder,
    PhiPromptBuilder,
    QwenPromptBuilder,
]
HOOKS = ("wrap_human", "wrap_gpt", "first_human_turn", "finish", "get_prompt")
overrides = {cls.__name__: [hook for hook in HOOKS if hook in vars(cls)] for cls in BUILDERS}
for name, hooks in overrides.items():
    print(f"{name:30s} {', '.join(hooks)}")

assert all(issubclass(cls, TurnPromptBuilder) and "add_turn" not in vars(cls) for cls in BUILDERS)
assert overrides["PurePromptBuilder"] == ["wrap_human"]
assert overrides["MistralInstructPromptBuilder"] == ["wrap_human"]
assert overrides["QwenPromptBuilder"] == list(HOOKS)

# %% [markdown]
# ## 六个构造器，同一段对话
#
# 现在让每个构造器处理同样的两个轮次。human 消息故意写得很乱——一个 `<image>` 占位符、一个换行、两边都有空格——数据集里的对话往往就是这样。有四个模板会插入默认的系统提示词，`openvla` 和 `prismatic` 用的是同一句话：

# %%
SYS = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the user "
    "provides, and assist the user with a variety of tasks using natural language."
)
assert SYS_PROMPTS["openvla"] == SYS_PROMPTS["prismatic"] == SYS

CONVERSATION = [("human", "<image>\n  What is on the table?  "), ("gpt", "A red cup.")]


def build(builder_cls, conversation, model_family="openvla"):
    """A fresh builder with every turn of `conversation` added."""
    builder = builder_cls(model_family)
    for role, message in conversation:
        builder.add_turn(role, message)
    return builder


# %% [markdown]
# 下面把期望的训练提示词完整写出来（`SYS` 代表上面那句话）。并排对照着读：各模板的包装方式不同，对文本结尾的处理也各不相同。

# %%
EXPECTED_TRAINING = {
    PurePromptBuilder: "In: What is on the table?\nOut: A red cup.</s>",
    LLaMa2ChatPromptBuilder: "[INST] <<SYS>\n" + SYS + "\n<</SYS>>\n\nWhat is on the table? [/INST] A red cup.</s>",
    VicunaV15ChatPromptBuilder: SYS + " USER: What is on the table? ASSISTANT: A red cup.</s>",
    MistralInstructPromptBuilder: "[INST] What is on the table? [/INST] A red cup.</s>",
    PhiPromptBuilder: "<|endoftext|>Input: What is on the table?\nOutput: A red cup.\n<|endoftext|>",
    QwenPromptBuilder: "<|im_start|>system\n" + SYS + "<|im_end|>\n<|im_start|>user\nWhat is on the table?<|im_end|>\n"
    "<|im_start|>assistant\nA red cup.<|im_end|><|endoftext|>",
}
for cls in BUILDERS:
    prompt = build(cls, CONVERSATION).get_prompt()
    print(f"{cls.__name__:30s} {prompt.replace(SYS, '{SYS}')!r}")
    assert prompt == EXPECTED_TRAINING[cls], cls.__name__

# %% [markdown]
# 推理时机器人只提问：构造器里只有一个 human 轮次，剩下的由模型来写。下面就是此时各模板交给分词器的提示词。其中五个在冒号或 `[/INST]` 之后立即结束；Qwen 则保留了 `assistant` 后面的换行。

# %%
EXPECTED_INFERENCE = {
    PurePromptBuilder: "In: What is on the table?\nOut:",
    LLaMa2ChatPromptBuilder: "[INST] <<SYS>\n" + SYS + "\n<</SYS>>\n\nWhat is on the table? [/INST]",
    VicunaV15ChatPromptBuilder: SYS + " USER: What is on the table? ASSISTANT:",
    MistralInstructPromptBuilder: "[INST] What is on the table? [/INST]",
    PhiPromptBuilder: "<|endoftext|>Input: What is on the table?\nOutput:",
    QwenPromptBuilder: "<|im_start|>system\n" + SYS + "<|im_end|>\n<|im_start|>user\nWhat is on the table?<|im_end|>\n"
    "<|im_start|>assistant\n",
}
for cls in BUILDERS:
    via_turn = build(cls, CONVERSATION[:1]).get_prompt()
    via_preview = cls("openvla").get_potential_prompt(CONVERSATION[0][1])
    print(f"{cls.__name__:30s} {via_turn.replace(SYS, '{SYS}')!r}")
    assert via_turn == via_preview == EXPECTED_INFERENCE[cls], cls.__name__

# %% [markdown]
# **动手试试：** 把 `CONVERSATION` 里的 gpt 消息改一下（比如改成 `"Two spoons."`），重新运行 `EXPECTED_TRAINING` 那个单元格，读一读断言失败的信息；再修改期望的字符串，直到断言重新通过。这样你就清楚每个模板会把回答放在哪里了。
#
# ## 哪个骨干网络用哪个构造器
#
# 每个骨干网络通过 `prompt_builder_fn` 给出一个构造器**类**，VLM 为每个样本实例化一次。选哪个由 id 决定：`*-pure` 模型从没做过对话微调，用朴素模板；对话模型则用它们微调时的模板。有了微型副本，以推理模式（只建架构，不加载预训练权重）加载全部 id 很快：

# %%
import vla_backbone

backbones = {}
for backbone_id in vla_backbone.list_backbones():
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer(backbone_id, inference_mode=True)
    backbones[backbone_id] = backbone
    print(f"{backbone_id:26s} {backbone.llm_family:8s} {backbone.prompt_builder_fn.__name__}")

# %%
assert backbones["llama2-7b-chat"].prompt_builder_fn is LLaMa2ChatPromptBuilder
assert backbones["llama2-7b-pure"].prompt_builder_fn is PurePromptBuilder
assert backbones["vicuna-v15-7b"].prompt_builder_fn is VicunaV15ChatPromptBuilder
assert backbones["mistral-v0.1-7b-instruct"].prompt_builder_fn is MistralInstructPromptBuilder
assert backbones["phi-2-3b"].prompt_builder_fn is PhiPromptBuilder
assert backbones["qwen25-0_5b-pure"].prompt_builder_fn is QwenPromptBuilder


def expected_builder(backbone_id, family):
    """The rule behind the table above."""
    if family in ("qwen25", "phi"):
        return {"qwen25": QwenPromptBuilder, "phi": PhiPromptBuilder}[family]
    if backbone_id.endswith("-pure") or family == "opt":
        return PurePromptBuilder
    if backbone_id.endswith("-chat"):
        return LLaMa2ChatPromptBuilder
    if backbone_id.endswith("-instruct"):
        return MistralInstructPromptBuilder
    if backbone_id.startswith("vicuna-"):
        return VicunaV15ChatPromptBuilder
    raise KeyError(backbone_id)


for backbone_id, backbone in backbones.items():
    assert backbone.prompt_builder_fn is expected_builder(backbone_id, backbone.llm_family), backbone_id

# %% [markdown]
# 所有 Qwen-2.5 的 id（包括 `-pure`）都用 ChatML 模板，这与 MiniVLA 一致。
#
# 分词器也顺带拿到了：下面每个构造器保留一个分词器（三个 Llama 模板都用 Llama-2 的），供后面使用。

# %%
TOKENIZERS = {
    PurePromptBuilder: backbones["llama2-7b-pure"].tokenizer,
    LLaMa2ChatPromptBuilder: backbones["llama2-7b-chat"].tokenizer,
    VicunaV15ChatPromptBuilder: backbones["vicuna-v15-7b"].tokenizer,
    MistralInstructPromptBuilder: backbones["mistral-v0.1-7b-instruct"].tokenizer,
    PhiPromptBuilder: backbones["phi-2-3b"].tokenizer,
    QwenPromptBuilder: backbones["qwen25-0_5b-pure"].tokenizer,
}

# %% [markdown]
# ## 逐个看怪癖
#
# 下面每个怪癖看上去都像是该顺手清理掉的地方。其实不然：OpenVLA 或 Prismatic 的 checkpoint 就是在这些一字节不差的文本上训练出来的，构造器必须原样复现。
#
# ### `<image>` 被删掉，消息被去除首尾空白
#
# LLaVA 格式的数据集用文本里的 `<image>` 标记图片的位置。但 VLM 从不把图片放进文本：它把投影后的图像 patch 作为嵌入，拼接在 BOS 之后（见 notebook 11）。所以占位符要删掉，消息也要去掉首尾空白。

# %%
assert TurnPromptBuilder.clean("<image>\n  What is on the table?  ") == "What is on the table?"
assert all("<image>" not in build(cls, CONVERSATION).get_prompt() for cls in BUILDERS)

# %% [markdown]
# ### 空回答变成一个空格
#
# 内容为空的 gpt 轮次会写成 `" "` 再加上轮次结束标记。用朴素模板时，提示词里 `Out:` 后面因此会有两个空格：一个来自 human 轮次，一个代替了空回答。

# %%
empty = PurePromptBuilder("openvla")
empty.add_turn("human", "What is on the table?")
appended = empty.add_turn("gpt", "")
print(repr(appended), repr(empty.get_prompt()))
assert appended == " </s>"
assert empty.get_prompt() == "In: What is on the table?\nOut:  </s>"
for cls in BUILDERS:
    assert build(cls, [("human", "x"), ("gpt", "")]).get_prompt() == build(cls, [("human", "x"), ("gpt", " ")]).get_prompt()

# %% [markdown]
# 默认的 `finish` 还会去掉开头的 `<s>`：分词器自己会加 BOS，如果文本里再写一个，就会出现两次。这几个模板没有一个以 `<s>` 开头，所以这只是一道保险。

# %%
assert PurePromptBuilder("openvla").finish("<s>In: x\nOut: ") == "In: x\nOut:"

# %% [markdown]
# ### LLaMa2Chat：只有一个 `>` 的 `<<SYS>`
#
# Meta 官方的 Llama-2-chat 格式用 `<<SYS>>` 开启系统提示词块。Prismatic 的构造器写成了 `<<SYS>`——少了一个 `>`——结尾的 `<</SYS>>` 倒是正确的。这是个笔误，但我们保留它：Prismatic 发布的 `llama2-chat+7b` 和 `llama2-chat+13b` 这两个 VLM 就是在这个笔误上训练的，这些 checkpoint 认的就是它。如果把它“修好”，推理时模型拿到的 token 就和训练时学到的不一样，不会有任何报错，只会让效果静默地变差。

# %%
chat_prompt = build(LLaMa2ChatPromptBuilder, CONVERSATION).get_prompt()
assert chat_prompt.startswith("[INST] <<SYS>\n" + SYS + "\n<</SYS>>\n\n")
assert "<<SYS>>" not in chat_prompt and chat_prompt.count("<</SYS>>") == 1

# %% [markdown]
# 只有第一个 human 轮次带系统提示词块；后面的轮次就是普通的 `[INST] ... [/INST] `。

# %%
chat = build(LLaMa2ChatPromptBuilder, CONVERSATION)
assert chat.add_turn("human", "Where is it?") == "[INST] Where is it? [/INST] "

# %% [markdown]
# ### Vicuna：系统提示词一句话，后接一个空格
#
# Vicuna v1.5 没有 `SYSTEM:` 标签：系统提示词就是一句普通的话，后面接一个空格，再接 `USER:`。

# %%
vicuna_prompt = build(VicunaV15ChatPromptBuilder, CONVERSATION).get_prompt()
assert vicuna_prompt.startswith(SYS + " USER: What is on the table? ASSISTANT: ")

# %% [markdown]
# ### Phi：BOS 手写，只去掉末尾空白
#
# Phi-2 的分词器不会添加 BOS（见 notebook 04），可 VLM 需要一个开头的 token，好把图像 patch 拼在它后面。所以 `PhiPromptBuilder` 在第一个 human 轮次前面写上 `<|endoftext|>`（phi-2 的 BOS，同时也是它的 EOS）——只在第一个轮次写。它还重写了 `finish`：默认的 `finish` 会从提示词开头删掉构造器的 `bos`，而 Phi 的 `bos` 恰恰就是它刚刚手写上去的那个 `<|endoftext|>`。因此 Phi 的 `finish` 只去掉末尾空白。

# %%
phi = PhiPromptBuilder("openvla")
first = phi.add_turn("human", "What is on the table?")
phi.add_turn("gpt", "A red cup.")
second = phi.add_turn("human", "Where is it?")
print(repr(first), repr(second))
assert first.startswith("<|endoftext|>Input: ") and not second.startswith("<|endoftext|>")
assert phi.get_prompt() == phi.prompt.rstrip() and phi.get_prompt().startswith("<|endoftext|>")
assert not TurnPromptBuilder.finish(phi, phi.prompt).startswith("<|endoftext|>")  # what the default would do

# %% [markdown]
# 分词器把手写的这段文本变成 phi-2 的 BOS id，并且不会在它前面再加任何东西：

# %%
phi_tokenizer = TOKENIZERS[PhiPromptBuilder]
phi_ids = phi_tokenizer(phi.get_prompt()).input_ids
print(phi_ids[:6], phi_tokenizer.convert_ids_to_tokens(phi_ids[:3]))
assert phi_ids[0] == phi_tokenizer.bos_token_id == phi_tokenizer.eos_token_id and phi_ids[1] != phi_ids[0]

# %% [markdown]
# ### Qwen：完全不去空白，回答之后加 `<|endoftext|>`
#
# ChatML 在每个角色标头后面都有一个换行，模型训练时就是从 `assistant\n` 之后开始写回答的。所以 Qwen 构造器从不去空白：它的推理提示词以这个换行结尾。在 gpt 轮次之后，`get_prompt` 会把最后的 `\n` 换成 `<|endoftext|>`，让模型也学会文本在哪里结束。构造器内部的文本仍然保留换行；一旦接上下一个 human 轮次，这个替换也就不再出现。

# %%
qwen = build(QwenPromptBuilder, CONVERSATION)
assert qwen.get_potential_prompt("Where is it?").endswith("<|im_start|>assistant\n")
assert qwen.prompt.endswith("A red cup.<|im_end|>\n")
assert qwen.get_prompt().endswith("A red cup.<|im_end|><|endoftext|>")
qwen.add_turn("human", "Where is it?")
assert qwen.get_prompt().endswith("<|im_start|>assistant\n") and "<|endoftext|>" not in qwen.get_prompt()

# %% [markdown]
# Qwen 没有 BOS token；Qwen 提示词的第一个 token 是模板写出的 `<|im_start|>`：

# %%
qwen_tokenizer = TOKENIZERS[QwenPromptBuilder]
qwen_ids = qwen_tokenizer(qwen.get_prompt()).input_ids
assert qwen_tokenizer.bos_token_id is None
assert qwen_ids[0] == qwen_tokenizer.convert_tokens_to_ids("<|im_start|>")

# %% [markdown]
# ## 轮次顺序出错
#
# 构造器会记录轮次：偶数轮次必须来自 `human`，奇数轮次必须来自 `gpt`。否则就抛出 `PromptTurnError`（它是 `ValueError` 的子类），并给出轮次编号和期望的角色。一段由模型开头的对话，或者连续两条 human 消息，都是数据上的 bug；不拦下来的话，就会生成一个模型从未见过的提示词结构。

# %%
from vla_backbone.errors import PromptTurnError

with expect_error(PromptTurnError, match="turn 0 must come from 'human'"):
    PurePromptBuilder("openvla").add_turn("gpt", "A red cup.")
with expect_error(PromptTurnError, match="turn 1 must come from 'gpt'"):
    build(PurePromptBuilder, CONVERSATION[:1]).add_turn("human", "Hello again")
assert issubclass(PromptTurnError, ValueError)

# %% [markdown]
# ## OpenVLA 的动作提示词
#
# OpenVLA 只问一个问题，而且问法永远一样：`openvla_action_prompt(instruction)` 把指令转成小写再包进固定句式。用 Pure 构造器（OpenVLA-7B 基于 `llama2-7b-pure`），推理提示词是：

# %%
question = openvla_action_prompt("Pick up the cup")
inference_builder = PurePromptBuilder("openvla")
inference_builder.add_turn("human", question)
inference_prompt = inference_builder.get_prompt()
print(repr(inference_prompt))
assert question == "What action should the robot take to pick up the cup?"
assert inference_prompt == "In: What action should the robot take to pick up the cup?\nOut:"

# %% [markdown]
# 训练时，同一个构造器还会收到回答：七个动作 token，由 `ActionTokenizer` 写成文本（每一维先裁剪到 [-1, 1]，再切成 256 个区间，第 *b* 个区间写成 token id `vocab_size - b`，也就是词表里最少被用到的那一端）。在微型副本上，这些 id 解码出来是训练语料里的一些奇怪片段——这很正常；在 Llama-2 上它们是很少用到的 token。

# %%
import torch

from vla_backbone.actions import ActionTokenizer

tokenizer = TOKENIZERS[PurePromptBuilder]
action_tokenizer = ActionTokenizer(tokenizer)
action = torch.tensor([0.1, -0.2, 0.3, 0.0, 0.5, -1.0, 1.0])
action_ids = action_tokenizer.encode(action).tolist()
action_text = action_tokenizer(action)
print("action ids: ", action_ids)
print("action text:", repr(action_text))
assert len(action_ids) == 7
assert all(tokenizer.vocab_size - 256 <= i < tokenizer.vocab_size for i in action_ids)

# %% [markdown]
# 训练提示词保留了 `Out:` 后面的空格：`get_prompt` 只去掉整段文本末尾的空白，而现在的末尾是 `</s>`。

# %%
training_builder = PurePromptBuilder("openvla")
training_builder.add_turn("human", question)
training_builder.add_turn("gpt", action_text)
training_prompt = training_builder.get_prompt()
print(repr(training_prompt[:70]), "...")
assert training_prompt == "In: What action should the robot take to pick up the cup?\nOut: " + action_text + "</s>"
assert training_prompt.startswith(inference_prompt + " ")

# %% [markdown]
# ### openvla#104：训练时有空格，推理时没有
#
# 也就是说，模型训练时看到的是 `Out: ` 加动作，推理时却用 `Out:` 来提问。落到 token 层面（微型 Llama-2 分词器，开头会加 BOS `<s>` = 1）：

# %%
inference_ids = tokenizer(inference_prompt).input_ids
training_ids = tokenizer(training_prompt).input_ids
first_difference = next(i for i, (a, b) in enumerate(zip(inference_ids, training_ids)) if a != b)
print("inference:", inference_ids, tokenizer.convert_ids_to_tokens(inference_ids))
print("training: ", training_ids[: first_difference + 1], tokenizer.convert_ids_to_tokens(training_ids[: first_difference + 1]), "...")
print(f"first difference at position {first_difference}: "
      f"{tokenizer.convert_ids_to_tokens(inference_ids[first_difference])!r} vs "
      f"{tokenizer.convert_ids_to_tokens(training_ids[first_difference])!r}")
assert inference_ids != training_ids[: len(inference_ids)]

# %% [markdown]
# 推理 id **不是**训练 id 的前缀：模型被要求接着写一个训练时从没见过的序列。根据上游代码，在真实的 Llama-2 分词器上，`Out:` 后面的空格会单独成为一个 token（`▁`，id 29871），所以两个序列恰好差这一个 token；上游的 `predict_action` 的修补办法是：只要提示词不是以 29871 结尾，就在末尾补上它（openvla#104）。这个修补只适用于 Llama-2 的词表。我们的微型分词器把这个空格并进了一个更大的 token（`?\nOut:▁`），补一个 id 在这里没用。把提示词*连同*空格一起分词才行；不管用什么分词器，都应该检查推理 id 是不是训练 id 的前缀：

# %%
repaired_ids = tokenizer(inference_prompt + " ").input_ids
print(repaired_ids)
assert repaired_ids == training_ids[: len(repaired_ids)]

# %% [markdown]
# 这个不一致是怎么来的？OpenVLA 的前身 Prismatic 按轮次逐个分词，并且会把每个 Llama 轮次右侧的空白去掉，所以它训练时的 human 轮次和推理提示词一样，都以 `Out:` 结尾。OpenVLA 的动作数据集则把整个 `get_prompt()` 一次性分词，空格位于文本中间，于是被保留了下来。下面两种分词方式都会演示。
#
# ## token 与标签
#
# ### 按轮次分词：Prismatic 的做法
#
# Prismatic 的数据集对每个轮次调用 `add_turn`，再把返回的文本单独分词：只有第一个轮次加 BOS，末尾空白会被去掉（否则 Llama 分词器会多出一个单独的空格 token）。标签遵循一条规则：human 轮次的每个 token 标签都是 `-100`（交叉熵会忽略的索引），gpt 轮次的每个 token 标签就是它自己的 id。模型只因回答被评分，从不因问题被评分。

# %%
IGNORE_INDEX = -100
DIALOGUE = [
    ("human", "<image>\nWhat is on the table?"),
    ("gpt", "A red cup."),
    ("human", "Where is it?"),
    ("gpt", "On the shelf."),
]


def tokenize_turn_by_turn(builder_cls, tokenizer, conversation, model_family="prismatic"):
    """Prismatic-style: tokenize each turn's text separately; labels -100 on human turns, the ids on gpt turns."""
    builder = builder_cls(model_family)
    input_ids, labels, turn_of_token = [], [], []
    for turn_index, (role, message) in enumerate(conversation):
        text = builder.add_turn(role, message).rstrip()
        ids = tokenizer(text, add_special_tokens=turn_index == 0).input_ids
        input_ids += ids
        labels += [IGNORE_INDEX] * len(ids) if role == "human" else list(ids)
        turn_of_token += [turn_index] * len(ids)
    return input_ids, labels, turn_of_token


dialogue_ids, dialogue_labels, dialogue_turns = tokenize_turn_by_turn(PurePromptBuilder, tokenizer, DIALOGUE)
print(len(dialogue_ids), "tokens,", sum(label != IGNORE_INDEX for label in dialogue_labels), "labelled")

# %% [markdown]
# 把结果画出来：每个 token 占一行，带标签的涂绿色，被忽略的涂灰色。

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"position": "pos", "token": "token", "id": "id", "label": "label",
           "dialogue": "Turn by turn: green tokens are labelled, grey ones ignored (-100)",
           "action": "OpenVLA: only the 7 action tokens and EOS are labelled"},
    "zh": {"position": "位置", "token": "token", "id": "id", "label": "标签",
           "dialogue": "逐轮分词：绿色 token 有标签，灰色被忽略（-100）",
           "action": "OpenVLA：只有 7 个动作 token 和 EOS 有标签"},
}[LANG]


def show_labels(tokenizer, input_ids, labels, title):
    """A colour-coded table: one row per token with its id and its label."""
    tokens = [token.replace("\n", "\\n") for token in tokenizer.convert_ids_to_tokens(input_ids)]
    rows = [[str(i), tokens[i], str(input_ids[i]), str(labels[i])] for i in range(len(input_ids))]
    colours = [["#c8e6c9" if label != IGNORE_INDEX else "#eeeeee"] * 4 for label in labels]
    fig, ax = plt.subplots(figsize=(7.5, 0.24 * len(rows) + 0.7))
    ax.axis("off")
    table = ax.table(cellText=rows, cellColours=colours, loc="center", cellLoc="left",
                     colLabels=[TEXT["position"], TEXT["token"], TEXT["id"], TEXT["label"]],
                     colWidths=[0.08, 0.62, 0.1, 0.12])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    ax.set_title(title, fontsize=10)
    plt.tight_layout()
    plt.show()


show_labels(tokenizer, dialogue_ids, dialogue_labels, TEXT["dialogue"])

# %% [markdown]
# 逐个 token 检查标签规则：human 轮次上（包括 BOS）全是 `-100`，gpt 轮次上正好是 token 自己的 id。每个回答都以 `</s>` 结尾，所以模型也会学到什么时候停下来。

# %%
for token_id, label, turn in zip(dialogue_ids, dialogue_labels, dialogue_turns):
    role = DIALOGUE[turn][0]
    assert label == (IGNORE_INDEX if role == "human" else token_id)
assert dialogue_ids[0] == tokenizer.bos_token_id and dialogue_labels[0] == IGNORE_INDEX
gpt_ends = [i for i in range(len(dialogue_ids)) if dialogue_turns[i] % 2 == 1 and
            (i + 1 == len(dialogue_ids) or dialogue_turns[i + 1] != dialogue_turns[i])]
assert [dialogue_ids[i] for i in gpt_ends] == [tokenizer.eos_token_id] * 2

# %% [markdown]
# 这也说明了 Prismatic 为什么没有 #104 的问题：去掉右侧空白的第一个轮次，分词结果和推理提示词完全相同，训练和推理在回答之前的每个 token 上都一致。

# %%
first_turn = [token_id for token_id, turn in zip(dialogue_ids, dialogue_turns) if turn == 0]
assert first_turn == tokenizer(PurePromptBuilder("prismatic").get_potential_prompt(DIALOGUE[0][1])).input_ids

# %% [markdown]
# ### OpenVLA 的动作样本：只有动作和 EOS 带标签
#
# OpenVLA 的数据集把整个训练提示词一次性分词（加上 BOS），把 id 复制一份作为标签，然后除了最后 `len(action) + 1` 个以外，全部设为 `-100`：留下的正是七个动作 token 和 `</s>`。从末尾往前数的前提是：动作文本重新分词后恰好还原成这七个动作 id。对这个动作来说确实如此，我们也做了检查。

# %%
action_input_ids = tokenizer(training_prompt, add_special_tokens=True).input_ids
action_labels = list(action_input_ids)
keep = len(action) + 1
action_labels[:-keep] = [IGNORE_INDEX] * (len(action_labels) - keep)

assert action_input_ids[-keep:-1] == action_ids, "the action text did not round-trip into the action ids"
assert action_input_ids[-1] == tokenizer.eos_token_id
labelled = [label for label in action_labels if label != IGNORE_INDEX]
assert labelled == action_ids + [tokenizer.eos_token_id]
assert all(action_tokenizer.action_token_begin_idx <= label < tokenizer.vocab_size for label in labelled[:-1])
show_labels(tokenizer, action_input_ids, action_labels, TEXT["action"])

# %% [markdown]
# 带标签的 id 可以解码回动作：每个 id 还原为所在区间的中心，所以与原始值的差距不超过一个区间宽度（2/255）。

# %%
decoded = action_tokenizer.decode(torch.tensor(labelled[:-1]))
print(decoded)
assert torch.all((decoded - action).abs() <= 2 / 255)

# %% [markdown]
# ## 动手试试
#
# 选一个构造器和一条消息。函数会打印推理提示词、加上一个简短回答后的提示词，以及该骨干网络自己的分词器对推理提示词的分词结果。在 JupyterLab 里，切换下拉菜单就会重新运行；作为普通脚本运行时，它只用第一组选项运行一次。

# %%
from vla_backbone.notebook import explore


def show_prompt(builder, message):
    builder_cls = {cls.__name__: cls for cls in BUILDERS}[builder]
    inference = builder_cls("openvla").get_potential_prompt(message)
    training = build(builder_cls, [("human", message), ("gpt", "A red cup.")]).get_prompt()
    builder_tokenizer = TOKENIZERS[builder_cls]
    ids = builder_tokenizer(inference).input_ids
    print("inference:", repr(inference.replace(SYS, "{SYS}")))
    print("training: ", repr(training.replace(SYS, "{SYS}")))
    print(f"{len(ids)} tokens:", builder_tokenizer.convert_ids_to_tokens(ids))
    return inference


shown = explore(
    show_prompt,
    builder=[cls.__name__ for cls in BUILDERS],
    message=[openvla_action_prompt("Pick up the cup"), "<image>\nWhat is on the table?", "   "],
)
assert shown == inference_prompt

# %% [markdown]
# ## 小结
# - `PromptBuilder` 按轮次写出一段对话：`add_turn` 返回它追加的文本，`get_prompt` 给出完整的提示词，`get_potential_prompt` 预览再加一个 human 轮次后的样子。共用逻辑都在 `TurnPromptBuilder` 里，六个构造器各自只说明怎样包装一个轮次。
# - 这些字符串被逐字节复现，怪癖也不例外（`<<SYS>`、Vicuna 不带标签的系统提示词、Phi 手写的 BOS、Qwen 保留的换行和结尾的 `<|endoftext|>`），因为 checkpoint 就是在它们上面训练的。
# - OpenVLA 用 `In: What action should the robot take to ...?\nOut:` 提问，训练时 `Out:` 后面却有一个空格。推理提示词的分词结果应当是训练 id 的前缀（上游在 Llama-2 上补 token 29871）。
# - 只有回答带标签，其余位置都是 `-100`。对 OpenVLA 来说，剩下的恰好是七个动作 token 和 `</s>`。
#
# ## 练习
# 1. 继承 `TurnPromptBuilder` 写一个 `ChatMLNoSystemPromptBuilder`（只重写 `wrap_human`、`wrap_gpt` 和 `finish`）。用 `assert` 检查它的推理提示词等于 Qwen 的推理提示词去掉系统提示词块之后的样子。
# 2. 用 `LLaMa2ChatPromptBuilder` 和 `VicunaV15ChatPromptBuilder` 在 `DIALOGUE` 上运行 `tokenize_turn_by_turn`。各有多少个 token 带标签？解释为什么两者的数目相同。
# 3. 随机生成 200 个动作（`torch.rand(7) * 2 - 1`），在每个家族的微型副本上检查 `action_tokenizer(action)` 在训练提示词里能否还原成那七个动作 id。在真实词表里，末尾的 id 是普通的生僻词，相邻的几个有可能被合并：遇到这样的动作，`labels[:-(len(action) + 1)] = -100` 会给哪些 token 打上标签？改为直接用提示词的 id 和 `encode(action)` 拼出 `input_ids`，这样无论分词器怎么切，标签都是对的。
# 4. 在 Qwen 分词器上，针对动作问题比较推理提示词和训练提示词的 id。Qwen 有 openvla#104 的问题吗？为什么？
