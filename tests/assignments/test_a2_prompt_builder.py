"""Grader for A2 · a prompt builder from a written template (notebooks/*/assignments/A2_prompt_builder).

    .venv/bin/python -m pytest tests/assignments/test_a2_prompt_builder.py --notebook path/to/A2_prompt_builder.ipynb
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


def _expect(notebook, got, expected, what_en, what_zh):
    assert got == expected, notebook.say(f"{what_en} gave\n  {got!r}\nexpected\n  {expected!r}",
                                         f"{what_zh} 返回了\n  {got!r}\n应为\n  {expected!r}")


def test_is_a_turn_prompt_builder(notebook):
    from vla_backbone.prompting import TurnPromptBuilder

    cls = notebook["TaskActionPromptBuilder"]
    assert isinstance(cls, type) and issubclass(cls, TurnPromptBuilder), notebook.say(
        "TaskActionPromptBuilder must subclass TurnPromptBuilder", "TaskActionPromptBuilder 必须是 TurnPromptBuilder 的子类")
    for name in ("add_turn", "get_prompt", "get_potential_prompt"):
        assert name not in vars(cls), notebook.say(
            f"do not override {name}: keep the base class's turn logic and override the wrapping methods",
            f"不要重写 {name}：保留基类的轮次逻辑，只重写包装消息的方法")


def test_inference_prompt_without_system_prompt(notebook):
    _expect(notebook, _builder(notebook).get_potential_prompt(QUESTION), f"Task: {QUESTION}\nAction:",
            "get_potential_prompt(question)", "get_potential_prompt(question)")


def test_inference_prompt_with_system_prompt(notebook):
    builder = _builder(notebook, system_prompt="  " + SYSTEM + "\n")
    _expect(notebook, builder.get_potential_prompt(QUESTION), f"{SYSTEM}\nTask: {QUESTION}\nAction:",
            "with a system prompt (stripped, on its own line), get_potential_prompt(question)",
            "有系统提示词时（去掉首尾空白，单独占一行），get_potential_prompt(question)")


def test_no_default_system_prompt(notebook):
    for family in ("openvla", "prismatic", "some-new-family"):
        _expect(notebook, _builder(notebook, family=family).get_potential_prompt("hi"), "Task: hi\nAction:",
                f"model_family={family!r} without system_prompt (the template has no default system prompt)",
                f"model_family={family!r} 且没有 system_prompt 时（这个模板没有默认的系统提示词）")


def test_add_turn_returns_what_it_appends(notebook):
    builder = _builder(notebook, system_prompt=SYSTEM)
    _expect(notebook, builder.add_turn("human", QUESTION), f"{SYSTEM}\nTask: {QUESTION}\nAction: ",
            "the first add_turn('human', ...)", "第一次 add_turn('human', ...)")
    _expect(notebook, builder.add_turn("gpt", "move left"), "move left</s>\n",
            "add_turn('gpt', 'move left')", "add_turn('gpt', 'move left')")
    _expect(notebook, builder.add_turn("human", "and then?"), "Task: and then?\nAction: ",
            "the second add_turn('human', ...) (the system line comes only once)",
            "第二次 add_turn('human', ...)（系统提示词那一行只出现一次）")
    _expect(notebook, builder.add_turn("gpt", "stop"), "stop</s>\n", "add_turn('gpt', 'stop')", "add_turn('gpt', 'stop')")


def test_full_conversation(notebook):
    builder = _builder(notebook, system_prompt=SYSTEM)
    for role, message in [("human", QUESTION), ("gpt", "move left"), ("human", "and then?"), ("gpt", "stop")]:
        builder.add_turn(role, message)
    expected = f"{SYSTEM}\nTask: {QUESTION}\nAction: move left</s>\nTask: and then?\nAction: stop</s>"
    _expect(notebook, builder.get_prompt(), expected, "get_prompt() after four turns", "四个轮次之后的 get_prompt()")
    _expect(notebook, builder.get_potential_prompt("next?"), f"{expected}\nTask: next?\nAction:",
            "get_potential_prompt after four turns", "四个轮次之后的 get_potential_prompt")
    _expect(notebook, builder.get_prompt(), expected, "get_prompt() again (get_potential_prompt must not change the builder)",
            "再次调用的 get_prompt()（get_potential_prompt 不能改变构造器）")


def test_base_class_rules_still_apply(notebook):
    from vla_backbone.errors import PromptTurnError

    builder = _builder(notebook)
    _expect(notebook, builder.add_turn("human", "<image>\n  pick up the cup  "), "Task: pick up the cup\nAction: ",
            "a message with <image> and surrounding spaces", "带 <image> 和首尾空格的消息")
    _expect(notebook, builder.add_turn("gpt", ""), " </s>\n", "an empty answer (it becomes a single space)",
            "空回答（它会变成一个空格）")
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
    say = notebook.say
    assert isinstance(input_ids, list) and isinstance(labels, list), say("return (input_ids, labels) as two lists",
                                                                         "请以两个列表的形式返回 (input_ids, labels)")
    assert len(input_ids) == len(labels), say(f"{len(input_ids)} ids but {len(labels)} labels: one label per token",
                                              f"有 {len(input_ids)} 个 id，却有 {len(labels)} 个标签：每个 token 一个标签")
    assert all(isinstance(i, int) for i in input_ids + labels), say("ids and labels must be plain ints",
                                                                    "id 和标签都必须是普通的 int")
    per_turn = _reference_turns(_builder(notebook, SYSTEM), tokenizer, conversation)
    expected_ids = [i for ids in per_turn for i in ids]
    assert input_ids == expected_ids, say(
        "input_ids differ from the turn-by-turn tokenization (each add_turn text tokenized on its own, special "
        f"tokens for the first turn only):\n  got      {input_ids}\n  expected {expected_ids}",
        "input_ids 与逐轮分词的结果不同（每次 add_turn 返回的文本单独分词，只有第一个轮次带特殊 token）："
        f"\n  实际 {input_ids}\n  应为 {expected_ids}")
    expected_labels = [label for (role, _), ids in zip(conversation, per_turn, strict=True)
                       for label in ([-100] * len(ids) if role == "human" else ids)]
    assert labels == expected_labels, say(
        f"labels must be -100 on human turns and the ids on answers:\n  got      {labels}\n  expected {expected_labels}",
        f"human 轮次的标签必须是 -100，回答的标签就是它的 id：\n  实际 {labels}\n  应为 {expected_labels}")


def test_tokens_and_labels_with_other_builders(notebook):
    """The function works for any builder: OpenVLA's own template, and phi-2's, whose BOS is in the text."""
    from vla_backbone.prompting import PhiPromptBuilder, PurePromptBuilder

    tokens_and_labels = notebook["tokens_and_labels"]
    conversation = [("human", QUESTION), ("gpt", "move left")]
    for builder_cls, backbone_id in ((PurePromptBuilder, "llama2-7b-pure"), (PhiPromptBuilder, "phi-2-3b")):
        tokenizer = _tokenizer(notebook, backbone_id)
        input_ids, labels = tokens_and_labels(builder_cls("openvla"), tokenizer, conversation)
        per_turn = _reference_turns(builder_cls("openvla"), tokenizer, conversation)
        name, say = builder_cls.__name__, notebook.say
        assert input_ids == per_turn[0] + per_turn[1], say(f"{name}: input_ids differ from the turn-by-turn tokenization",
                                                           f"{name}：input_ids 与逐轮分词的结果不同")
        assert labels == [-100] * len(per_turn[0]) + per_turn[1], say(f"{name}: labels must mask the question only",
                                                                      f"{name}：标签只应屏蔽问题部分")
        assert input_ids[0] == tokenizer.convert_tokens_to_ids(tokenizer.bos_token), say(
            f"{name}: the sequence must start with BOS", f"{name}：序列必须以 BOS 开头")


def test_tokens_and_labels_uses_the_given_builder(notebook):
    tokens_and_labels = notebook["tokens_and_labels"]
    builder = _builder(notebook)
    tokens_and_labels(builder, _tokenizer(notebook), [("human", QUESTION), ("gpt", "move left")])
    assert builder.turn_count == 2, notebook.say("tokens_and_labels must add every turn to the builder it is given",
                                                 "tokens_and_labels 必须把每个轮次都加进传给它的构造器")
