# %% [markdown]
# # A2 · 作业：照着文字描述写一个提示词构造器
#
# 经过对话微调的 checkpoint，只有在文本排版和微调时一模一样的情况下才能正常工作；少一个换行，模型看到的就是一个它从没见过的提示词。模型卡片通常用文字描述这种排版，总得有人把文字翻译成代码。这份作业里你要为下面描述的模板做这件事，然后把对话转换成训练需要的两个序列：token id，以及标明损失从哪些 token 学习的标签。
#
# **你要完成的事**
# - 在包里的 `TurnPromptBuilder` 基础上，按文字描述实现 `TaskActionPromptBuilder`（对应 notebook 05）；
# - 实现 `tokens_and_labels`：按轮次对一段对话分词，并屏蔽所有不该让模型学着生成的内容；
# - 逐个 token 查看结果，并验证损失确实忽略了被屏蔽的 token。
#
# **如何评分。** 在写着 `# 在这里写你的代码` 的单元格里写代码，并删掉 `raise NotImplementedError` 那一行。运行每个检查单元格，它的分值写在上方的标题里。最后在仓库的克隆里运行评分程序，它会测试更多用例：
#
# `.venv/bin/python -m pytest tests/assignments/test_a2_prompt_builder.py --notebook path/to/A2_prompt_builder.ipynb`
#
# （评分程序直接读取 `.ipynb`；用 jupytext 导出的 `.py` 也可以。）

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


# %%
def say(en: str, zh: str) -> str:
    """A check's message, in the language of this notebook."""
    return zh if LANG == "zh" else en


# %% [markdown]
# ## 包里的构造器是怎么搭起来的
#
# `vla_backbone.prompting` 里的每个构造器都是 `TurnPromptBuilder`。所有模板共用的逻辑都放在这个基类里：角色按 `human`、`gpt`、`human`……交替出现；`add_turn` 收到的每条消息都会删掉 `<image>`，再去掉首尾空白（`get_potential_prompt` 则和上游一样，原样使用传入的消息）；空回答会变成一个空格；`add_turn` 返回的正是它追加的那段文本；`get_prompt()` 和 `get_potential_prompt(message)` 会去掉末尾的空白和开头的 `<s>`（BOS 由分词器自己添加）。具体的构造器只需要说明怎样包裹消息，最多覆盖三个方法：
#
# | 方法 | 默认行为 | 决定什么 |
# |---|---|---|
# | `wrap_human(message)` | （抽象方法） | 用户消息两边的文本 |
# | `wrap_gpt(message)` | `message + eos` | 回答两边的文本（`eos` 是 `"</s>"`） |
# | `first_human_turn(message)` | `wrap_human(message)` | 只在第一条消息之前出现一次的内容 |
#
# OpenVLA 自己的模板 `PurePromptBuilder` 只覆盖了 `wrap_human`：

# %%
from vla_backbone.prompting import PurePromptBuilder, TurnPromptBuilder, openvla_action_prompt

pure = PurePromptBuilder("openvla")
print(repr(pure.add_turn("human", "<image>\n" + openvla_action_prompt("pick up the cup"))))
print(repr(pure.add_turn("gpt", "move left")))
print(repr(pure.get_prompt()))
assert pure.get_prompt() == "In: What action should the robot take to pick up the cup?\nOut: move left</s>"
assert pure.get_potential_prompt("and then?").endswith("</s>In: and then?\nOut:")
assert PurePromptBuilder("openvla").get_potential_prompt("<image> hi") == "In: <image> hi\nOut:"
assert pure.finish("<s>In: hi\nOut: ") == "In: hi\nOut:"

from vla_backbone.errors import PromptTurnError
from vla_backbone.notebook import expect_error

empty = PurePromptBuilder("openvla")
empty.add_turn("human", "hi")
assert empty.add_turn("gpt", "") == " </s>"
with expect_error(PromptTurnError, match="must come from 'human'"):
    PurePromptBuilder("openvla").add_turn("gpt", "an answer first")


