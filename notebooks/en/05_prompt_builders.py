# %% [markdown]
# # 05 · Prompt builders and the OpenVLA action prompt
#
# A language model learns one exact text format during training, down to spaces and newlines. An OpenVLA
# checkpoint has seen `In: What action should the robot take to ...?\nOut: ` followed by seven action tokens
# millions of times; give it a prompt that differs by one space and it reads tokens it never trained on. The
# *prompt builder* is the small object that writes those strings, and every backbone names the builder it was
# trained with. This notebook puts the six builders side by side on the same conversation, checks every string
# byte for byte, follows the action prompt into token ids, and shows which tokens carry a training label.
#
# **What you will learn here**
# - the `PromptBuilder` interface (`add_turn`, `get_potential_prompt`, `get_prompt`) and the turn logic every
#   builder shares;
# - the exact string each of the six builders produces, quirks included, and why a "fix" would hurt;
# - which backbone id uses which builder;
# - the OpenVLA action prompt, and the space after `Out:` that training has and inference lacks (openvla#104);
# - how a conversation becomes token ids and labels, and why only the action tokens (plus EOS) are labelled.

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

# %% [markdown]
# ## The interface: three methods and a family name
#
# `PromptBuilder(model_family, system_prompt=None)` is an abstract class. `model_family` (`"openvla"` for VLA
# training, `"prismatic"` for the VLMs it descends from) only chooses the default system prompt; templates without a
# system prompt ignore it. A conversation is built turn by turn:
#
# - `add_turn(role, message)` appends one turn and **returns the text it appended** (the training code tokenizes
#   that piece on its own, as we will do at the end);
# - `get_potential_prompt(message)` shows the prompt as it would read if the user said `message` next, without
#   changing the builder;
# - `get_prompt()` returns the whole conversation so far, ready for the tokenizer.

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
# The smallest conversation: one human turn with the plain `In:`/`Out:` template OpenVLA uses. `add_turn` returns
# exactly what it appended — here with a trailing space after `Out:` — while `get_prompt` strips trailing
# whitespace, so the prompt handed to the tokenizer ends with `Out:`.

# %%
builder = PurePromptBuilder("openvla")
appended = builder.add_turn("human", "What is on the table?")
print("add_turn returned:", repr(appended))
print("get_prompt():     ", repr(builder.get_prompt()))
assert appended == "In: What is on the table?\nOut: "
assert builder.get_prompt() == "In: What is on the table?\nOut:"

# %% [markdown]
# `get_potential_prompt` is a preview: it builds the text with one more human turn and leaves the builder as it
# was. An interactive demo can show the prompt for whatever the user is typing without committing to it.

# %%
fresh = PurePromptBuilder("openvla")
preview = fresh.get_potential_prompt("What is on the table?")
print(repr(preview))
assert preview == "In: What is on the table?\nOut:"
assert fresh.get_prompt() == "" and fresh.turn_count == 0

# %% [markdown]
# ## The shared turn logic: `TurnPromptBuilder`
#
# Upstream Prismatic copies the same `add_turn` into every builder. Here it is written once, in
# `vla_backbone/prompting/base_prompter.py`, as `TurnPromptBuilder`:
#
# 1. roles must alternate `human`, `gpt`, `human`, ... (anything else raises `PromptTurnError`);
# 2. every message loses its `<image>` placeholder and surrounding whitespace (`clean`);
# 3. an empty gpt message becomes a single space;
# 4. the first human turn may look different from later ones (`first_human_turn`: the system prompt, or a
#    hand-written BOS);
# 5. the finished prompt goes through `finish` (by default: drop a leading `<s>`, strip trailing whitespace).
#
# Read the shared `add_turn`:

# %%
print(inspect.getsource(TurnPromptBuilder.add_turn))

