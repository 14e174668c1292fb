# %% [markdown]
# # 05 · 提示词构造器与 OpenVLA 的动作提示词
#
# 语言模型在训练中学到的是一种精确到空格和换行的文本格式。OpenVLA checkpoint 在训练中见过数百万次这样的样本：`In: What action should the robot take to ...?\nOut: ` 后面跟着七个动作 token；推理时哪怕只差一个空格，它读到的就是训练里从没见过的 token 序列。负责写出这些字符串的小对象叫*提示词构造器*，每个骨干网络都会指明自己训练时用的是哪一个。本 notebook 把六个构造器放在同一段对话上并排比较，拿从上游抄来的字面字符串逐字节核对每个结果，顺着动作提示词一路追到真实 Llama-2 的 token id，看清楚哪些 token 带有训练标签，最后看一个 transformers 5 给多轮 Llama-2 提示词埋下的坑。
#
# **你将学到**
# - `PromptBuilder` 接口（`add_turn`、`get_potential_prompt`、`get_prompt`），以及所有构造器共用的轮次逻辑；
# - 六个构造器各自生成的确切字符串、各自的默认系统提示词，连同其中的怪癖，以及为什么“修好”它们反而有害；
# - `get_potential_prompt` 和 `add_turn` 有哪些不同；
# - 哪个骨干网络 id 用哪个构造器；
# - OpenVLA 的动作提示词对应的真实 Llama-2 token id，以及训练时 `Out:` 后面有空格、推理时却没有的问题（openvla#104）；
# - 一段对话如何变成 token id 和标签，以及为什么只有动作 token（外加 EOS）带标签；
# - 为什么在 transformers 5 上直接用 `AutoTokenizer` 给多轮 Llama-2 提示词分词，得到的 id 和 OpenVLA 训练时所用的 4.x 不一样，以及修好它的那一个参数。

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
# - `get_potential_prompt(message)` 给出“如果用户接下来说了 `message`”时提示词的样子，但不改变构造器本身（它写出的内容和 `add_turn` 并不完全一样，见后面的怪癖部分）；
# - `get_prompt()` 返回到目前为止的完整对话，可以直接交给分词器。

# %%
import inspect

from vla_backbone.notebook import expect_error
from vla_backbone.prompting import (
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
# `get_potential_prompt` 是一次预览：它在现有文本后面再拼上一个 human 轮次，构造器本身保持不变。上游在每个构造器里都写了这个方法，但上游代码里没有任何地方调用它。

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
# 2. `add_turn` 会删掉每条消息里的 `<image>` 占位符，并去掉首尾空白；
# 3. 空的 gpt 消息会变成一个空格；
# 4. 第一个 human 轮次可以和后面的不一样：`first_human_turn` 负责写出它（模板有系统提示词时就带上），`add_turn` 和 `get_potential_prompt` 都用它；`open_conversation` 则添加只有 `add_turn` 在第 0 轮才写的内容（Phi 手写的 BOS、Qwen 的系统提示词块），并决定 `add_turn` 返回什么；
# 5. 最终的提示词还要经过 `finish`（默认行为：去掉开头的 `<s>`，再去掉末尾空白），预览则经过 `finish_potential`（默认与 `finish` 相同）。
#
# 来读一下这个共用的 `add_turn`：

# %%
print(inspect.getsource(TurnPromptBuilder.add_turn))

# %% [markdown]
# 具体的构造器只重写自己需要的钩子方法。下表是直接从类本身算出来的：`Pure` 和 `MistralInstruct` 各自只需要一个方法，六个构造器没有一个重新定义 `add_turn`。

# %%
BUILDERS = [
    PurePromptBuilder,
    LLaMa2ChatPromptBuilder,
    VicunaV15ChatPromptBuilder,
    MistralInstructPromptBuilder,
    PhiPromptBuilder,
    QwenPromptBuilder,
]
HOOKS = ("wrap_human", "wrap_gpt", "first_human_turn", "open_conversation", "finish", "finish_potential", "get_prompt")
overrides = {cls.__name__: [hook for hook in HOOKS if hook in vars(cls)] for cls in BUILDERS}
for name, hooks in overrides.items():
    print(f"{name:30s} {', '.join(hooks)}")

assert all(issubclass(cls, TurnPromptBuilder) and "add_turn" not in vars(cls) for cls in BUILDERS)
assert overrides == {
    "PurePromptBuilder": ["wrap_human"],
    "LLaMa2ChatPromptBuilder": ["wrap_human", "first_human_turn"],
    "VicunaV15ChatPromptBuilder": ["wrap_human", "first_human_turn"],
    "MistralInstructPromptBuilder": ["wrap_human"],
    "PhiPromptBuilder": ["wrap_human", "wrap_gpt", "open_conversation", "finish"],
    "QwenPromptBuilder": ["wrap_human", "wrap_gpt", "open_conversation", "finish_potential", "get_prompt"],
}

# %% [markdown]
# ## 三个默认系统提示词
#
# 有三个模板带系统提示词，而且每个都有自己的默认文本，按构造器保存在类属性 `default_system_prompts` 里（模型家族 → 文本；`openvla` 和 `prismatic` 对应同一句话）。Pure、MistralInstruct 和 Phi 没有系统提示词。下面这些文本是照着上游源文件手工敲进来的，不是从本包读出来的，然后再拿它们和类里的内容核对：

# %%
LLAMA2_CHAT_SYS = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the user "
    "provides, and assist the user with a variety of tasks using natural language."
)
VICUNA_SYS = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)
QWEN_SYS = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
DEFAULT_SYSTEM_PROMPTS = {LLaMa2ChatPromptBuilder: LLAMA2_CHAT_SYS, VicunaV15ChatPromptBuilder: VICUNA_SYS, QwenPromptBuilder: QWEN_SYS}

