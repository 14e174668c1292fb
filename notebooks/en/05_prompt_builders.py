# %% [markdown]
# # 05 · Prompt builders and the OpenVLA action prompt
#
# A language model learns one exact text format during training, down to spaces and newlines. An OpenVLA
# checkpoint has seen `In: What action should the robot take to ...?\nOut: ` followed by seven action tokens
# millions of times; give it a prompt that differs by one space and it reads tokens it never trained on. The
# *prompt builder* is the small object that writes those strings, and every backbone names the builder it was
# trained with. This notebook puts the six builders side by side on the same conversation, checks every string
# byte for byte against literals copied from upstream, follows the action prompt into the real Llama-2 token ids,
# shows which tokens carry a training label, and ends with a trap that transformers 5 sets for multi-turn Llama-2
# prompts.
#
# **What you will learn here**
# - the `PromptBuilder` interface (`add_turn`, `get_potential_prompt`, `get_prompt`) and the turn logic every
#   builder shares;
# - the exact string each of the six builders produces, with its own default system prompt, quirks included, and
#   why a "fix" would hurt;
# - where `get_potential_prompt` differs from `add_turn`;
# - which backbone id uses which builder;
# - the OpenVLA action prompt in real Llama-2 ids, and the space after `Out:` that training has and inference lacks
#   (openvla#104);
# - how a conversation becomes token ids and labels, and why only the action tokens (plus EOS) are labelled;
# - why a plain `AutoTokenizer` on transformers 5 tokenizes multi-turn Llama-2 prompts differently from the 4.x
#   that OpenVLA trained on, and the one argument that fixes it.

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
#   changing the builder (it is not quite what `add_turn` would write: see the quirks below);
# - `get_prompt()` returns the whole conversation so far, ready for the tokenizer.

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
# was. Upstream writes it in every builder, though nothing upstream calls it.

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
# 2. `add_turn` removes the `<image>` placeholder from every message and strips it;
# 3. an empty gpt message becomes a single space;
# 4. the first human turn may look different from later ones: `first_human_turn` writes it (with the system prompt,
#    where the template has one) for both `add_turn` and `get_potential_prompt`, and `open_conversation` adds what
#    only `add_turn` writes on turn 0 (Phi's hand-written BOS, Qwen's system block) and decides what it returns;
# 5. the finished prompt goes through `finish` (by default: drop a leading `<s>`, strip trailing whitespace), and
#    a preview through `finish_potential` (by default the same).
#
# Read the shared `add_turn`:

# %%
print(inspect.getsource(TurnPromptBuilder.add_turn))

# %% [markdown]
# A concrete builder only overrides the hooks it needs. The table below is computed from the classes themselves:
# `Pure` and `MistralInstruct` need one method each, and none of the six redefines `add_turn`.

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
# ## Three default system prompts
#
# Three templates have a system prompt, and each has its own default text, kept per builder in the class attribute
# `default_system_prompts` (model family → text; `openvla` and `prismatic` get the same sentence). Pure,
# MistralInstruct and Phi have none. The texts below are typed in from upstream's files, not read from the package,
# and then checked against the classes:

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
# A `system_prompt=` argument replaces the default (LLaMa2Chat and Vicuna strip it when they write it). A builder
# with a system prompt refuses a family it has no default for, instead of silently writing none; a builder without
# one accepts any family.

# %%
custom = LLaMa2ChatPromptBuilder("openvla", system_prompt="  Answer briefly.  ")
assert custom.add_turn("human", "Hi") == "[INST] <<SYS>\nAnswer briefly.\n<</SYS>>\n\nHi [/INST] "
assert VicunaV15ChatPromptBuilder("openvla", system_prompt="  Answer briefly.  ").add_turn("human", "Hi") == (
    "Answer briefly. USER: Hi ASSISTANT: ")
with expect_error(ValueError, match="no default system prompt for model family 'my-robot'"):
    QwenPromptBuilder("my-robot")
assert PurePromptBuilder("my-robot").system_prompt is None