# %% [markdown]
# A concrete builder only overrides the hooks it needs. The table below is computed from the classes themselves:
# `Pure` needs one method, `Qwen` overrides all five, and none of them redefines `add_turn`.

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
# ## Six builders, one conversation
#
# Every builder now gets the same two turns. The human message is deliberately messy — an `<image>` placeholder,
# a newline, spaces on both sides — the way conversations arrive from a dataset. Four templates put the default
# system prompt in; it is the same sentence for `openvla` and `prismatic`:

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
# Here are the expected training prompts, written out in full (`SYS` stands for the sentence above). Read them
# side by side: the wrappers differ, and so does what each one does with the end of the text.

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
# At inference the robot only asks; the builder has one human turn and the model writes the rest. These are the
# prompts each template hands to the tokenizer then. Five of them end right after the colon or `[/INST]`; Qwen
# keeps its newline after `assistant`.

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
# **Try it:** change the gpt message in `CONVERSATION` (say, to `"Two spoons."`), re-run the `EXPECTED_TRAINING`
# cell and read the assertion message; then edit the expected strings until it passes again. Now you know exactly
# where an answer lands in each template.
#
# ## Which backbone uses which builder
#
# Every backbone answers `prompt_builder_fn` with a builder **class**; the VLM instantiates it once per example.
# The choice follows the id: `*-pure` models were never chat-tuned and get the plain template, chat models get
# the template they were tuned with. Loading every id in inference mode (architecture only, no pretrained weights)
# is quick with the tiny replicas:

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
# Every Qwen-2.5 id, `-pure` included, uses the ChatML template, as in MiniVLA.
#
# The tokenizers come along: we keep one per builder (Llama-2's for the three Llama templates) for the rest of
# the notebook.

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
# ## The quirks, one at a time
#
# Each quirk below looks like something to tidy up. It is not: an OpenVLA or Prismatic checkpoint was trained on
# these exact bytes, and the builder must reproduce them.
#
# ### `<image>` disappears, messages are stripped
#
# Datasets in the LLaVA format mark the picture with `<image>` inside the text. The VLM never puts the picture
# into the text: it splices projected image patches in as embeddings right after BOS (notebook 11). So the
# placeholder is removed, and the message stripped.

# %%
assert TurnPromptBuilder.clean("<image>\n  What is on the table?  ") == "What is on the table?"
assert all("<image>" not in build(cls, CONVERSATION).get_prompt() for cls in BUILDERS)

# %% [markdown]
# ### An empty answer becomes one space
#
# A gpt turn with an empty message is written as `" "` followed by the end-of-turn marker. With the plain template
# the prompt then has two spaces after `Out:`: the one from the human turn and the one standing in for the answer.

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
# The default `finish` also drops a leading `<s>`: the tokenizer adds BOS itself, and a second one written in the
# text would appear twice. None of these templates starts with `<s>`, so it is a safeguard only.

# %%
assert PurePromptBuilder("openvla").finish("<s>In: x\nOut: ") == "In: x\nOut:"

# %% [markdown]
# ### LLaMa2Chat: `<<SYS>` with a single `>`
#
# Meta's Llama-2-chat format opens the system block with `<<SYS>>`. Prismatic's builder writes `<<SYS>` — one `>`
# short — and closes it correctly with `<</SYS>>`. It is a typo, and we keep it: Prismatic's released
# `llama2-chat+7b` and `llama2-chat+13b` VLMs were trained on the typo, so those checkpoints expect it. "Fixing" it
# would hand them different tokens at inference from the ones they learned, with no error anywhere, only a quiet
# drop in quality.

# %%
chat_prompt = build(LLaMa2ChatPromptBuilder, CONVERSATION).get_prompt()
assert chat_prompt.startswith("[INST] <<SYS>\n" + SYS + "\n<</SYS>>\n\n")
assert "<<SYS>>" not in chat_prompt and chat_prompt.count("<</SYS>>") == 1

# %% [markdown]
# Only the first human turn carries the system block; later turns are plain `[INST] ... [/INST] `.

# %%
chat = build(LLaMa2ChatPromptBuilder, CONVERSATION)
assert chat.add_turn("human", "Where is it?") == "[INST] Where is it? [/INST] "