for cls in BUILDERS:
    defaults = cls.default_system_prompts
    print(f"{cls.__name__:30s} {defaults['openvla'] if defaults else None!r}")
    expected = DEFAULT_SYSTEM_PROMPTS.get(cls)
    assert (dict(defaults) if defaults else None) == ({"openvla": expected, "prismatic": expected} if expected else None)
    assert cls("openvla").system_prompt == cls("prismatic").system_prompt == expected

# %% [markdown]
# 传入 `system_prompt=` 参数会替换默认值（LLaMa2Chat 和 Vicuna 写入时会去掉它的首尾空白）。带系统提示词的构造器遇到没有默认值的模型家族会直接拒绝，而不是悄悄地什么都不写；不带系统提示词的构造器则接受任意家族名。

# %%
custom = LLaMa2ChatPromptBuilder("openvla", system_prompt="  Answer briefly.  ")
assert custom.add_turn("human", "Hi") == "[INST] <<SYS>\nAnswer briefly.\n<</SYS>>\n\nHi [/INST] "
assert VicunaV15ChatPromptBuilder("openvla", system_prompt="  Answer briefly.  ").add_turn("human", "Hi") == (
    "Answer briefly. USER: Hi ASSISTANT: ")
with expect_error(ValueError, match="no default system prompt for model family 'my-robot'"):
    QwenPromptBuilder("my-robot")
assert PurePromptBuilder("my-robot").system_prompt is None

# %% [markdown]
# ## 六个构造器，同一段对话
#
# 现在让每个构造器处理同样的两个轮次。human 消息故意写得很乱——一个 `<image>` 占位符、一个换行、两边都有空格——数据集里的对话往往就是这样。

# %%
CONVERSATION = [("human", "<image>\n  What is on the table?  "), ("gpt", "A red cup.")]


def build(builder_cls, conversation, model_family="openvla"):
    """A fresh builder with every turn of `conversation` added."""
    builder = builder_cls(model_family)
    for role, message in conversation:
        builder.add_turn(role, message)
    return builder


def abbreviate(prompt):
    """The prompt with each default system prompt shown as {SYS}, for printing."""
    for system_prompt in DEFAULT_SYSTEM_PROMPTS.values():
        prompt = prompt.replace(system_prompt, "{SYS}")
    return prompt


# %% [markdown]
# 下面把期望的训练提示词完整写出来。并排对照着读：各模板的包装方式不同，每个对话模板带着自己的系统提示词，对文本结尾的处理也各不相同。

# %%
EXPECTED_TRAINING = {
    PurePromptBuilder: "In: What is on the table?\nOut: A red cup.</s>",
    LLaMa2ChatPromptBuilder: "[INST] <<SYS>\n" + LLAMA2_CHAT_SYS + "\n<</SYS>>\n\nWhat is on the table? [/INST] A red cup.</s>",
    VicunaV15ChatPromptBuilder: VICUNA_SYS + " USER: What is on the table? ASSISTANT: A red cup.</s>",
    MistralInstructPromptBuilder: "[INST] What is on the table? [/INST] A red cup.</s>",
    PhiPromptBuilder: "<|endoftext|>Input: What is on the table?\nOutput: A red cup.\n<|endoftext|>",
    QwenPromptBuilder: "<|im_start|>system\n" + QWEN_SYS + "<|im_end|>\n<|im_start|>user\nWhat is on the table?<|im_end|>\n"
    "<|im_start|>assistant\nA red cup.<|im_end|><|endoftext|>",
}
for cls in BUILDERS:
    prompt = build(cls, CONVERSATION).get_prompt()
    print(f"{cls.__name__:30s} {abbreviate(prompt)!r}")
    assert prompt == EXPECTED_TRAINING[cls], f"{cls.__name__}:\n got  {prompt!r}\n want {EXPECTED_TRAINING[cls]!r}"

# %% [markdown]
# 推理时机器人只提问：构造器里只有一个 human 轮次，剩下的由模型来写。下面就是此时各模板交给分词器的提示词。其中五个在冒号或 `[/INST]` 之后立即结束；Qwen 则保留了 `assistant` 后面的换行。

# %%
EXPECTED_INFERENCE = {
    PurePromptBuilder: "In: What is on the table?\nOut:",
    LLaMa2ChatPromptBuilder: "[INST] <<SYS>\n" + LLAMA2_CHAT_SYS + "\n<</SYS>>\n\nWhat is on the table? [/INST]",
    VicunaV15ChatPromptBuilder: VICUNA_SYS + " USER: What is on the table? ASSISTANT:",
    MistralInstructPromptBuilder: "[INST] What is on the table? [/INST]",
    PhiPromptBuilder: "<|endoftext|>Input: What is on the table?\nOutput:",
    QwenPromptBuilder: "<|im_start|>system\n" + QWEN_SYS + "<|im_end|>\n<|im_start|>user\nWhat is on the table?<|im_end|>\n"
    "<|im_start|>assistant\n",
}
for cls in BUILDERS:
    inference = build(cls, CONVERSATION[:1]).get_prompt()
    print(f"{cls.__name__:30s} {abbreviate(inference)!r}")
    assert inference == EXPECTED_INFERENCE[cls], cls.__name__

