"""Prompt builders produce byte-for-byte the strings of REFERENCE §4, for every call and any conversation."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_backbone.errors import PromptTurnError
from vla_backbone.prompting import (
    SYS_PROMPTS,
    LLaMa2ChatPromptBuilder,
    MistralInstructPromptBuilder,
    PhiPromptBuilder,
    PurePromptBuilder,
    QwenPromptBuilder,
    VicunaV15ChatPromptBuilder,
    openvla_action_prompt,
)

SYS = SYS_PROMPTS["openvla"]


def clean(message):
    return message.replace("<image>", "").strip()


def expected_turns(builder_cls, messages, system=SYS):
    """An independent spelling-out of REFERENCE §4: the text each add_turn appends."""
    out = []
    for turn, raw in enumerate(messages):
        m = clean(raw)
        if turn % 2 == 1:
            m = m or " "
            out.append(
                {
                    PhiPromptBuilder: f"{m}\n<|endoftext|>",
                    QwenPromptBuilder: f"{m}<|im_end|>\n",
                }.get(builder_cls, f"{m}</s>")
            )
            continue
        first = turn == 0
        if builder_cls is PurePromptBuilder:
            out.append(f"In: {m}\nOut: ")
        elif builder_cls is LLaMa2ChatPromptBuilder:
            body = f"<<SYS>\n{system.strip()}\n<</SYS>>\n\n{m}" if first else m
            out.append(f"[INST] {body} [/INST] ")
        elif builder_cls is VicunaV15ChatPromptBuilder:
            out.append((system.strip() + " " if first else "") + f"USER: {m} ASSISTANT: ")
        elif builder_cls is MistralInstructPromptBuilder:
            out.append(f"[INST] {m} [/INST] ")
        elif builder_cls is PhiPromptBuilder:
            out.append(("<|endoftext|>" if first else "") + f"Input: {m}\nOutput: ")
        elif builder_cls is QwenPromptBuilder:
            prefix = f"<|im_start|>system\n{system}<|im_end|>\n" if first else ""
            out.append(prefix + f"<|im_start|>user\n{m}<|im_end|>\n<|im_start|>assistant\n")
    return out


def expected_prompt(builder_cls, text, turns_done):
    if builder_cls is PhiPromptBuilder:
        return text.rstrip()
    if builder_cls is QwenPromptBuilder:
        if turns_done and turns_done % 2 == 0:
            return text.removesuffix("\n") + "<|endoftext|>"
        return text
    return text.removeprefix("<s>").rstrip()


BUILDERS = [
    PurePromptBuilder,
    LLaMa2ChatPromptBuilder,
    VicunaV15ChatPromptBuilder,
    MistralInstructPromptBuilder,
    PhiPromptBuilder,
    QwenPromptBuilder,
]

message_text = st.lists(
    st.sampled_from(list("abc XYZ\n\t<>/|_-.?!") + ["<image>", "</s>", "<s>", "<|im_end|>", "\u4f60\u597d"]), max_size=12
).map("".join)


@pytest.mark.parametrize("builder_cls", BUILDERS)
@settings(max_examples=60, deadline=None)
@given(messages=st.lists(message_text, min_size=0, max_size=6), next_message=message_text)
def test_every_call_matches_reference(builder_cls, messages, next_message):
    builder = builder_cls("openvla")
    expected = expected_turns(builder_cls, messages + [next_message])
    text = ""
    for turn, message in enumerate(messages):
        role = "human" if turn % 2 == 0 else "gpt"
        assert builder.add_turn(role, message) == expected[turn]
        text += expected[turn]
        assert builder.get_prompt() == expected_prompt(builder_cls, text, turn + 1)
    if len(messages) % 2 == 0:
        potential = text + expected[len(messages)]
        assert builder.get_potential_prompt(next_message) == expected_prompt(builder_cls, potential, 0)
        # Asking for a potential prompt leaves the builder as it was.
        assert builder.get_prompt() == expected_prompt(builder_cls, text, len(messages))


@pytest.mark.parametrize("builder_cls", BUILDERS)
def test_role_out_of_order_is_a_clear_error(builder_cls):
    builder = builder_cls("openvla")
    with pytest.raises(PromptTurnError, match="turn 0 must come from 'human', got 'gpt'"):
        builder.add_turn("gpt", "hello")
    builder.add_turn("human", "hi")
    with pytest.raises(PromptTurnError, match="turn 1 must come from 'gpt'"):
        builder.add_turn("human", "again")
    assert builder.get_prompt() == expected_prompt(builder_cls, expected_turns(builder_cls, ["hi"])[0], 1)


def test_openvla_action_prompt_with_pure_builder():
    builder = PurePromptBuilder("openvla")
    builder.add_turn("human", openvla_action_prompt("Pick up the cup"))
    assert builder.get_prompt() == "In: What action should the robot take to pick up the cup?\nOut:"


def test_llama2_chat_keeps_upstream_single_bracket_sys_tag():
    builder = LLaMa2ChatPromptBuilder("prismatic")
    assert builder.add_turn("human", "<image>\nWhat is this?").startswith(f"[INST] <<SYS>\n{SYS}\n<</SYS>>\n\nWhat is this?")


def test_custom_system_prompt_and_unknown_family():
    assert VicunaV15ChatPromptBuilder("anything", system_prompt=" Be brief. ").add_turn("human", "x") == (
        "Be brief. USER: x ASSISTANT: "
    )
    with pytest.raises(ValueError, match="Pass system_prompt"):
        QwenPromptBuilder("unknown-family").add_turn("human", "x")
    # Templates without a system prompt accept any family.
    assert PurePromptBuilder("unknown-family").add_turn("human", "x") == "In: x\nOut: "