# %% [markdown]
# ## Six builders, one conversation
#
# Every builder now gets the same two turns. The human message is deliberately messy — an `<image>` placeholder,
# a newline, spaces on both sides — the way conversations arrive from a dataset.

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
# Here are the expected training prompts, written out in full. Read them side by side: the wrappers differ, each
# chat template carries its own system prompt, and each one does something different with the end of the text.

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
# At inference the robot only asks; the builder has one human turn and the model writes the rest. These are the
# prompts each template hands to the tokenizer then. Five of them end right after the colon or `[/INST]`; Qwen
# keeps its newline after `assistant`.

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
# **Try it:** change the gpt message in `CONVERSATION` (say, to `"Two spoons."`), re-run the `EXPECTED_TRAINING`
# cell and read the assertion message; then edit the expected strings until it passes again. Now you know exactly
# where an answer lands in each template.
#
# ## Which backbone uses which builder
#
# Every backbone answers `prompt_builder_fn` with a builder **class**; the VLM instantiates it once per example.
# The choice follows the id: `*-pure` models were never chat-tuned and get the plain template, chat models get
# the template they were tuned with. The property reads nothing but the backbone's id, so we can ask each id's
# class without loading a model, evaluating the property on a stand-in that carries only `identifier`:

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
# Every Qwen-2.5 id, `-pure` included, uses the ChatML template, as in MiniVLA.
#
# For the rest of the notebook we need each template's tokenizer, so we load one backbone per tokenizer: the three
# Llama-2 templates share Llama-2's real tokenizer. A loaded backbone gives the same answer as the table.

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
# ## The quirks, one at a time
#
# Each quirk below looks like something to tidy up. It is not: an OpenVLA or Prismatic checkpoint was trained on
# these exact bytes, and the builder must reproduce them.
#
# ### `add_turn` cleans a message, `get_potential_prompt` does not
#
# Datasets in the LLaVA format mark the picture with `<image>` inside the text. The VLM never puts the picture
# into the text: it splices projected image patches in as embeddings right after BOS (notebook 11). So `add_turn`
# removes the placeholder and strips the message. `get_potential_prompt` uses its message exactly as given — no
# removal, no strip — so a preview of a raw dataset message is not what training saw. Clean the message yourself
# before previewing it.

# %%
messy = CONVERSATION[0][1]
assert PurePromptBuilder("openvla").add_turn("human", messy) == "In: What is on the table?\nOut: "
assert PurePromptBuilder("openvla").get_potential_prompt(messy) == "In: <image>\n  What is on the table?  \nOut:"
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
assert not any(build(cls, CONVERSATION).prompt.startswith("<s>") for cls in BUILDERS)

# %% [markdown]
# ### LLaMa2Chat: `<<SYS>` with a single `>`
#
# Meta's Llama-2-chat format opens the system block with `<<SYS>>`. Prismatic's builder writes `<<SYS>` — one `>`
# short — and closes it correctly with `<</SYS>>`. It is a typo, and we keep it: Prismatic's released
# `llama2-chat+7b` and `llama2-chat+13b` VLMs use the backbones `llama2-7b-chat` and `llama2-13b-chat` (Prismatic's
# `prismatic/conf/models.py`), whose builder is this one, so they were trained on the typo and expect it. "Fixing" it
# would hand them different tokens at inference from the ones they learned, with no error anywhere, only a quiet
# drop in quality.

# %%
chat_prompt = build(LLaMa2ChatPromptBuilder, CONVERSATION).get_prompt()
assert chat_prompt.startswith("[INST] <<SYS>\nYou are a helpful language and vision assistant.")
assert "<<SYS>>" not in chat_prompt and chat_prompt.count("<</SYS>>") == 1

# %% [markdown]
# Only the first human turn carries the system block; later turns are plain `[INST] ... [/INST] `. And
# `get_potential_prompt` on an empty builder includes the block, exactly as the first `add_turn` would.