# %% [markdown]
# **动手试试：** 把 `CONVERSATION` 里的 gpt 消息改一下（比如改成 `"Two spoons."`），重新运行 `EXPECTED_TRAINING` 那个单元格，读一读断言失败的信息；再修改期望的字符串，直到断言重新通过。这样你就清楚每个模板会把回答放在哪里了。
#
# ## 哪个骨干网络用哪个构造器
#
# 每个骨干网络通过 `prompt_builder_fn` 给出一个构造器**类**，VLM 为每个样本实例化一次。选哪个由 id 决定：`*-pure` 模型从没做过对话微调，用朴素模板；对话模型则用它们微调时的模板。这个属性只读取骨干网络的 id，所以不必加载模型，直接向每个 id 对应的类询问即可：把属性放在一个只带 `identifier` 的替身对象上求值。

# %%
from types import SimpleNamespace

import vla_backbone
from vla_backbone.registry import backbone_class

builder_of = {}
for backbone_id in vla_backbone.list_backbones():
    family_cls = backbone_class(backbone_id)
    builder_of[backbone_id] = family_cls.prompt_builder_fn.fget(SimpleNamespace(identifier=backbone_id))
    print(f"{backbone_id:26s} {family_cls.family:8s} {builder_of[backbone_id].__name__}")

# %%
assert builder_of["llama2-7b-chat"] is LLaMa2ChatPromptBuilder
assert builder_of["llama2-7b-pure"] is PurePromptBuilder
assert builder_of["vicuna-v15-7b"] is VicunaV15ChatPromptBuilder
assert builder_of["mistral-v0.1-7b-instruct"] is MistralInstructPromptBuilder
assert builder_of["phi-2-3b"] is PhiPromptBuilder
assert builder_of["qwen25-0_5b-pure"] is QwenPromptBuilder


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


for backbone_id, builder_cls in builder_of.items():
    assert builder_cls is expected_builder(backbone_id, backbone_class(backbone_id).family), backbone_id

# %% [markdown]
# 所有 Qwen-2.5 的 id（包括 `-pure`）都用 ChatML 模板，这与 MiniVLA 一致。
#
# 本 notebook 后面要用到每个模板的分词器，所以每种分词器加载一个骨干网络：三个 Llama-2 模板共用 Llama-2 的真实分词器。加载出来的骨干网络给出的答案和上表一致。

# %%
loaded = {backbone_id: vla_backbone.get_llm_backbone_and_tokenizer(backbone_id, inference_mode=True)
          for backbone_id in ("llama2-7b-pure", "mistral-v0.1-7b-instruct", "phi-2-3b", "qwen25-0_5b-pure")}
for backbone_id, (backbone, _) in loaded.items():
    assert backbone.prompt_builder_fn is builder_of[backbone_id]
TOKENIZERS = {
    PurePromptBuilder: loaded["llama2-7b-pure"][1],
    LLaMa2ChatPromptBuilder: loaded["llama2-7b-pure"][1],
    VicunaV15ChatPromptBuilder: loaded["llama2-7b-pure"][1],
    MistralInstructPromptBuilder: loaded["mistral-v0.1-7b-instruct"][1],
    PhiPromptBuilder: loaded["phi-2-3b"][1],
    QwenPromptBuilder: loaded["qwen25-0_5b-pure"][1],
}

# %% [markdown]
# ## 逐个看怪癖
#
# 下面每个怪癖看上去都像是该顺手清理掉的地方。其实不然：OpenVLA 或 Prismatic 的 checkpoint 就是在这些一字节不差的文本上训练出来的，构造器必须原样复现。
#
# ### `add_turn` 会清理消息，`get_potential_prompt` 不会
#
# LLaVA 格式的数据集用文本里的 `<image>` 标记图片的位置。但 VLM 从不把图片放进文本：它把投影后的图像 patch 作为嵌入，拼接在 BOS 之后（见 notebook 11）。所以 `add_turn` 会删掉占位符，并去掉消息的首尾空白。`get_potential_prompt` 则原样使用传入的消息——既不删占位符，也不去空白——所以对数据集里的原始消息做预览，看到的并不是训练时的样子。预览之前请自己先把消息清理干净。

# %%
messy = CONVERSATION[0][1]
assert PurePromptBuilder("openvla").add_turn("human", messy) == "In: What is on the table?\nOut: "
assert PurePromptBuilder("openvla").get_potential_prompt(messy) == "In: <image>\n  What is on the table?  \nOut:"
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
assert not any(build(cls, CONVERSATION).prompt.startswith("<s>") for cls in BUILDERS)

# %% [markdown]
# ### LLaMa2Chat：只有一个 `>` 的 `<<SYS>`
#
# Meta 官方的 Llama-2-chat 格式用 `<<SYS>>` 开启系统提示词块。Prismatic 的构造器写成了 `<<SYS>`——少了一个 `>`——结尾的 `<</SYS>>` 倒是正确的。这是个笔误，但我们保留它：Prismatic 发布的 `llama2-chat+7b` 和 `llama2-chat+13b` 这两个 VLM 以 `llama2-7b-chat` 和 `llama2-13b-chat` 为骨干网络（见 Prismatic 的 `prismatic/conf/models.py`），而这两个骨干网络用的正是这个构造器，所以它们是在这个笔误上训练的，这些 checkpoint 认的就是它。如果把它“修好”，推理时模型拿到的 token 就和训练时学到的不一样，不会有任何报错，效果却会悄悄变差。

# %%
chat_prompt = build(LLaMa2ChatPromptBuilder, CONVERSATION).get_prompt()
assert chat_prompt.startswith("[INST] <<SYS>\nYou are a helpful language and vision assistant.")
assert "<<SYS>>" not in chat_prompt and chat_prompt.count("<</SYS>>") == 1