# %% [markdown]
# ## 模板
#
# 下面是这个模板在它（虚构的）模型卡片上的描述。请仔细读：每个空格、每个换行都算数。
#
# > **Task/Action 格式。** 每条用户消息写成 `Task: `，后面接消息本身和一个换行，然后是 `Action: `（末尾带一个空格），模型的回答紧接其后。每个回答后面跟着序列结束 token `</s>` 和一个换行。如果给了系统提示词，它只出现一次：去掉首尾空白后，单独占一行，放在第一个 `Task:` 之前；没有默认的系统提示词。BOS 由分词器添加，提示词文本里不写。
#
# 所以，系统提示词为 `"You control a robot arm."` 的两轮对话就是下面这段文本：
#
# ```
# You control a robot arm.
# Task: What action should the robot take to pick up the cup?
# Action: move left</s>
# Task: and then?
# Action: stop</s>
# ```
#
# 而第一个问题的推理提示词以 `Action:` 结尾（和 OpenVLA 的构造器一样，基类会去掉末尾的空格）。

# %% [markdown]
# ## 任务 1 · `TaskActionPromptBuilder`
#
# 把这个模板实现为 `TurnPromptBuilder` 的子类。只覆盖上面表格里列出的方法，保留基类的轮次逻辑（不要覆盖 `add_turn`、`get_prompt` 或 `get_potential_prompt`）。系统提示词在 `self.system_prompt` 里（没给的时候是 `None`）。

# %% nbgrader={"grade": false, "grade_id": "task_action_prompt_builder", "locked": false, "schema_version": 3, "solution": true, "task": false}
class TaskActionPromptBuilder(TurnPromptBuilder):
    """The Task/Action template: ``Task: {message}\\nAction: {answer}</s>\\n``, an optional system line first."""

    ### BEGIN SOLUTION
    def wrap_human(self, message: str) -> str:
        return f"Task: {message}\nAction: "

    def wrap_gpt(self, message: str) -> str:
        return f"{message}{self.eos}\n"

    def first_human_turn(self, message: str) -> str:
        if self.system_prompt is None:
            return self.wrap_human(message)
        return f"{self.system_prompt.strip()}\n{self.wrap_human(message)}"
    ### END SOLUTION


# %% [markdown]
# ### 检查你的代码（5 分）

# %% nbgrader={"grade": true, "grade_id": "check_prompt_builder", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
question = openvla_action_prompt("pick up the cup")
builder = TaskActionPromptBuilder("openvla", system_prompt="You control a robot arm.")
expected = "You control a robot arm.\nTask: What action should the robot take to pick up the cup?\nAction:"
got = builder.get_potential_prompt(question)
assert got == expected, say(f"get_potential_prompt gave\n{got!r}\nexpected\n{expected!r}",
                            f"get_potential_prompt 返回了\n{got!r}\n应为\n{expected!r}")
assert builder.add_turn("human", question) == expected[:-len("Action:")] + "Action: ", \
    say("add_turn('human', ...) must return the text it appended", "add_turn('human', ...) 必须返回它追加的文本")
assert builder.add_turn("gpt", "move left") == "move left</s>\n", \
    say("an answer is followed by </s> and a newline", "回答后面要跟 </s> 和一个换行符")
builder.add_turn("human", "and then?")
builder.add_turn("gpt", "stop")
full = expected + " move left</s>\nTask: and then?\nAction: stop</s>"
assert builder.get_prompt() == full, say(f"get_prompt gave\n{builder.get_prompt()!r}\nexpected\n{full!r}",
                                         f"get_prompt 返回了\n{builder.get_prompt()!r}\n应为\n{full!r}")
plain = TaskActionPromptBuilder("openvla")
assert plain.get_potential_prompt(question) == "Task: " + question + "\nAction:", \
    say("without a system prompt there is no system line", "没有系统提示词时，不应出现系统提示词那一行")
### BEGIN HIDDEN TESTS
assert TaskActionPromptBuilder("prismatic").add_turn("human", "<image> hi ") == "Task: hi\nAction: "
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))