# %%
chat = build(LLaMa2ChatPromptBuilder, CONVERSATION)
assert chat.add_turn("human", "Where is it?") == "[INST] Where is it? [/INST] "
assert LLaMa2ChatPromptBuilder("openvla").get_potential_prompt("What is on the table?") == EXPECTED_INFERENCE[LLaMa2ChatPromptBuilder]

# %% [markdown]
# ### Vicuna: its own system sentence, then a space
#
# Vicuna v1.5 has no `SYSTEM:` label and a system prompt of its own, not Llama-2-chat's: a plain sentence about "a
# curious user", then one space, then `USER:`.

# %%
vicuna_prompt = build(VicunaV15ChatPromptBuilder, CONVERSATION).get_prompt()
assert vicuna_prompt.startswith(
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. USER: What is on the table? ASSISTANT: "
)

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
assert first == "<|endoftext|>Input: What is on the table?\nOutput: " and second == "Input: Where is it?\nOutput: "
assert phi.get_prompt() == phi.prompt.rstrip() and phi.get_prompt().startswith("<|endoftext|>")
assert not TurnPromptBuilder.finish(phi, phi.prompt).startswith("<|endoftext|>")  # what the default would do

# %% [markdown]
# The tokenizer turns the hand-written text into phi-2's BOS id, 50256, and adds nothing in front of it:

# %%
phi_tokenizer = TOKENIZERS[PhiPromptBuilder]
phi_ids = phi_tokenizer(phi.get_prompt()).input_ids
print(phi_ids[:6], phi_tokenizer.convert_ids_to_tokens(phi_ids[:3]))
assert phi_ids[0] == phi_tokenizer.bos_token_id == phi_tokenizer.eos_token_id == 50256 and phi_ids[1] != 50256

# %% [markdown]
# Upstream writes that BOS in `add_turn` only. A preview on an empty Phi builder therefore starts without it, and
# tokenized it begins with the word `Input`: exactly the prompt the BOS check guards against (notebook 03).

# %%
phi_preview = PhiPromptBuilder("openvla").get_potential_prompt("What is on the table?")
print(repr(phi_preview), phi_tokenizer.convert_ids_to_tokens(phi_tokenizer(phi_preview).input_ids[:2]))
assert phi_preview == "Input: What is on the table?\nOutput:"
assert phi_tokenizer(phi_preview).input_ids[0] != 50256

# %% [markdown]
# ### Qwen: the system block is in the prompt, not in what turn 0 returns
#
# On the first turn, `QwenPromptBuilder.add_turn` writes the system block into the prompt but returns only the user
# turn. Code that tokenizes the returned pieces turn by turn (as Prismatic's dataset does, below) never sees the
# system block; code that tokenizes `get_prompt()` (as OpenVLA's action dataset does) does. A preview before any
# turn has no system block either.

# %%
qwen = QwenPromptBuilder("openvla")
qwen_preview = qwen.get_potential_prompt("What is on the table?")
returned = qwen.add_turn("human", "What is on the table?")
print("returned:", repr(returned))
print("prompt:  ", repr(abbreviate(qwen.prompt)))
assert returned == qwen_preview == "<|im_start|>user\nWhat is on the table?<|im_end|>\n<|im_start|>assistant\n"
assert qwen.prompt == "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" + returned

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
answer = CONVERSATION[1][1]
assert qwen.prompt.endswith(f"{answer}<|im_end|>\n")
assert qwen.get_prompt().endswith(f"{answer}<|im_end|><|endoftext|>")
qwen.add_turn("human", "Where is it?")
assert qwen.get_prompt().endswith("<|im_start|>assistant\n") and "<|endoftext|>" not in qwen.get_prompt()

# %% [markdown]
# Qwen has no BOS token; the first token of a Qwen prompt is `<|im_start|>` (id 151644), written by the template:

# %%
qwen_tokenizer = TOKENIZERS[QwenPromptBuilder]
qwen_ids = qwen_tokenizer(qwen.get_prompt()).input_ids
print(qwen_ids[:4], qwen_tokenizer.convert_ids_to_tokens(qwen_ids[:4]))
assert qwen_tokenizer.bos_token_id is None
assert qwen_ids[0] == qwen_tokenizer.convert_tokens_to_ids("<|im_start|>") == 151644

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
# and wraps it. With the Pure builder (OpenVLA-7B is built on `llama2-7b-pure`), the inference prompt and its ids
# on the real Llama-2 tokenizer (BOS `<s>` = 1 first) are:

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
# During training the same builder also receives the answer: seven action tokens, written as text by
# `ActionTokenizer` (each dimension clipped to [-1, 1], cut into 256 bins, bin *b* = 1..256 written as token id
# `vocab_size - b`). On Llama-2 `vocab_size` is the 32000 trained tokens (the `<PAD>` added later, id 32000, is not
# counted), so the actions are ids 31744 to 31999: the tail of the vocabulary, single characters of scripts the
# model rarely saw. Notebook 11 takes the action tokenizer apart.

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
# The training prompt keeps the space after `Out:`: `get_prompt` strips only the end of the whole text, and the
# end is now `</s>`.

# %%
training_builder = PurePromptBuilder("openvla")
training_builder.add_turn("human", question)
training_builder.add_turn("gpt", action_text)
training_prompt = training_builder.get_prompt()
print(repr(training_prompt))
assert training_prompt == "In: What action should the robot take to pick up the cup?\nOut: " + action_text + "</s>"

# %% [markdown]
# ### openvla#104: a space at training time, none at inference
#
# So the model trained on `Out: ` + actions and is asked with `Out:`. On the token level, the space becomes a token
# of its own, `▁` (id 29871), between `:` and the first action token:

# %%
training_ids = tokenizer(training_prompt).input_ids
n = len(inference_ids)
print("inference:", inference_ids[-3:], tokenizer.convert_ids_to_tokens(inference_ids[-3:]))
print("training: ", training_ids[n - 3 : n + 2], tokenizer.convert_ids_to_tokens(training_ids[n - 3 : n + 2]), "...")
assert training_ids[:n] == inference_ids
assert training_ids[n] == 29871 and tokenizer.convert_ids_to_tokens(29871) == "▁"
assert training_ids[n + 1 :] == action_ids + [tokenizer.eos_token_id]

# %% [markdown]
# It is always there: Llama-2 has no piece that joins `▁` to any of the 256 action characters, so the space can
# never merge into the first action token.

# %%
tail_tokens = tokenizer.convert_ids_to_tokens(list(range(31744, 32000)))
vocabulary = tokenizer.get_vocab()
assert all(len(token) == 1 for token in tail_tokens) and not any("▁" + token in vocabulary for token in tail_tokens)

# %% [markdown]
# The model therefore learned to predict the first action after `▁`, and at inference it is asked right after `:`.
# Upstream `predict_action` repairs it by appending 29871 whenever the prompt does not already end with it
# (openvla#104). Tokenizing the prompt *with* its trailing space gives the same ids. The repair is specific to
# Llama-2's vocabulary; whatever the tokenizer, the check to make is that the inference ids are a prefix of the
# training ids, right up to the first action token.

# %%
repaired_ids = inference_ids if inference_ids[-1] == 29871 else inference_ids + [29871]
assert repaired_ids == training_ids[: len(repaired_ids)] == tokenizer(inference_prompt + " ").input_ids
assert training_ids[len(repaired_ids)] == action_ids[0]

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
# Prismatic's dataset (`FinetuneDataset.__getitem__`, notebook 03) calls `add_turn` for each turn and tokenizes the
# text it returns, on its own: BOS only for the first turn, trailing whitespace stripped for Llama tokenizers (which
# would otherwise add a separate space token, as its comment says). The
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
print(dialogue_ids)

# %% [markdown]
# A picture of the result: one row per token, green where the token carries a label, grey where it is ignored.
# (The table writes characters its font may lack, such as the action tokens later, as `\uXXXX` code points.)

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
# The label rule, checked token by token: `-100` exactly on the human turns (BOS included), the token's own id
# exactly on the gpt turns. Each answer ends with `</s>` (id 2), so the model is also taught to stop.