# %% [markdown]
# 只有第一个 human 轮次带系统提示词块；后面的轮次就是普通的 `[INST] ... [/INST] `。对空构造器调用 `get_potential_prompt` 时也会带上这个块，和第一次 `add_turn` 写出的完全一样。

# %%
chat = build(LLaMa2ChatPromptBuilder, CONVERSATION)
assert chat.add_turn("human", "Where is it?") == "[INST] Where is it? [/INST] "
assert LLaMa2ChatPromptBuilder("openvla").get_potential_prompt("What is on the table?") == EXPECTED_INFERENCE[LLaMa2ChatPromptBuilder]

# %% [markdown]
# ### Vicuna：自己的系统提示词，后接一个空格
#
# Vicuna v1.5 没有 `SYSTEM:` 标签，系统提示词也是它自己的，不是 Llama-2-chat 那句：一句讲“a curious user”的普通句子，后面接一个空格，再接 `USER:`。

# %%
vicuna_prompt = build(VicunaV15ChatPromptBuilder, CONVERSATION).get_prompt()
assert vicuna_prompt.startswith(
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. USER: What is on the table? ASSISTANT: "
)

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
assert first == "<|endoftext|>Input: What is on the table?\nOutput: " and second == "Input: Where is it?\nOutput: "
assert phi.get_prompt() == phi.prompt.rstrip() and phi.get_prompt().startswith("<|endoftext|>")
assert not TurnPromptBuilder.finish(phi, phi.prompt).startswith("<|endoftext|>")  # what the default would do

# %% [markdown]
# 分词器把手写的这段文本变成 phi-2 的 BOS id 50256，并且不会在它前面再加任何东西：

# %%
phi_tokenizer = TOKENIZERS[PhiPromptBuilder]
phi_ids = phi_tokenizer(phi.get_prompt()).input_ids
print(phi_ids[:6], phi_tokenizer.convert_ids_to_tokens(phi_ids[:3]))
assert phi_ids[0] == phi_tokenizer.bos_token_id == phi_tokenizer.eos_token_id == 50256 and phi_ids[1] != 50256

# %% [markdown]
# 上游只在 `add_turn` 里写这个 BOS。所以对空的 Phi 构造器做预览，得到的文本开头没有它，分词后的第一个 token 是单词 `Input`：这正是 BOS 检查要防范的那种提示词（见 notebook 03）。

# %%
phi_preview = PhiPromptBuilder("openvla").get_potential_prompt("What is on the table?")
print(repr(phi_preview), phi_tokenizer.convert_ids_to_tokens(phi_tokenizer(phi_preview).input_ids[:2]))
assert phi_preview == "Input: What is on the table?\nOutput:"
assert phi_tokenizer(phi_preview).input_ids[0] != 50256

# %% [markdown]
# ### Qwen：系统提示词块在提示词里，却不在第 0 轮的返回值里
#
# 在第一个轮次，`QwenPromptBuilder.add_turn` 把系统提示词块写进了提示词，返回的却只有用户轮次。逐轮对返回片段分词的代码（比如后面 Prismatic 的数据集）永远看不到系统提示词块；对 `get_prompt()` 分词的代码（比如 OpenVLA 的动作数据集）则能看到。在任何轮次之前做预览，同样没有系统提示词块。

# %%
qwen = QwenPromptBuilder("openvla")
qwen_preview = qwen.get_potential_prompt("What is on the table?")
returned = qwen.add_turn("human", "What is on the table?")
print("returned:", repr(returned))
print("prompt:  ", repr(abbreviate(qwen.prompt)))
assert returned == qwen_preview == "<|im_start|>user\nWhat is on the table?<|im_end|>\n<|im_start|>assistant\n"
assert qwen.prompt == "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" + returned

# %% [markdown]
# ### Qwen：完全不去空白，回答之后加 `<|endoftext|>`
#
# ChatML 在每个角色标头后面都有一个换行，模型训练时就是从 `assistant\n` 之后开始写回答的。所以 Qwen 构造器从不去空白：它的推理提示词以这个换行结尾。在 gpt 轮次之后，`get_prompt` 会把最后的 `\n` 换成 `<|endoftext|>`，让模型也学会文本在哪里结束。构造器内部的文本仍然保留换行；一旦接上下一个 human 轮次，这个替换也就不再出现。

# %%
qwen = build(QwenPromptBuilder, CONVERSATION)
assert qwen.get_potential_prompt("Where is it?").endswith("<|im_start|>assistant\n")
answer = CONVERSATION[1][1]
assert qwen.prompt.endswith(f"{answer}<|im_end|>\n")
assert qwen.get_prompt().endswith(f"{answer}<|im_end|><|endoftext|>")
qwen.add_turn("human", "Where is it?")
assert qwen.get_prompt().endswith("<|im_start|>assistant\n") and "<|endoftext|>" not in qwen.get_prompt()

# %% [markdown]
# Qwen 没有 BOS token；Qwen 提示词的第一个 token 是模板写出的 `<|im_start|>`（id 151644）：

# %%
qwen_tokenizer = TOKENIZERS[QwenPromptBuilder]
qwen_ids = qwen_tokenizer(qwen.get_prompt()).input_ids
print(qwen_ids[:4], qwen_tokenizer.convert_ids_to_tokens(qwen_ids[:4]))
assert qwen_tokenizer.bos_token_id is None
assert qwen_ids[0] == qwen_tokenizer.convert_tokens_to_ids("<|im_start|>") == 151644

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
# OpenVLA 只问一个问题，而且问法永远一样：`openvla_action_prompt(instruction)` 把指令转成小写再包进固定句式。用 Pure 构造器（OpenVLA-7B 基于 `llama2-7b-pure`），推理提示词以及它在真实 Llama-2 分词器上的 id（开头是 BOS `<s>` = 1）如下：

