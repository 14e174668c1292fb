"""Grader for A2 · a prompt builder from a written template (notebooks/*/assignments/A2_prompt_builder).

    pytest tests/assignments/test_a2_prompt_builder.py --notebook path/to/A2_prompt_builder.py
"""
import pytest

ASSIGNMENT = "A2_prompt_builder"
QUESTION = "What action should the robot take to pick up the cup?"
SYSTEM = "You control a robot arm."


def test_notebook_runs_top_to_bottom(notebook):
    notebook.assert_ran_to_the_end()


def _builder(notebook, system_prompt=None, family="openvla"):
    return notebook["TaskActionPromptBuilder"](family, system_prompt=system_prompt)


def _tokenizer(notebook, backbone_id="llama2-7b-pure"):
    from vla_backbone import get_llm_backbone_and_tokenizer

    return notebook.cached(f"tokenizer-{backbone_id}", lambda: get_llm_backbone_and_tokenizer(backbone_id)[1])


def _expect(got, expected, what):
    assert got == expected, f"{what} gave\n  {got!r}\nexpected\n  {expected!r}"


def test_is_a_turn_prompt_builder(notebook):
    from vla_backbone.prompting import TurnPromptBuilder

    cls = notebook["TaskActionPromptBuilder"]
    assert isinstance(cls, type) and issubclass(cls, TurnPromptBuilder), "TaskActionPromptBuilder must subclass TurnPromptBuilder"
    for name in ("add_turn", "get_prompt", "get_potential_prompt"):
        assert name not in vars(cls), f"do not override {name}: keep the base class's turn logic and override the wrapping methods"


def test_inference_prompt_without_system_prompt(notebook):
    _expect(_builder(notebook).get_potential_prompt(QUESTION), f"Task: {QUESTION}\nAction:", "get_potential_prompt(question)")


def test_inference_prompt_with_system_prompt(notebook):
    builder = _builder(notebook, system_prompt="  " + SYSTEM + "\n")
    _expect(builder.get_potential_prompt(QUESTION), f"{SYSTEM}\nTask: {QUESTION}\nAction:",
            "with a system prompt (stripped, on its own line), get_potential_prompt(question)")


def test_no_default_system_prompt(notebook):
    for family in ("openvla", "prismatic", "some-new-family"):
        _expect(_builder(notebook, family=family).get_potential_prompt("hi"), "Task: hi\nAction:",
                f"model_family={family!r} without system_prompt (the template has no default system prompt)")


def test_add_turn_returns_what_it_appends(notebook):
    builder = _builder(notebook, system_prompt=SYSTEM)
    _expect(builder.add_turn("human", QUESTION), f"{SYSTEM}\nTask: {QUESTION}\nAction: ", "the first add_turn('human', ...)")
    _expect(builder.add_turn("gpt", "move left"), "move left</s>\n", "add_turn('gpt', 'move left')")
    _expect(builder.add_turn("human", "and then?"), "Task: and then?\nAction: ",
            "the second add_turn('human', ...) (the system line comes only once)")
    _expect(builder.add_turn("gpt", "stop"), "stop</s>\n", "add_turn('gpt', 'stop')")


def test_full_conversation(notebook):
    builder = _builder(notebook, system_prompt=SYSTEM)
    for role, message in [("human", QUESTION), ("gpt", "move left"), ("human", "and then?"), ("gpt", "stop")]:
        builder.add_turn(role, message)
    expected = f"{SYSTEM}\nTask: {QUESTION}\nAction: move left</s>\nTask: and then?\nAction: stop</s>"
    _expect(builder.get_prompt(), expected, "get_prompt() after four turns")
    _expect(builder.get_potential_prompt("next?"), f"{expected}\nTask: next?\nAction:", "get_potential_prompt after four turns")
    _expect(builder.get_prompt(), expected, "get_prompt() again (get_potential_prompt must not change the builder)")