# %%
for token_id, label, turn in zip(dialogue_ids, dialogue_labels, dialogue_turns):
    role = DIALOGUE[turn][0]
    assert label == (IGNORE_INDEX if role == "human" else token_id)
assert dialogue_ids[0] == tokenizer.bos_token_id == 1 and dialogue_labels[0] == IGNORE_INDEX
gpt_ends = [i for i in range(len(dialogue_ids)) if dialogue_turns[i] % 2 == 1 and
            (i + 1 == len(dialogue_ids) or dialogue_turns[i + 1] != dialogue_turns[i])]
assert [dialogue_ids[i] for i in gpt_ends] == [tokenizer.eos_token_id] * 2 == [2, 2]

# %% [markdown]
# And the reason for #104's absence in Prismatic: the stripped first turn tokenizes exactly like the inference
# prompt (here previewed with the clean message, since `get_potential_prompt` does not clean), so training and
# inference agree on every token before the answer.

# %%
first_turn = [token_id for token_id, turn in zip(dialogue_ids, dialogue_turns) if turn == 0]
assert first_turn == tokenizer(PurePromptBuilder("prismatic").get_potential_prompt("What is on the table?")).input_ids

# %% [markdown]
# ### The OpenVLA action example: only actions and EOS are labelled
#
# OpenVLA's dataset tokenizes the whole training prompt at once (BOS added), copies the ids into the labels, and
# then sets every label to `-100` except the last `len(action) + 1`: the seven action tokens and `</s>`. Counting
# from the end works only if the action text turns back into exactly the seven action ids. On Llama-2's
# SentencePiece tokenizer it always does; on byte-level BPE tokenizers (phi-2, Qwen, OPT) it does not (notebook 11
# measures it). Here we check it.

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
# The labelled ids decode back to actions: each to the centre of its bin, so within half a bin width (1/255) of the
# original values.

# %%
decoded = action_tokenizer.decode_token_ids_to_actions(np.array(labelled[:-1]))
print(decoded.round(4))
assert np.all(np.abs(decoded - action) <= 1 / 255 + 1e-9)