# %%
question = openvla_action_prompt("Pick up the cup")
inference_builder = PurePromptBuilder("openvla")
inference_builder.add_turn("human", question)
inference_prompt = inference_builder.get_prompt()
tokenizer = TOKENIZERS[PurePromptBuilder]
inference_ids = tokenizer(inference_prompt).input_ids
print(repr(inference_prompt))
print(inference_ids)
print(tokenizer.convert_ids_to_tokens(inference_ids))
assert question == "What action should the robot take to pick up the cup?"
assert inference_prompt == "In: What action should the robot take to pick up the cup?\nOut:"
assert inference_ids == [1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 18002, 29973, 13, 3744, 29901]

# %% [markdown]
# 训练时，同一个构造器还会收到回答：七个动作 token，由 `ActionTokenizer` 写成文本（每一维先裁剪到 [-1, 1]，再切成 256 个区间，第 *b* 个区间（*b* = 1..256）写成 token id `vocab_size - b`）。Llama-2 的 `vocab_size` 是训练过的 32000 个 token（后来添加的 `<PAD>`，id 32000，不算在内），所以动作就是 id 31744 到 31999：词表的末尾，都是模型很少见到的一些文字的单个字符。notebook 11 会把动作分词器拆开来讲。

# %%
import numpy as np

from vla_backbone.actions import ActionTokenizer

action_tokenizer = ActionTokenizer(tokenizer)
action = np.array([0.1, -0.2, 0.3, 0.0, 0.5, -1.0, 1.0])
action_ids = action_tokenizer.token_ids(action).tolist()
action_text = action_tokenizer(action)
print("action ids:   ", action_ids)
print("action tokens:", tokenizer.convert_ids_to_tokens(action_ids))
assert tokenizer.vocab_size == 32000 and len(tokenizer) == 32001
assert action_ids == [31859, 31898, 31834, 31872, 31808, 31999, 31744]
assert action_text == tokenizer.decode(action_ids)

# %% [markdown]
# 训练提示词保留了 `Out:` 后面的空格：`get_prompt` 只去掉整段文本末尾的空白，而现在的末尾是 `</s>`。

# %%
training_builder = PurePromptBuilder("openvla")
training_builder.add_turn("human", question)
training_builder.add_turn("gpt", action_text)
training_prompt = training_builder.get_prompt()
print(repr(training_prompt))
assert training_prompt == "In: What action should the robot take to pick up the cup?\nOut: " + action_text + "</s>"

# %% [markdown]
# ### openvla#104：训练时有空格，推理时没有
#
# 也就是说，模型训练时看到的是 `Out: ` 加动作，推理时却用 `Out:` 来提问。落到 token 层面，这个空格在 `:` 和第一个动作 token 之间单独成了一个 token：`▁`（id 29871）。

# %%
training_ids = tokenizer(training_prompt).input_ids
n = len(inference_ids)
print("inference:", inference_ids[-3:], tokenizer.convert_ids_to_tokens(inference_ids[-3:]))
print("training: ", training_ids[n - 3 : n + 2], tokenizer.convert_ids_to_tokens(training_ids[n - 3 : n + 2]), "...")
assert training_ids[:n] == inference_ids
assert training_ids[n] == 29871 and tokenizer.convert_ids_to_tokens(29871) == "▁"
assert training_ids[n + 1 :] == action_ids + [tokenizer.eos_token_id]

# %% [markdown]
# 这个 token 每次都会出现：Llama-2 的词表里没有任何一个片段把 `▁` 和这 256 个动作字符中的某一个连在一起，所以空格永远不会并进第一个动作 token。

# %%
tail_tokens = tokenizer.convert_ids_to_tokens(list(range(31744, 32000)))
vocabulary = tokenizer.get_vocab()
assert all(len(token) == 1 for token in tail_tokens) and not any("▁" + token in vocabulary for token in tail_tokens)

# %% [markdown]
# 因此，模型学到的是在 `▁` 之后预测第一个动作，推理时却要它紧接着 `:` 预测。上游的 `predict_action` 的修补办法是：只要提示词不是以 29871 结尾，就在末尾补上它（openvla#104）。把提示词*连同*末尾空格一起分词，得到的 id 也一样。这个修补只适用于 Llama-2 的词表；不管用什么分词器，都应该检查：推理 id 是否与训练 id 中第一个动作 token 之前的部分完全一致。

# %%
repaired_ids = inference_ids if inference_ids[-1] == 29871 else inference_ids + [29871]
assert repaired_ids == training_ids[: len(repaired_ids)] == tokenizer(inference_prompt + " ").input_ids
assert training_ids[len(repaired_ids)] == action_ids[0]

# %% [markdown]
# 这个不一致是从哪里来的？OpenVLA 的前身 Prismatic 逐轮分词，并且把 Llama 的每个轮次右侧的空白去掉，所以它训练时的 human 轮次和推理提示词一样以 `Out:` 结尾。OpenVLA 的动作数据集则一次性对整个 `get_prompt()` 分词，于是中间的那个空格保留了下来。下面两种分词方式都会看到。
#
# ## token 与标签
#
# ### 逐轮分词：Prismatic 的做法
#
# Prismatic 的数据集（`FinetuneDataset.__getitem__`，见 notebook 03）对每个轮次调用 `add_turn`，并把返回的文本单独分词：只有第一个轮次加 BOS；对 Llama 分词器还要去掉末尾空白（否则它会多出一个单独的空格 token，那段代码的注释里就是这么说的）。标签只遵循一条规则：human 轮次的每个 token 都标为 `-100`（交叉熵会忽略的索引），gpt 轮次的每个 token 标为它自己的 id。损失只在回答上计算，问题部分从不计入。

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
print(dialogue_ids)