# %% [markdown]
# ## 任务 2 · token 与标签
#
# 训练需要两个等长的序列：`input_ids`，以及 `labels`——其中 `-100` 表示损失忽略这个位置。模型应该学会*回答*，而不是学着写用户的问题，所以只有回答部分的 token 把自己的 id 留作标签。Prismatic 处理多轮对话数据时，就是按轮次构建这两个序列的，你也照此来做：
#
# 1. 按顺序遍历对话中的每个 `(role, message)`，调用 `builder.add_turn(role, message)`，对它返回的文本分词：只有第一个轮次用 `add_special_tokens=True`（BOS 就是从这里来的），之后都用 `False`；
# 2. 把这些 id 追加到 `input_ids`；如果这个轮次是 `human`，就为每个 id 往 `labels` 里追加一个 `-100`，如果是 `gpt`，就追加这些 id 本身。
#
# 以两个 int 列表的形式返回 `(input_ids, labels)`。`builder` 是一个新建的构造器，可以是任意 `PromptBuilder` 类。

# %% nbgrader={"grade": false, "grade_id": "tokens_and_labels", "locked": false, "schema_version": 3, "solution": true, "task": false}
def tokens_and_labels(builder, tokenizer, conversation):
    """``conversation``: a list of ``(role, message)``; returns ``(input_ids, labels)``, two lists of equal length."""
    ### BEGIN SOLUTION
    input_ids, labels = [], []
    for index, (role, message) in enumerate(conversation):
        text = builder.add_turn(role, message)
        ids = tokenizer(text, add_special_tokens=index == 0).input_ids
        input_ids += ids
        labels += [-100] * len(ids) if role == "human" else list(ids)
    return input_ids, labels
    ### END SOLUTION


# %% [markdown]
# ### 检查你的代码（5 分）

# %% nbgrader={"grade": true, "grade_id": "check_tokens_and_labels", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
from vla_backbone import get_llm_backbone_and_tokenizer

backbone, tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure")
conversation = [("human", question), ("gpt", "move left")]
input_ids, labels = tokens_and_labels(TaskActionPromptBuilder("openvla"), tokenizer, conversation)
assert isinstance(input_ids, list) and isinstance(labels, list), say("return two lists", "请返回两个列表")
assert len(input_ids) == len(labels), say(f"{len(input_ids)} ids but {len(labels)} labels",
                                          f"有 {len(input_ids)} 个 id，却有 {len(labels)} 个标签")
assert input_ids[0] == tokenizer.bos_token_id, say("the first turn is tokenized with special tokens, so it starts with BOS",
                                                   "第一个轮次分词时带特殊 token，所以序列以 BOS 开头")
assert input_ids.count(tokenizer.bos_token_id) == 1, say("only the first turn gets BOS", "只有第一个轮次带 BOS")
answer_ids = tokenizer("move left</s>\n", add_special_tokens=False).input_ids
assert input_ids[-len(answer_ids):] == answer_ids, say("the sequence must end with the answer turn's tokens",
                                                       "序列必须以回答轮次的 token 结尾")
assert labels == [-100] * (len(input_ids) - len(answer_ids)) + answer_ids, \
    say("label the answer's tokens, mask the rest with -100", "回答的 token 保留标签，其余位置用 -100 屏蔽")
### BEGIN HIDDEN TESTS
four = conversation + [("human", "and then?"), ("gpt", "stop")]
ids4, labels4 = tokens_and_labels(TaskActionPromptBuilder("openvla"), tokenizer, four)
assert ids4[: len(input_ids)] == input_ids and sum(label != -100 for label in labels4) > len(answer_ids)
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## 把 token 和标签放在一起看
#
# 下面就是模型训练时看到的内容，每行一个 token。BOS 和整个问题都被屏蔽了；回答、回答后的 `</s>` 以及之后的换行带有标签。有两个细节值得留意。第一，回答轮次是单独分词的，所以它的第一个 token 带着 `▁`，也就是分词器表示空格的标记：推理时提示词以 `Action:` 结尾，模型得自己生成这个空格，这和 OpenVLA 在 `Out:` 上的不一致是同一回事。第二，`</s>` 之后的换行也参与监督；这无伤大雅，因为生成到 `</s>` 就停了。