# %% [markdown]
# ### Vicuna: the system sentence, then a space
#
# Vicuna v1.5 has no `SYSTEM:` label: the system prompt is a plain sentence, then one space, then `USER:`.

# %%
vicuna_prompt = build(VicunaV15ChatPromptBuilder, CONVERSATION).get_prompt()
assert vicuna_prompt.startswith(SYS + " USER: What is on the table? ASSISTANT: ")

# %% [markdown]
# ### Phi: the BOS is written by hand, and only trailing whitespace goes
#
# Phi-2's tokenizer adds no BOS (notebook 04), but the VLM needs a first token to splice the image patches after.
# So `PhiPromptBuilder` writes `<|endoftext|>` (phi-2's BOS, which is also its EOS) in front of the first human
# turn — only the first. It also overrides `finish`: the default removes the builder's `bos` from the start of the
# prompt, and for Phi that `bos` is the very `<|endoftext|>` it has just written. Phi's `finish` strips only the end.

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
# The tokenizer turns the hand-written text into phi-2's BOS id, and adds nothing in front of it:

# %%
phi_tokenizer = TOKENIZERS[PhiPromptBuilder]
phi_ids = phi_tokenizer(phi.get_prompt()).input_ids
print(phi_ids[:6], phi_tokenizer.convert_ids_to_tokens(phi_ids[:3]))
assert phi_ids[0] == phi_tokenizer.bos_token_id == phi_tokenizer.eos_token_id and phi_ids[1] != phi_ids[0]

# %% [markdown]
# ### Qwen: no strip at all, and `<|endoftext|>` after an answer
#
# ChatML puts a newline after every role header, and the model was trained to start its answer after
# `assistant\n`. So the Qwen builder never strips: its inference prompt ends with that newline. After a gpt turn,
# `get_prompt` swaps the final `\n` for `<|endoftext|>`, so the model also learns where the text stops. The builder's
# internal text keeps the newline, and the swap disappears again as soon as the next human turn follows.

# %%
qwen = build(QwenPromptBuilder, CONVERSATION)
assert qwen.get_potential_prompt("Where is it?").endswith("<|im_start|>assistant\n")
assert qwen.prompt.endswith("A red cup.<|im_end|>\n")
assert qwen.get_prompt().endswith("A red cup.<|im_end|><|endoftext|>")
qwen.add_turn("human", "Where is it?")
assert qwen.get_prompt().endswith("<|im_start|>assistant\n") and "<|endoftext|>" not in qwen.get_prompt()

# %% [markdown]
# Qwen has no BOS token; the first token of a Qwen prompt is `<|im_start|>`, written by the template:

# %%
qwen_tokenizer = TOKENIZERS[QwenPromptBuilder]
qwen_ids = qwen_tokenizer(qwen.get_prompt()).input_ids
assert qwen_tokenizer.bos_token_id is None
assert qwen_ids[0] == qwen_tokenizer.convert_tokens_to_ids("<|im_start|>")

# %% [markdown]
# ## Turns out of order
#
# A builder counts turns: even turns must come from `human`, odd turns from `gpt`. Anything else raises
# `PromptTurnError` — a `ValueError` — with the turn number and the role it expected. A conversation that starts
# with the model, or two human messages in a row, is a data bug that would otherwise produce a prompt in a shape the
# model never saw.

# %%
from vla_backbone.errors import PromptTurnError

with expect_error(PromptTurnError, match="turn 0 must come from 'human'"):
    PurePromptBuilder("openvla").add_turn("gpt", "A red cup.")
with expect_error(PromptTurnError, match="turn 1 must come from 'gpt'"):
    build(PurePromptBuilder, CONVERSATION[:1]).add_turn("human", "Hello again")
assert issubclass(PromptTurnError, ValueError)