# %% [markdown]
# ## transformers 5 and multi-turn Llama-2 prompts
#
# The Pure template writes `</s>` into the text between turns, so the second human turn starts right after a
# special token: `...</s>In: ...`. How a SentencePiece tokenizer treats a word that follows a special token written
# in the text changed with transformers 5. Llama-2's `tokenizer_config.json` on the hub says `"legacy": false`.
# transformers 4.x ignored that flag for the fast tokenizer `AutoTokenizer` returns; 5.x builds the tokenizer from
# its class and honours it, and then the word after `</s>` loses its leading `▁`: `▁In` (512) becomes `In` (797).
# OpenVLA and Prismatic checkpoints were trained on the 4.x ids.
#
# The replica's tokenizer files are Llama-2's own, so a plain `AutoTokenizer` on them shows what this transformers
# does (the cell runs on 4.57 too, and then says there is no trap):

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
# `legacy=True` repairs this prompt, but not every text. 5.x still builds the tokenizer from its class, with a
# pre-tokenizer of its own, while 4.x used the checkpoint's `tokenizer.json` as it is, and the two split whitespace
# next to a special token differently: a space after `</s>`, a text that starts with a space. The file is the ground
# truth, and the `tokenizers` library reads it without transformers. The Llama-2 family sets the class attribute
# `tokenizer_from_file`, so on 5.x its `load_tokenizer` swaps the rebuilt text-splitting backend for the one the file
# describes (`compat.split_text_as_file_says`): the backbone's tokenizer gives the file's ids, the 4.x ids, on every
# version.

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
# Some checkpoints ship no `tokenizer.json` at all, only the SentencePiece model `tokenizer.model` (Vicuna v1.5 may
# be one). 4.40 converted that file as if `legacy` were true, whatever the config said, ranking the BPE merges by the
# SentencePiece score of the merged piece; that is the converter that wrote the `tokenizer.json` above. With
# `legacy=True`, 4.57 converts it the same way. 5.x builds a backend of its own (measured on 5.24), and it differs
# twice: a space at the start of the text is lost (`" leading"` becomes `▁leading` alone, where the file gives `▁`
# and `▁leading`), and the merges are ranked by id, so the double space in `"a  leading"` becomes `▁▁` (id 259, the
# lowest score) and `leading` instead of `▁` and `▁leading`. So on 5.x `load_tokenizer` rebuilds 4.x's conversion
# (`compat.split_text_as_4x_converted`). The check: a copy of the checkpoint without its `tokenizer.json` must give
# the file's ids, where a plain `AutoTokenizer` on 5.x does not.

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
# Where it bites: any code that tokenizes a whole multi-turn prompt in one call, such as inference on a
# conversation or a dataset that tokenizes `get_prompt()` the way OpenVLA's does. With the backbone's tokenizer the
# whole dialogue tokenizes exactly like the turn-by-turn pieces above. Turn-by-turn tokenization never writes a
# special token in front of a word, so it is safe even with the plain tokenizer; and a single-turn action prompt,
# whose only `</s>` comes last, is too.

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
# ## Try it
#
# Pick a builder and a message. The function prints the inference prompt, the prompt after a short answer, and the
# tokens the backbone's own tokenizer makes of the inference prompt. In JupyterLab the drop-downs re-run it; as a
# plain script it runs once with the first options.

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
# ## Summary
# - A `PromptBuilder` writes a conversation turn by turn; `add_turn` returns the text it appended, `get_prompt`
#   gives the whole prompt, `get_potential_prompt` previews one more human turn. `TurnPromptBuilder` holds the shared
#   logic, and each of the six builders only says how it wraps a turn.
# - The strings are reproduced byte for byte, quirks included, because checkpoints were trained on them: three
#   different default system prompts (LLaMa2Chat, Vicuna, Qwen), `<<SYS>`, Phi's hand-written BOS, Qwen's system
#   block that turn 0 does not return, Qwen's kept newline and final `<|endoftext|>`. `get_potential_prompt` does not
#   clean its message and has neither Phi's BOS nor Qwen's system block.
# - OpenVLA asks `In: What action should the robot take to ...?\nOut:`; it trained with a space after `Out:`, which
#   on Llama-2 is token 29871 before the first action token. Upstream `predict_action` appends it.
# - Only answers carry labels: `-100` everywhere else. For OpenVLA that leaves exactly the seven action tokens and
#   `</s>`.
# - On transformers 5, a plain `AutoTokenizer` gives Llama-2 different ids after a `</s>` written in the text, and
#   `legacy=True` does not repair every text; the Llama-2 family reads its `tokenizer.json` as it is and gets the
#   4.x ids OpenVLA trained on.
#
# ## Exercises
# 1. Write a `ChatMLNoSystemPromptBuilder` by subclassing `TurnPromptBuilder` (override `wrap_human`, `wrap_gpt`
#    and `finish` only). Check with `assert` that its inference prompt is Qwen's without the system block.
# 2. Run `tokenize_turn_by_turn` with `LLaMa2ChatPromptBuilder` and `VicunaV15ChatPromptBuilder` on `DIALOGUE`.
#    How many tokens are labelled in each? Explain why the number is the same for both.
# 3. Build the OpenVLA training prompt for one random action on the phi-2 and OPT tokenizers and find where the
#    last `len(action) + 1` tokens differ from the action ids followed by EOS. Then build `input_ids` directly from the
#    prompt ids and `action_tokenizer.token_ids(action)` instead, so that the labels are right whatever the
#    tokenizer does.
# 4. On the Qwen tokenizer, compare the inference prompt's ids with the training prompt's ids for the action
#    question. Does Qwen have openvla#104's problem? Why, or why not?
# 5. Tokenize the `LLaMa2ChatPromptBuilder` version of `DIALOGUE` in one call with `plain_tokenizer` and with
#    `tokenizer`. Which ids differ on transformers 5, and which token comes right before each of them?
