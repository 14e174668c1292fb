"""Prompt builders produce byte for byte upstream's strings (REFERENCE §4), quirks included.

Every expected value below is a literal written from the upstream templates, not computed by this package.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_backbone.errors import PromptTurnError
from vla_backbone.prompting import (
    LLaMa2ChatPromptBuilder,
    MistralInstructPromptBuilder,
    PhiPromptBuilder,
    PurePromptBuilder,
    QwenPromptBuilder,
    VicunaV15ChatPromptBuilder,
    openvla_action_prompt,
)

LLAMA2_SYS = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the user "
    "provides, and assist the user with a variety of tasks using natural language."
)
VICUNA_SYS = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions."
)
QWEN_SYS = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

ASK = "What action should the robot take to pick up the cup?"
# One conversation for every builder: a first turn with an image placeholder, an answer, a padded second question,
# and an empty answer (which becomes a single space).
CONVERSATION = [("human", f"<image>\n{ASK}"), ("gpt", "ok"), ("human", "  again  "), ("gpt", "")]

# builder -> (what each add_turn returns, get_prompt after each turn)
EXPECTED = {
    PurePromptBuilder: (
        [f"In: {ASK}\nOut: ", "ok</s>", "In: again\nOut: ", " </s>"],
        [
            f"In: {ASK}\nOut:",
            f"In: {ASK}\nOut: ok</s>",
            f"In: {ASK}\nOut: ok</s>In: again\nOut:",
            f"In: {ASK}\nOut: ok</s>In: again\nOut:  </s>",
        ],
    ),
    LLaMa2ChatPromptBuilder: (
        [f"[INST] <<SYS>\n{LLAMA2_SYS}\n<</SYS>>\n\n{ASK} [/INST] ", "ok</s>", "[INST] again [/INST] ", " </s>"],
        [
            f"[INST] <<SYS>\n{LLAMA2_SYS}\n<</SYS>>\n\n{ASK} [/INST]",
            f"[INST] <<SYS>\n{LLAMA2_SYS}\n<</SYS>>\n\n{ASK} [/INST] ok</s>",
            f"[INST] <<SYS>\n{LLAMA2_SYS}\n<</SYS>>\n\n{ASK} [/INST] ok</s>[INST] again [/INST]",
            f"[INST] <<SYS>\n{LLAMA2_SYS}\n<</SYS>>\n\n{ASK} [/INST] ok</s>[INST] again [/INST]  </s>",
        ],
    ),
    VicunaV15ChatPromptBuilder: (
        [f"{VICUNA_SYS} USER: {ASK} ASSISTANT: ", "ok</s>", "USER: again ASSISTANT: ", " </s>"],
        [
            f"{VICUNA_SYS} USER: {ASK} ASSISTANT:",
            f"{VICUNA_SYS} USER: {ASK} ASSISTANT: ok</s>",
            f"{VICUNA_SYS} USER: {ASK} ASSISTANT: ok</s>USER: again ASSISTANT:",
            f"{VICUNA_SYS} USER: {ASK} ASSISTANT: ok</s>USER: again ASSISTANT:  </s>",
        ],
    ),
    MistralInstructPromptBuilder: (
        [f"[INST] {ASK} [/INST] ", "ok</s>", "[INST] again [/INST] ", " </s>"],
        [
            f"[INST] {ASK} [/INST]",
            f"[INST] {ASK} [/INST] ok</s>",
            f"[INST] {ASK} [/INST] ok</s>[INST] again [/INST]",
            f"[INST] {ASK} [/INST] ok</s>[INST] again [/INST]  </s>",
        ],
    ),
    PhiPromptBuilder: (
        [f"<|endoftext|>Input: {ASK}\nOutput: ", "ok\n<|endoftext|>", "Input: again\nOutput: ", " \n<|endoftext|>"],
        [
            f"<|endoftext|>Input: {ASK}\nOutput:",
            f"<|endoftext|>Input: {ASK}\nOutput: ok\n<|endoftext|>",
            f"<|endoftext|>Input: {ASK}\nOutput: ok\n<|endoftext|>Input: again\nOutput:",
            f"<|endoftext|>Input: {ASK}\nOutput: ok\n<|endoftext|>Input: again\nOutput:  \n<|endoftext|>",
        ],
    ),
    QwenPromptBuilder: (
        [
            f"<|im_start|>user\n{ASK}<|im_end|>\n<|im_start|>assistant\n",
            "ok<|im_end|>\n",
            "<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n",
            " <|im_end|>\n",
        ],
        [
            f"<|im_start|>system\n{QWEN_SYS}<|im_end|>\n<|im_start|>user\n{ASK}<|im_end|>\n<|im_start|>assistant\n",
            f"<|im_start|>system\n{QWEN_SYS}<|im_end|>\n<|im_start|>user\n{ASK}<|im_end|>\n<|im_start|>assistant\n"
            "ok<|im_end|><|endoftext|>",
            f"<|im_start|>system\n{QWEN_SYS}<|im_end|>\n<|im_start|>user\n{ASK}<|im_end|>\n<|im_start|>assistant\n"
            "ok<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n",
            f"<|im_start|>system\n{QWEN_SYS}<|im_end|>\n<|im_start|>user\n{ASK}<|im_end|>\n<|im_start|>assistant\n"
            "ok<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n <|im_end|><|endoftext|>",
        ],
    ),
}

# get_potential_prompt(" <image>hi ") -- the message is used as given -- on an empty builder and after one answer.
POTENTIAL = {
    PurePromptBuilder: ("In:  <image>hi \nOut:", f"In: {ASK}\nOut: ok</s>In:  <image>hi \nOut:"),
    LLaMa2ChatPromptBuilder: (
        f"[INST] <<SYS>\n{LLAMA2_SYS}\n<</SYS>>\n\n <image>hi  [/INST]",
        f"[INST] <<SYS>\n{LLAMA2_SYS}\n<</SYS>>\n\n{ASK} [/INST] ok</s>[INST]  <image>hi  [/INST]",
    ),
    VicunaV15ChatPromptBuilder: (
        f"{VICUNA_SYS} USER:  <image>hi  ASSISTANT:",
        f"{VICUNA_SYS} USER: {ASK} ASSISTANT: ok</s>USER:  <image>hi  ASSISTANT:",
    ),
    MistralInstructPromptBuilder: ("[INST]  <image>hi  [/INST]", f"[INST] {ASK} [/INST] ok</s>[INST]  <image>hi  [/INST]"),
    # Phi: the hand-written BOS lives in add_turn only, so an empty builder's potential prompt has none.
    PhiPromptBuilder: (
        "Input:  <image>hi \nOutput:",
        f"<|endoftext|>Input: {ASK}\nOutput: ok\n<|endoftext|>Input:  <image>hi \nOutput:",
    ),
    # Qwen: no system block before any turn, no rstrip, and no <|endoftext|> swap.
    QwenPromptBuilder: (
        "<|im_start|>user\n <image>hi <|im_end|>\n<|im_start|>assistant\n",
        f"<|im_start|>system\n{QWEN_SYS}<|im_end|>\n<|im_start|>user\n{ASK}<|im_end|>\n<|im_start|>assistant\n"
        "ok<|im_end|>\n<|im_start|>user\n <image>hi <|im_end|>\n<|im_start|>assistant\n",
    ),
}


@pytest.mark.parametrize("builder_cls", list(EXPECTED), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("family", ["openvla", "prismatic"])
def test_add_turn_and_get_prompt_are_upstream_literals(builder_cls, family):
    returns, prompts = EXPECTED[builder_cls]
    builder = builder_cls(family)
    assert builder.get_prompt() == ""
    for (role, message), returned, prompt in zip(CONVERSATION, returns, prompts):
        assert builder.add_turn(role, message) == returned
        assert builder.get_prompt() == prompt


@pytest.mark.parametrize("builder_cls", list(POTENTIAL), ids=lambda cls: cls.__name__)
def test_get_potential_prompt_is_upstream_literal_and_changes_nothing(builder_cls):
    empty, after_answer = POTENTIAL[builder_cls]
    builder = builder_cls("openvla")
    assert builder.get_potential_prompt(" <image>hi ") == empty
    assert builder.get_prompt() == "" and builder.turn_count == 0
    for role, message in CONVERSATION[:2]:
        builder.add_turn(role, message)
    before = builder.get_prompt()
    assert builder.get_potential_prompt(" <image>hi ") == after_answer
    assert builder.get_prompt() == before and builder.turn_count == 2


def test_openvla_action_prompt_with_pure_builder():
    builder = PurePromptBuilder("openvla")
    builder.add_turn("human", openvla_action_prompt("Pick up the cup"))
    assert builder.get_prompt() == "In: What action should the robot take to pick up the cup?\nOut:"


def test_custom_system_prompt_replaces_the_default():
    assert LLaMa2ChatPromptBuilder("openvla", system_prompt="  Be brief.  ").add_turn("human", "x") == (
        "[INST] <<SYS>\nBe brief.\n<</SYS>>\n\nx [/INST] "
    )
    assert VicunaV15ChatPromptBuilder("anything", system_prompt=" Be brief. ").add_turn("human", "x") == (
        "Be brief. USER: x ASSISTANT: "
    )
    qwen = QwenPromptBuilder("anything", system_prompt=" Be brief. ")
    qwen.add_turn("human", "x")
    assert qwen.get_prompt() == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("builder_cls", [LLaMa2ChatPromptBuilder, VicunaV15ChatPromptBuilder, QwenPromptBuilder])
def test_unknown_family_without_system_prompt_is_a_clear_error(builder_cls):
    # Upstream raises a bare KeyError in __init__; here the message says what to pass instead.
    with pytest.raises(ValueError, match="Pass system_prompt"):
        builder_cls("unknown-family")


def test_templates_without_system_prompt_accept_any_family():
    assert PurePromptBuilder("unknown-family").add_turn("human", "x") == "In: x\nOut: "
    assert MistralInstructPromptBuilder("unknown-family").add_turn("human", "x") == "[INST] x [/INST] "
    assert PhiPromptBuilder("unknown-family").add_turn("human", "x") == "<|endoftext|>Input: x\nOutput: "


@pytest.mark.parametrize("builder_cls", list(EXPECTED), ids=lambda cls: cls.__name__)
def test_role_out_of_order_is_a_clear_error_and_loses_nothing(builder_cls):
    builder = builder_cls("openvla")
    with pytest.raises(PromptTurnError, match="turn 0 must come from 'human', got 'gpt'"):
        builder.add_turn("gpt", "hello")
    builder.add_turn(*CONVERSATION[0])
    with pytest.raises(PromptTurnError, match="turn 1 must come from 'gpt'"):
        builder.add_turn("human", "again")
    assert builder.get_prompt() == EXPECTED[builder_cls][1][0]


message_text = st.lists(
    st.sampled_from(list("abc XYZ\n\t<>/|_-.?!") + ["<image>", "</s>", "<s>", "<|im_end|>", "\u4f60\u597d"]), max_size=12
).map("".join)


@pytest.mark.parametrize("builder_cls", list(EXPECTED), ids=lambda cls: cls.__name__)
@settings(max_examples=40, deadline=None)
@given(messages=st.lists(message_text, max_size=6))
def test_prompt_is_the_concatenation_of_what_add_turn_appended(builder_cls, messages):
    """Any conversation: get_prompt is the final step applied to the returned pieces (plus Qwen's system block)."""
    builder = builder_cls("openvla")
    returned = "".join(builder.add_turn("human" if i % 2 == 0 else "gpt", m) for i, m in enumerate(messages))
    if builder_cls is QwenPromptBuilder:
        returned = (f"<|im_start|>system\n{QWEN_SYS}<|im_end|>\n" if messages else "") + returned
        if messages and len(messages) % 2 == 0:
            returned = returned.removesuffix("\n") + "<|endoftext|>"
        assert builder.get_prompt() == returned
    elif builder_cls is PhiPromptBuilder:
        assert builder.get_prompt() == returned.rstrip()
    else:
        assert builder.get_prompt() == returned.removeprefix("<s>").rstrip()