# %% [markdown]
# ## The OpenVLA action prompt
#
# OpenVLA asks one question, always the same way: `openvla_action_prompt(instruction)` lower-cases the instruction
# and wraps it. With the Pure builder (OpenVLA-7B is built on `llama2-7b-pure`), the inference prompt is:

# %%
question = openvla_action_prompt("Pick up the cup")
inference_builder = PurePromptBuilder("openvla")
inference_builder.add_turn("human", question)
inference_prompt = inference_builder.get_prompt()
print(repr(inference_prompt))
assert question == "What action should the robot take to pick up the cup?"
assert inference_prompt == "In: What action should the robot take to pick up the cup?\nOut:"

# %% [markdown]
# During training the same builder also receives the answer: seven action tokens, written as text by
# `ActionTokenizer` (each dimension clipped to [-1, 1], cut into 256 bins, bin *b* written as token id
# `vocab_size - b`, the least-used end of the vocabulary). On the tiny replica those ids decode to odd fragments of
# the training corpus — that is expected; on Llama-2 they are rarely used tokens.

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
# The training prompt keeps the space after `Out:`: `get_prompt` strips only the end of the whole text, and the
# end is now `</s>`.

# %%
training_builder = PurePromptBuilder("openvla")
training_builder.add_turn("human", question)
training_builder.add_turn("gpt", action_text)
training_prompt = training_builder.get_prompt()
print(repr(training_prompt[:70]), "...")
assert training_prompt == "In: What action should the robot take to pick up the cup?\nOut: " + action_text + "</s>"
assert training_prompt.startswith(inference_prompt + " ")

# %% [markdown]
# ### openvla#104: a space at training time, none at inference
#
# So the model trained on `Out: ` + actions and is asked with `Out:`. On the token level (tiny Llama-2 tokenizer,
# which prepends BOS `<s>` = 1):

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
# The inference ids are **not** a prefix of the training ids: the model is asked to continue a sequence it never
# saw during training. On the real Llama-2 tokenizer the space after `Out:` becomes one token of its own
# (`▁`, id 29871), so the two sequences differ by exactly that token; upstream `predict_action` repairs it by
# appending 29871 whenever the prompt does not already end with it (openvla#104). That repair is specific to
# Llama-2's vocabulary. Our tiny tokenizer merges the space into a larger token (`?\nOut:▁`), so appending one id
# would not help here. Tokenizing the prompt *with* its space does; whatever the tokenizer, the check to make is
# that the inference ids are a prefix of the training ids:

# %%
repaired_ids = tokenizer(inference_prompt + " ").input_ids
print(repaired_ids)
assert repaired_ids == training_ids[: len(repaired_ids)]

# %% [markdown]
# Where did the mismatch come from? Prismatic, OpenVLA's parent, tokenizes a conversation turn by turn and strips
# each Llama turn on the right, so its training human turn ends with `Out:` exactly like the inference prompt.
# OpenVLA's action dataset instead tokenizes the whole `get_prompt()` in one call, and there the space in the
# middle survives. Both tokenizations come next.
#
# ## Tokens and labels
#
# ### Turn by turn, as Prismatic does
#
# Prismatic's dataset calls `add_turn` for each turn and tokenizes the text it returns, on its own: BOS only for
# the first turn, trailing whitespace stripped (a Llama tokenizer would otherwise add a separate space token). The
# labels follow one rule: every token of a human turn gets `-100` (the index the cross-entropy ignores), every
# token of a gpt turn gets its own id. The model is graded on answers only, never on the questions.

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
# A picture of the result: one row per token, green where the token carries a label, grey where it is ignored.

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
# The label rule, checked token by token: `-100` exactly on the human turns (BOS included), the token's own id
# exactly on the gpt turns. Each answer ends with `</s>`, so the model is also taught to stop.

# %%
for token_id, label, turn in zip(dialogue_ids, dialogue_labels, dialogue_turns):
    role = DIALOGUE[turn][0]
    assert label == (IGNORE_INDEX if role == "human" else token_id)
