# %% [markdown]
# # A2 · Assignment: a prompt builder from a written template
#
# A chat-tuned checkpoint only works with the exact text layout it was fine-tuned on; one missing newline and the
# model sees a prompt it has never seen. Model cards describe that layout in prose, and someone has to turn the
# prose into code. In this assignment you do exactly that for a template described below, then turn conversations
# into the two sequences training needs: token ids, and labels that say which tokens the loss learns from.
#
# **What you will do**
# - implement `TaskActionPromptBuilder` from its written description, on top of the package's `TurnPromptBuilder`
#   (notebook 05);
# - implement `tokens_and_labels`, which tokenizes a conversation turn by turn and masks everything the model
#   should not learn to produce;
# - look at the result token by token, and check that the loss really ignores the masked tokens.
#
# **How you are graded.** Write your code where a cell says `# YOUR CODE HERE` and delete the
# `raise NotImplementedError` line. Run each check cell: it is worth the points in the heading above it. Then, from a clone of the repository, run the grader,
# which tests more cases:
#
# `.venv/bin/python -m pytest tests/assignments/test_a2_prompt_builder.py --notebook path/to/A2_prompt_builder.ipynb`
#
# (It reads the `.ipynb` itself; a `.py` written by jupytext works too.)

# %%
# Set-up, the same in every notebook: on Colab install the package; everywhere print versions and seed.
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "vla-backbone[notebooks] @ git+https://github.com/vla-backbone/vla-backbone-notebooks"], check=True)
from vla_backbone.notebook import setup
setup()

# %%
LANG = "en"  # the language of this notebook's prose and plot labels
from vla_backbone.notebook import use_language
use_language(LANG)


# %%
def say(en: str, zh: str) -> str:
    """A check's message, in the language of this notebook."""
    return zh if LANG == "zh" else en


# %% [markdown]
# ## How the package's builders are made
#
# Every builder in `vla_backbone.prompting` is a `TurnPromptBuilder`. The base class owns the logic all templates
# share: roles alternate `human`, `gpt`, `human`, ...; `<image>` is removed from every message `add_turn` receives,
# which is then stripped (`get_potential_prompt` uses its message as given, as upstream does); an empty answer
# becomes a single space; `add_turn` returns exactly the text it appended; and `get_prompt()` /
# `get_potential_prompt(message)` strip trailing whitespace and a leading `<s>` (the tokenizer adds BOS itself). A concrete builder only says how it wraps messages, by overriding up to three methods:
#
# | method | default | what it decides |
# |---|---|---|
# | `wrap_human(message)` | (abstract) | the text around a user message |
# | `wrap_gpt(message)` | `message + eos` | the text around an answer (`eos` is `"</s>"`) |
# | `first_human_turn(message)` | `wrap_human(message)` | anything that comes once, before the first message |
#
# `PurePromptBuilder`, OpenVLA's own template, overrides only `wrap_human`:

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
# ## The template
#
# Here is the template, as its (imaginary) model card describes it. Read it closely: every space and newline counts.
#
# > **Task/Action format.** Each user message is written as `Task: ` followed by the message and a newline, then
# > `Action: ` (with the trailing space): the model's answer follows directly. Each answer is followed by the
# > end-of-sequence token `</s>` and a newline. If a system prompt is given, it comes once, stripped, on its own line
# > before the first `Task:`; there is no default system prompt. The tokenizer adds BOS; the prompt text does not.
#
# So a two-turn conversation with the system prompt `"You control a robot arm."` is the text
#
# ```
# You control a robot arm.
# Task: What action should the robot take to pick up the cup?
# Action: move left</s>
# Task: and then?
# Action: stop</s>
# ```
#
# and the inference prompt for the first question ends with `Action:` (the base class strips the trailing space,
# as OpenVLA's builders do).

# %% [markdown]
# ## Task 1 · `TaskActionPromptBuilder`
#
# Implement the template as a subclass of `TurnPromptBuilder`. Override only what the table above lists; keep the
# base class's turn logic (do not override `add_turn`, `get_prompt` or `get_potential_prompt`). The system prompt
# is in `self.system_prompt` (`None` when none was given).

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
# ### Check your work (5 points)

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
# ## Task 2 · Tokens and labels
#
# Training needs two sequences of the same length: `input_ids`, and `labels`, where `-100` marks a position the loss
# ignores. The model should learn to *answer*, not to write the user's questions, so only answer tokens keep their
# ids as labels. Prismatic builds both sequences turn by turn for its multi-turn chat data, and you will too:
#
# 1. for each `(role, message)` of the conversation, in order, call `builder.add_turn(role, message)` and tokenize
#    the text it returns, with `add_special_tokens=True` for the first turn only (that is where BOS comes from) and
#    `False` after;
# 2. append the ids to `input_ids`; append `-100` for each of them to `labels` if the turn is `human`, or the ids
#    themselves if it is `gpt`.
#
# Return `(input_ids, labels)` as two lists of ints. `builder` is a fresh builder of any `PromptBuilder` class.

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
# ### Check your work (5 points)

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
# ## Tokens and labels, side by side
#
# Here is what the model is trained on, one token per row. BOS and the whole question are masked; the answer, its
# `</s>` and the newline after it carry labels. Two details are worth a look. The answer turn was tokenized on its own,
# so its first token carries `▁`, the tokenizer's mark for a space: at inference the prompt ends with `Action:` and
# the model has to produce that space itself, the same mismatch OpenVLA has with `Out:`. And the newline after
# `</s>` is supervised too; that is harmless, since generation stops at `</s>`.

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
# A picture of the same thing for the four-turn conversation: grey positions are masked, blue ones are learned.
# Only the two answers light up.

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
# ## What the loss sees
#
# HuggingFace shifts the labels by one inside the model (position *t* predicts token *t + 1*) and averages the
# cross-entropy over the positions whose label is not `-100`. Recomputing it by hand from the logits gives the same
# number: masked tokens contribute nothing.

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
# ## Summary
# - A template is three decisions: how a user message is wrapped, how an answer is wrapped, and what comes once
#   at the start. `TurnPromptBuilder` keeps the rest (roles, clean-up, stripping) in one place.
# - Training sequences are built turn by turn: BOS from the first turn only, labels `-100` on every user turn.
# - The loss averages over labelled positions only; a wrong mask silently trains the model on the wrong text.
#
# ## Exercises
# 1. Tokenize the whole `get_prompt()` string at once and compare it with your turn-by-turn ids. Where do they
#    differ, and why (hint: the `▁` the tokenizer puts in front of each piece)?
# 2. Build the same conversation with `PhiPromptBuilder` and the `phi-2-3b` tokenizer. Where does its first token
#    come from, and is its label `-100`?
# 3. Change `tokens_and_labels` to supervise only the last answer, as OpenVLA does for actions. Which labels change?