# %%
tokens = tokenizer.convert_ids_to_tokens(input_ids)
for position, (token, token_id, label) in enumerate(zip(tokens, input_ids, labels, strict=True)):
    print(f"{position:3d} {token!r:>28} {token_id:5d} {'-100' if label == -100 else label:>5}")
supervised = [token for token, label in zip(tokens, labels, strict=True) if label != -100]
print("supervised:", supervised)
after_eos = supervised[supervised.index("</s>") + 1 :]
assert labels[0] == -100 and tokens[0] == "<s>"
assert supervised[0].startswith("▁") and tokenizer.convert_tokens_to_string(after_eos).strip(" ") == "\n"

# %% [markdown]
# 把四轮对话的结果画成图：灰色位置被屏蔽，蓝色位置参与学习，亮起来的只有两段回答。

# %%
import matplotlib.pyplot as plt
import numpy as np

TEXT = {
    "en": {"title": "Which tokens the loss learns from (four turns)", "x": "token position", "masked": "masked (-100)", "learned": "learned"},
    "zh": {"title": "损失从哪些 token 学习（四个轮次）", "x": "token 位置", "masked": "被屏蔽（-100）", "learned": "参与学习"},
}[LANG]
four_turns = conversation + [("human", "and then?"), ("gpt", "stop")]
ids_four, labels_four = tokens_and_labels(TaskActionPromptBuilder("openvla"), tokenizer, four_turns)
learned = np.array([label != -100 for label in labels_four])
fig, ax = plt.subplots(figsize=(9, 1.6))
ax.bar(np.arange(len(learned)), np.ones(len(learned)), width=1.0, color=np.where(learned, "tab:blue", "lightgrey"))
ax.set_yticks([])
ax.set_xlabel(TEXT["x"])
ax.set_title(TEXT["title"])
ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="lightgrey"), plt.Rectangle((0, 0), 1, 1, color="tab:blue")],
          labels=[TEXT["masked"], TEXT["learned"]], loc="upper left", fontsize=8)
plt.show()
runs = np.flatnonzero(np.diff(learned.astype(int)) == 1).size + int(learned[0])
assert runs == 2

# %% [markdown]
# ## 损失看到了什么
#
# HuggingFace 在模型内部把标签错开一位（位置 *t* 预测 token *t + 1*），然后只在标签不是 `-100` 的位置上对交叉熵取平均。用 logits 手工重算一遍，得到的数完全一样：被屏蔽的 token 对损失没有任何贡献。

# %%
import torch
import torch.nn.functional as F

batch_ids, batch_labels = torch.tensor([input_ids]), torch.tensor([labels])
with torch.no_grad():
    output = backbone(input_ids=batch_ids, labels=batch_labels)
shift_logits, shift_labels = output.logits[0, :-1], batch_labels[0, 1:]
keep = shift_labels != -100
by_hand = F.cross_entropy(shift_logits[keep], shift_labels[keep])
print(f"model loss {output.loss.item():.4f} | by hand {by_hand.item():.4f} over {int(keep.sum())} tokens")
torch.testing.assert_close(output.loss, by_hand)
assert int(keep.sum()) == len(answer_ids)

# %% [markdown]
# ## 小结
# - 一个模板就是三个决定：用户消息怎么包裹、回答怎么包裹、开头只出现一次的是什么。其余的（角色、清理、去空白）由 `TurnPromptBuilder` 统一负责。
# - 训练序列按轮次构建：只有第一个轮次带 BOS，所有用户轮次的标签都是 `-100`。
# - 损失只在有标签的位置上取平均；掩码一旦写错，模型就会静默地学错文本。
#
# ## 练习
# 1. 把整个 `get_prompt()` 字符串一次性分词，和你按轮次得到的 id 对比。哪里不一样？为什么（提示：分词器在每一段前面加的那个 `▁`）？
# 2. 用 `PhiPromptBuilder` 和 `phi-2-3b` 的分词器构建同一段对话。它的第一个 token 是从哪里来的？它的标签是 `-100` 吗？
# 3. 修改 `tokens_and_labels`，只监督最后一个回答，就像 OpenVLA 对动作所做的那样。哪些标签会变？