# %% [markdown]
# 把结果画出来：每个 token 一行，带标签的涂绿色，被忽略的涂灰色。（表格所用的字体可能缺少某些字符，比如后面的动作 token，这些字符会写成 `\uXXXX` 码位。）

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


def drawable(token):
    """The token with newlines escaped and non-ASCII characters (except SentencePiece's ▁) as \\uXXXX."""
    return "".join(c if c.isascii() or c == "▁" else f"\\u{ord(c):04x}" for c in token.replace("\n", "\\n"))


def show_labels(tokenizer, input_ids, labels, title):
    """A colour-coded table: one row per token with its id and its label."""
    tokens = [drawable(token) for token in tokenizer.convert_ids_to_tokens(input_ids)]
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
# 逐个 token 核对标签规则：`-100` 恰好出现在 human 轮次上（包括 BOS），token 自己的 id 恰好出现在 gpt 轮次上。每个回答都以 `</s>`（id 2）结尾，所以模型也学会了何时停下。

# %%
for token_id, label, turn in zip(dialogue_ids, dialogue_labels, dialogue_turns):
    role = DIALOGUE[turn][0]
    assert label == (IGNORE_INDEX if role == "human" else token_id)
assert dialogue_ids[0] == tokenizer.bos_token_id == 1 and dialogue_labels[0] == IGNORE_INDEX
gpt_ends = [i for i in range(len(dialogue_ids)) if dialogue_turns[i] % 2 == 1 and
            (i + 1 == len(dialogue_ids) or dialogue_turns[i + 1] != dialogue_turns[i])]
assert [dialogue_ids[i] for i in gpt_ends] == [tokenizer.eos_token_id] * 2 == [2, 2]

# %% [markdown]
# 这也解释了 Prismatic 为什么没有 #104 的问题：去掉右侧空白后的第一个轮次，分词结果和推理提示词完全一样（这里预览时传入的是清理过的消息，因为 `get_potential_prompt` 不做清理），所以在回答之前，训练和推理的每个 token 都一致。

# %%
first_turn = [token_id for token_id, turn in zip(dialogue_ids, dialogue_turns) if turn == 0]
assert first_turn == tokenizer(PurePromptBuilder("prismatic").get_potential_prompt("What is on the table?")).input_ids

# %% [markdown]
# ### OpenVLA 的动作样本：只有动作和 EOS 带标签
#
# OpenVLA 的数据集一次性对整个训练提示词分词（加上 BOS），把 id 复制一份作为标签，然后把除最后 `len(action) + 1` 个之外的所有标签都设成 `-100`：留下的正是七个动作 token 和 `</s>`。从末尾倒着数，只有在动作文本分词后恰好还原成那七个动作 id 时才成立。在 Llama-2 的 SentencePiece 分词器上总是成立；在字节级 BPE 分词器（phi-2、Qwen、OPT）上则不成立（notebook 11 会实际测量）。这里我们检查一下。

# %%
action_input_ids = tokenizer(training_prompt, add_special_tokens=True).input_ids
action_labels = list(action_input_ids)
keep = len(action) + 1
action_labels[:-keep] = [IGNORE_INDEX] * (len(action_labels) - keep)

assert action_input_ids[-keep:-1] == action_ids, "the action text did not round-trip into the action ids"
assert action_input_ids[-1] == tokenizer.eos_token_id
labelled = [label for label in action_labels if label != IGNORE_INDEX]
assert labelled == action_ids + [tokenizer.eos_token_id]
assert all(label > action_tokenizer.action_token_begin_idx for label in labelled[:-1])
show_labels(tokenizer, action_input_ids, action_labels, TEXT["action"])

# %% [markdown]
# 带标签的 id 可以解码回动作：每个 id 解码为它所在区间的中心，所以与原始值的差不超过半个区间宽度（1/255）。

# %%
decoded = action_tokenizer.decode_token_ids_to_actions(np.array(labelled[:-1]))
print(decoded.round(4))
assert np.all(np.abs(decoded - action) <= 1 / 255 + 1e-9)

# %% [markdown]
# ## transformers 5 与多轮 Llama-2 提示词
#
# Pure 模板会在轮次之间把 `</s>` 写进文本，所以第二个 human 轮次紧跟在一个特殊 token 后面：`...</s>In: ...`。文本里直接写出的特殊 token 后面紧跟着一个词时，SentencePiece 分词器怎样处理这个词，在 transformers 5 里变了。Hub 上 Llama-2 的 `tokenizer_config.json` 写着 `"legacy": false`。transformers 4.x 对 `AutoTokenizer` 返回的快速分词器忽略了这个标志；5.x 则按类重建分词器并遵守它，于是 `</s>` 后面那个词丢掉了开头的 `▁`：`▁In`（512）变成了 `In`（797）。OpenVLA 和 Prismatic 的 checkpoint 都是在 4.x 的 id 上训练的。
#
# 微型副本的分词器文件就是 Llama-2 自己的，所以直接用 `AutoTokenizer` 加载它们，就能看到当前这个 transformers 版本的行为（这个单元格在 4.57 上也能运行，那时它会告诉你不存在这个坑）：

# %%
import json

from transformers import AutoTokenizer