assert dialogue_ids[0] == tokenizer.bos_token_id and dialogue_labels[0] == IGNORE_INDEX
gpt_ends = [i for i in range(len(dialogue_ids)) if dialogue_turns[i] % 2 == 1 and
            (i + 1 == len(dialogue_ids) or dialogue_turns[i + 1] != dialogue_turns[i])]
assert [dialogue_ids[i] for i in gpt_ends] == [tokenizer.eos_token_id] * 2

# %% [markdown]
# And the reason for #104's absence in Prismatic: the stripped first turn tokenizes exactly like the inference
# prompt, so training and inference agree on every token before the answer.

# %%
first_turn = [token_id for token_id, turn in zip(dialogue_ids, dialogue_turns) if turn == 0]
assert first_turn == tokenizer(PurePromptBuilder("prismatic").get_potential_prompt(DIALOGUE[0][1])).input_ids

# %% [markdown]
# ### The OpenVLA action example: only actions and EOS are labelled
#
# OpenVLA's dataset tokenizes the whole training prompt at once (BOS added), copies the ids into the labels, and
# then sets every label to `-100` except the last `len(action) + 1`: the seven action tokens and `</s>`. Counting
# from the end works only if the action text turns back into exactly the seven action ids; for this action it does,
# and we check it.

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
# The labelled ids decode back to actions: each to the centre of its bin, so within one bin width (2/255) of the
# original values.

# %%
decoded = action_tokenizer.decode(torch.tensor(labelled[:-1]))
print(decoded)
assert torch.all((decoded - action).abs() <= 2 / 255)

# %% [markdown]
# ## Try it
#
# Pick a builder and a message. The function prints the inference prompt, the prompt after a short answer, and the
# tokens the backbone's own tokenizer makes of the inference prompt. In JupyterLab the drop-downs re-run it; as a
# plain script it runs once with the first options.

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
# ## Summary
# - A `PromptBuilder` writes a conversation turn by turn; `add_turn` returns the text it appended, `get_prompt`
#   gives the whole prompt, `get_potential_prompt` previews one more human turn. `TurnPromptBuilder` holds the shared
#   logic, and each of the six builders only says how it wraps a turn.
# - The strings are reproduced byte for byte, quirks included (`<<SYS>`, Vicuna's bare system sentence, Phi's
#   hand-written BOS, Qwen's kept newline and final `<|endoftext|>`), because checkpoints were trained on them.
# - OpenVLA asks `In: What action should the robot take to ...?\nOut:`; it trained with a space after `Out:`.
#   Tokenize inference prompts so that they are a prefix of the training ids (upstream appends token 29871 on
#   Llama-2).
# - Only answers carry labels: `-100` everywhere else. For OpenVLA that leaves exactly the seven action tokens and
#   `</s>`.
#
# ## Exercises
# 1. Write a `ChatMLNoSystemPromptBuilder` by subclassing `TurnPromptBuilder` (override `wrap_human`, `wrap_gpt`
#    and `finish` only). Check with `assert` that its inference prompt is Qwen's without the system block.
# 2. Run `tokenize_turn_by_turn` with `LLaMa2ChatPromptBuilder` and `VicunaV15ChatPromptBuilder` on `DIALOGUE`.
#    How many tokens are labelled in each? Explain why the number is the same for both.
# 3. Draw 200 random actions (`torch.rand(7) * 2 - 1`) and check, on every family's replica, that
#    `action_tokenizer(action)` tokenizes back into the seven action ids inside the training prompt. On a real
#    vocabulary, where the tail ids are ordinary rare words, neighbouring ones could merge: for such an action,
#    which tokens would `labels[:-(len(action) + 1)] = -100` label? Build `input_ids` directly from the prompt ids
#    and `encode(action)` instead, so that the labels are right whatever the tokenizer does.
# 4. On the Qwen tokenizer, compare the inference prompt's ids with the training prompt's ids for the action
#    question. Does Qwen have openvla#104's problem? Why, or why not?