def test_base_class_rules_still_apply(notebook):
    from vla_backbone.errors import PromptTurnError

    builder = _builder(notebook)
    _expect(builder.add_turn("human", "<image>\n  pick up the cup  "), "Task: pick up the cup\nAction: ",
            "a message with <image> and surrounding spaces")
    _expect(builder.add_turn("gpt", ""), " </s>\n", "an empty answer (it becomes a single space)")
    with pytest.raises(PromptTurnError):
        builder.add_turn("gpt", "twice in a row")


def _reference_turns(builder, tokenizer, conversation):
    """Per-turn ids, tokenized the way the assignment describes (first turn with special tokens)."""
    return [tokenizer(builder.add_turn(role, message), add_special_tokens=index == 0).input_ids
            for index, (role, message) in enumerate(conversation)]


@pytest.mark.parametrize("turns", [2, 4])
def test_tokens_and_labels(notebook, turns):
    tokens_and_labels = notebook["tokens_and_labels"]
    tokenizer = _tokenizer(notebook)
    conversation = [("human", QUESTION), ("gpt", "move left"), ("human", "and then?"), ("gpt", "stop")][:turns]
    input_ids, labels = tokens_and_labels(_builder(notebook, SYSTEM), tokenizer, conversation)
    assert isinstance(input_ids, list) and isinstance(labels, list), "return (input_ids, labels) as two lists"
    assert len(input_ids) == len(labels), f"{len(input_ids)} ids but {len(labels)} labels: one label per token"
    assert all(isinstance(i, int) for i in input_ids + labels), "ids and labels must be plain ints"
    per_turn = _reference_turns(_builder(notebook, SYSTEM), tokenizer, conversation)
    expected_ids = [i for ids in per_turn for i in ids]
    assert input_ids == expected_ids, (
        "input_ids differ from the turn-by-turn tokenization (each add_turn text tokenized on its own, special "
        f"tokens for the first turn only):\n  got      {input_ids}\n  expected {expected_ids}"
    )
    expected_labels = [label for (role, _), ids in zip(conversation, per_turn, strict=True)
                       for label in ([-100] * len(ids) if role == "human" else ids)]
    assert labels == expected_labels, f"labels must be -100 on human turns and the ids on answers:\n  got      {labels}\n  expected {expected_labels}"


def test_tokens_and_labels_with_other_builders(notebook):
    """The function works for any builder: OpenVLA's own template, and phi-2's, whose BOS is in the text."""
    from vla_backbone.prompting import PhiPromptBuilder, PurePromptBuilder

    tokens_and_labels = notebook["tokens_and_labels"]
    conversation = [("human", QUESTION), ("gpt", "move left")]
    for builder_cls, backbone_id in ((PurePromptBuilder, "llama2-7b-pure"), (PhiPromptBuilder, "phi-2-3b")):
        tokenizer = _tokenizer(notebook, backbone_id)
        input_ids, labels = tokens_and_labels(builder_cls("openvla"), tokenizer, conversation)
        per_turn = _reference_turns(builder_cls("openvla"), tokenizer, conversation)
        assert input_ids == per_turn[0] + per_turn[1], f"{builder_cls.__name__}: input_ids differ from the turn-by-turn tokenization"
        assert labels == [-100] * len(per_turn[0]) + per_turn[1], f"{builder_cls.__name__}: labels must mask the question only"
        assert input_ids[0] == tokenizer.convert_tokens_to_ids(tokenizer.bos_token), f"{builder_cls.__name__}: the sequence must start with BOS"


def test_tokens_and_labels_uses_the_given_builder(notebook):
    tokens_and_labels = notebook["tokens_and_labels"]
    builder = _builder(notebook)
    tokens_and_labels(builder, _tokenizer(notebook), [("human", QUESTION), ("gpt", "move left")])
    assert builder.turn_count == 2, "tokens_and_labels must add every turn to the builder it is given"