from vla_backbone import compat
from vla_backbone.tiny import tiny_checkpoint

assert json.loads((tiny_checkpoint("llama2") / "tokenizer_config.json").read_text())["legacy"] is False
MULTI_TURN = "In: What action should the robot take to pick up the cup?\nOut: ok</s>In: again"
IDS_4X = [1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 18002, 29973, 13, 3744, 29901,
          3431, 2, 512, 29901, 1449]
plain_tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint("llama2"))
plain_ids = plain_tokenizer(MULTI_TURN).input_ids
print(f"transformers {compat.TRANSFORMERS_VERSION}, plain AutoTokenizer ({type(plain_tokenizer).__name__}):")
print("  ...", plain_ids[-5:], plain_tokenizer.convert_ids_to_tokens(plain_ids[-5:]))
if compat.IS_V5:
    print("  the trap: after </s>, '▁In' (512) became 'In' (797)")
    assert plain_ids == IDS_4X[:-3] + [797, 29901, 1449]
else:
    print("  no trap on this version: these are the ids OpenVLA trained on")
    assert plain_ids == IDS_4X

# %% [markdown]
# `legacy=True` 能修好这条提示词，但不是所有文本都能修好。5.x 仍然按分词器类重新构建分词器，用的是它自己的预分词器；而 4.x 直接使用 checkpoint 里的 `tokenizer.json`。两者对特殊 token 旁边的空白切分得不一样，比如 `</s>` 后面跟一个空格，或者文本以空格开头。真正的依据是这个文件本身，`tokenizers` 库不经过 transformers 就能读取它。Llama-2 家族设置了类属性 `tokenizer_from_file`，于是在 5.x 上，它的 `load_tokenizer` 会把重新构建出来的切分后端换成这个文件描述的那一个（`compat.split_text_as_file_says`）：骨干网络的分词器在所有版本上给出的都是文件的 id，也就是 4.x 的 id。

# %%
from tokenizers import Tokenizer

from vla_backbone.families import LLaMa2LLMBackbone

file_tokenizer = Tokenizer.from_file(str(tiny_checkpoint("llama2") / "tokenizer.json"))
legacy_tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint("llama2"), legacy=True)
for text in (MULTI_TURN, "Out: ok</s> In: again", " </s>"):
    print(f"{text[-22:]!r:26} file {file_tokenizer.encode(text).ids[-5:]}  legacy=True {legacy_tokenizer(text).input_ids[-5:]}"
          f"  backbone {tokenizer(text).input_ids[-5:]}")

# %%
assert LLaMa2LLMBackbone.tokenizer_from_file and LLaMa2LLMBackbone.tokenizer_kwargs == {"legacy": True}
assert tokenizer(MULTI_TURN).input_ids == file_tokenizer.encode(MULTI_TURN).ids == IDS_4X
assert legacy_tokenizer(MULTI_TURN).input_ids == IDS_4X
for text in ("Out: ok</s> In: again", " </s>"):
    assert tokenizer(text).input_ids == file_tokenizer.encode(text).ids
    assert (legacy_tokenizer(text).input_ids != file_tokenizer.encode(text).ids) == compat.IS_V5

# %% [markdown]
# 有些 checkpoint 根本不带 `tokenizer.json`，只有 SentencePiece 模型文件 `tokenizer.model`（Vicuna v1.5 可能就是这样）。4.40 转换这个文件时，不管配置里怎么写，都按 `legacy` 为真处理，并按合并后词片的 SentencePiece 分数给 BPE 合并规则排序；上面那个 `tokenizer.json` 正是这个转换器写出来的。传入 `legacy=True` 后，4.57 的转换方式与之相同。5.x 则自己构建后端（在 5.24 上实测），结果有两处不同：文本开头的空格会丢掉（`" leading"` 只剩 `▁leading`，而文件给出的是 `▁` 和 `▁leading`）；合并规则按 id 排序，所以 `"a  leading"` 里的两个空格会变成 `▁▁`（id 259，分数最低）加 `leading`，而不是 `▁` 加 `▁leading`。因此在 5.x 上，`load_tokenizer` 会按 4.x 的方式重新转换一遍（`compat.split_text_as_4x_converted`）。检验方法：把 checkpoint 复制一份、去掉其中的 `tokenizer.json`，这份副本给出的 id 必须和文件给出的一致，而在 5.x 上直接用 `AutoTokenizer` 做不到这一点。

# %%
import shutil
import tempfile

with tempfile.TemporaryDirectory() as model_only:
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny_checkpoint("llama2") / name, model_only)
    model_only_plain = AutoTokenizer.from_pretrained(model_only, legacy=True)
    model_only_tokenizer = LLaMa2LLMBackbone.load_tokenizer(model_only)
print("tokenizer.model only:")
for text in (MULTI_TURN, " </s>", " leading space", "a  leading"):
    print(f"{text[-22:]!r:26} file {file_tokenizer.encode(text).ids[-4:]}  plain {model_only_plain(text).input_ids[-4:]}"
          f"  load_tokenizer {model_only_tokenizer(text).input_ids[-4:]}")

# %%
assert file_tokenizer.encode(" leading space").tokens == ["<s>", "▁", "▁leading", "▁space"]
assert file_tokenizer.encode("a  leading").tokens == ["<s>", "▁a", "▁", "▁leading"]
plain_tokens = {text: model_only_plain.convert_ids_to_tokens(model_only_plain(text).input_ids) for text in (" leading space", "a  leading")}
if compat.IS_V5:
    assert plain_tokens == {" leading space": ["<s>", "▁leading", "▁space"], "a  leading": ["<s>", "▁a", "▁▁", "leading"]}
else:
    assert all(model_only_plain(text).input_ids == file_tokenizer.encode(text).ids for text in plain_tokens)
for text in (MULTI_TURN, "Out: ok</s> In: again", " </s>", " leading space", "a  leading"):
    assert model_only_tokenizer(text).input_ids == file_tokenizer.encode(text).ids

# %% [markdown]
# 哪些代码会踩到这个坑：凡是一次性对整段多轮提示词分词的代码都会中招，比如在一段对话上做推理，或者像 OpenVLA 的数据集那样对 `get_prompt()` 分词。用骨干网络的分词器，整段对话的分词结果和上面逐轮分词拼起来的完全一样。逐轮分词从不把特殊 token 写在某个词前面，所以即使用未加参数的分词器也安全；只在最后有一个 `</s>` 的单轮动作提示词同样安全。

# %%
dialogue_prompt = build(PurePromptBuilder, DIALOGUE, "prismatic").get_prompt()
whole_plain = plain_tokenizer(dialogue_prompt).input_ids
changed = [i for i, (a, b) in enumerate(zip(whole_plain, dialogue_ids)) if a != b]
print("positions where plain whole-prompt ids differ from the trained ones:", changed,
      [plain_tokenizer.convert_ids_to_tokens(whole_plain[i]) for i in changed])
assert tokenizer(dialogue_prompt).input_ids == dialogue_ids
assert tokenize_turn_by_turn(PurePromptBuilder, plain_tokenizer, DIALOGUE)[0] == dialogue_ids
assert plain_tokenizer(training_prompt).input_ids == training_ids
assert changed == ([dialogue_ids.index(2) + 1] if compat.IS_V5 else [])

# %% [markdown]
# ## 动手试试
#
# 选一个构造器和一条消息。函数会打印推理提示词、加上一个简短回答之后的提示词，以及骨干网络自己的分词器对推理提示词分出的 token。在 JupyterLab 里，下拉菜单会重新运行它；作为普通脚本运行时，它只用第一个选项运行一次。

# %%
from vla_backbone.notebook import explore


def show_prompt(builder, message):
    builder_cls = {cls.__name__: cls for cls in BUILDERS}[builder]
    inference = build(builder_cls, [("human", message)]).get_prompt()
    training = build(builder_cls, [("human", message), ("gpt", "A red cup.")]).get_prompt()
    builder_tokenizer = TOKENIZERS[builder_cls]
    ids = builder_tokenizer(inference).input_ids
    print("inference:", repr(abbreviate(inference)))
    print("training: ", repr(abbreviate(training)))
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
# - `PromptBuilder` 按轮次写出一段对话；`add_turn` 返回它追加的文本，`get_prompt` 给出完整提示词，`get_potential_prompt` 预览再加一个 human 轮次后的样子。`TurnPromptBuilder` 承载共用的逻辑，六个构造器各自只说明如何包装一个轮次。
# - 这些字符串逐字节复现，怪癖也一并保留，因为 checkpoint 就是在它们上面训练的：三个不同的默认系统提示词（LLaMa2Chat、Vicuna、Qwen），`<<SYS>`，Phi 手写的 BOS，Qwen 第 0 轮不返回的系统提示词块，Qwen 保留的换行和结尾的 `<|endoftext|>`。`get_potential_prompt` 不清理消息，写出的内容里既没有 Phi 的 BOS，也没有 Qwen 的系统提示词块。
# - OpenVLA 用 `In: What action should the robot take to ...?\nOut:` 提问；训练时 `Out:` 后面有一个空格，在 Llama-2 上就是第一个动作 token 前面的 token 29871。上游的 `predict_action` 会把它补上。
# - 只有回答带标签，其余位置都是 `-100`。对 OpenVLA 来说，留下的恰好是七个动作 token 和 `</s>`。
# - 在 transformers 5 上，直接用 `AutoTokenizer` 时，Llama-2 对文本中 `</s>` 之后的内容会给出不同的 id，而 `legacy=True` 也修不好所有文本；Llama-2 家族直接读取自己的 `tokenizer.json`，得到的就是 OpenVLA 训练时所用的 4.x id。
#
# ## 练习
# 1. 继承 `TurnPromptBuilder` 写一个 `ChatMLNoSystemPromptBuilder`（只重写 `wrap_human`、`wrap_gpt` 和 `finish`）。用 `assert` 检查它的推理提示词就是去掉系统提示词块之后的 Qwen 提示词。
# 2. 分别用 `LLaMa2ChatPromptBuilder` 和 `VicunaV15ChatPromptBuilder` 对 `DIALOGUE` 运行 `tokenize_turn_by_turn`。两者各有多少个 token 带标签？解释为什么数量相同。
# 3. 在 phi-2 和 OPT 的分词器上，为一个随机动作构造 OpenVLA 训练提示词，找出最后 `len(action) + 1` 个 token 和“动作 id 加 EOS”在哪里不一致。然后改为直接用提示词的 id 和 `action_tokenizer.token_ids(action)` 拼出 `input_ids`，这样不管分词器怎么切，标签都是对的。
# 4. 在 Qwen 分词器上，比较动作问题的推理提示词 id 和训练提示词 id。Qwen 有 openvla#104 的问题吗？为什么有，或者为什么没有？
# 5. 分别用 `plain_tokenizer` 和 `tokenizer` 一次性对 `LLaMa2ChatPromptBuilder` 版本的 `DIALOGUE` 分词。在 transformers 5 上哪些 id 不同？它们各自前面紧挨着的是哪个 token？
