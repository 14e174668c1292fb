"""Grader for A3 · a gradient-flow failure, diagnosed, fixed and measured (notebooks/*/assignments/A3_gradient_flow).

    .venv/bin/python -m pytest tests/assignments/test_a3_gradient_flow.py --notebook path/to/A3_gradient_flow.ipynb
"""
import warnings

import pytest
import torch
from torch import nn

ASSIGNMENT = "A3_gradient_flow"
# One model per family, each variant of the failure twice: enough to catch a family-specific fix, in seconds.
CASES = [("llama2-7b-pure", False), ("opt-125m", True), ("qwen25-0_5b-pure", False), ("phi-2-3b", True)]


def test_notebook_runs_top_to_bottom(notebook):
    notebook.assert_ran_to_the_end()


def _broken(notebook, backbone_id="llama2-7b-pure", silent=False):
    llm, tokenizer = notebook["make_broken_model"](backbone_id, silent=silent)
    ids = tokenizer(["pick up the red cup", "open the drawer now"], return_tensors="pt", padding=True).input_ids
    return llm, ids


def _trainable(model):
    return [name for name, p in model.named_parameters() if p.requires_grad]


def _missing(notebook, model, compute_loss):
    """The student's diagnostic (Task 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reentrant checkpointing warns when no input requires grad
        return notebook["missing_gradients"](model, compute_loss)


def _reference_missing(model, compute_loss):
    """The grader's own diagnostic, so that Task 2's grade does not depend on the answer to Task 1."""
    for parameter in model.parameters():
        parameter.grad = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = compute_loss()
        if loss.requires_grad:
            loss.backward()
    return [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]


def _grads(model, compute_loss):
    for parameter in model.parameters():
        parameter.grad = None
    compute_loss().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


# --- Task 1: missing_gradients ---------------------------------------------------------------------------------

def test_missing_gradients_on_a_toy_model(notebook):
    torch.manual_seed(0)
    model = nn.ModuleDict({"used": nn.Linear(3, 3), "unused": nn.Linear(3, 3), "frozen": nn.Linear(3, 3)})
    model["frozen"].requires_grad_(False)
    x = torch.randn(2, 3)
    got = notebook["missing_gradients"](model, lambda: model["frozen"](model["used"](x)).sum())
    assert got == ["unused.weight", "unused.bias"], notebook.say(
        f"expected the trainable parameters the loss never touches, ['unused.weight', 'unused.bias'], got {got} "
        "(frozen parameters are not listed: they are not meant to get a gradient)",
        f"应返回损失从未用到的可训练参数 ['unused.weight', 'unused.bias']，实际为 {got}"
        "（被冻结的参数不列出：它们本来就不该得到梯度）")


def test_missing_gradients_does_not_raise_when_the_loss_has_no_grad(notebook):
    model = nn.Linear(3, 3)
    x = torch.randn(2, 3)
    try:
        got = notebook["missing_gradients"](model, lambda: model(x).detach().sum())
    except NotImplementedError:  # a RuntimeError too; reported as "not implemented yet"
        raise
    except RuntimeError as exc:
        pytest.fail(notebook.say(
            f"A3: missing_gradients raised RuntimeError ({exc}); when the loss does not require grad, return "
            "every trainable parameter's name instead",
            f"A3：missing_gradients 抛出了 RuntimeError（{exc}）；损失不需要梯度时，应返回所有可训练参数的名字"), pytrace=False)
    assert got == ["weight", "bias"], notebook.say(
        f"no parameter can get a gradient from a detached loss; expected ['weight', 'bias'], got {got}",
        f"detach 之后的损失不会给任何参数梯度；应为 ['weight', 'bias']，实际为 {got}")


def test_missing_gradients_clears_old_gradients(notebook):
    model = nn.ModuleDict({"used": nn.Linear(3, 3), "unused": nn.Linear(3, 3)})
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    got = notebook["missing_gradients"](model, lambda: model["used"](torch.randn(2, 3)).sum())
    assert got == ["unused.weight", "unused.bias"], notebook.say(
        f"got {got}: a gradient left from an earlier step hid the problem; clear every .grad before computing the loss",
        f"实际为 {got}：上一步残留的梯度掩盖了问题；计算损失之前先清空每个参数的 .grad")


@pytest.mark.parametrize("silent", [False, True], ids=["crashing", "silent"])
def test_missing_gradients_finds_the_adapters(notebook, silent):
    llm, ids = _broken(notebook, silent=silent)
    adapters = [name for name in _trainable(llm) if ".down." in name or ".up." in name]
    got = _missing(notebook, llm, lambda: llm(input_ids=ids, labels=ids).loss)
    assert got == adapters, notebook.say(
        f"expected every adapter ({len(adapters)} tensors), in named_parameters order; got {got}",
        f"应返回全部适配器（{len(adapters)} 个张量），顺序与 named_parameters 一致；实际为 {got}")


# --- Task 2: fix_gradient_flow ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone_id, silent", CASES, ids=[f"{i}-{'silent' if s else 'crashing'}" for i, s in CASES])
def test_fix_gradient_flow(notebook, backbone_id, silent):
    from vla_backbone import compat

    llm, ids = _broken(notebook, backbone_id, silent)
    trainable = _trainable(llm)
    notebook["fix_gradient_flow"](llm)
    say = notebook.say
    assert compat.is_checkpointing(llm), say(f"{backbone_id}: checkpointing is off after the fix; it must stay on",
                                             f"{backbone_id}：修复之后梯度检查点关掉了；它必须保持开启")
    assert llm.training, say(f"{backbone_id}: the model left training mode (checkpointing only runs in training mode)",
                             f"{backbone_id}：模型离开了训练模式（梯度检查点只在训练模式下生效）")
    assert _trainable(llm) == trainable, say(f"{backbone_id}: the fix changed which parameters are trainable",
                                             f"{backbone_id}：修复改变了哪些参数可训练")
    missing = _reference_missing(llm, lambda: llm(input_ids=ids, labels=ids).loss)
    assert missing == [], say(f"{backbone_id}: after the fix these still get no gradient from input_ids: {missing}",
                              f"{backbone_id}：修复之后，用 input_ids 时这些参数仍然得不到梯度：{missing}")
    embeds = llm.get_input_embeddings().weight[ids].detach()
    missing = _reference_missing(llm, lambda: llm(inputs_embeds=embeds, labels=ids).loss)
    assert missing == [], say(
        f"{backbone_id}: with inputs_embeds that bypass the embedding module, these get no gradient: {missing}. "
        "An input-grad hook on the embeddings cannot help there.",
        f"{backbone_id}：inputs_embeds 绕过嵌入模块时，这些参数得不到梯度：{missing}。嵌入层上的输入梯度钩子在这里帮不上忙。")


def test_fix_gives_the_gradients_of_an_unchecked_model(notebook):
    from vla_backbone import compat
    from vla_backbone.measure import saved_activation_bytes

    llm, ids = _broken(notebook, silent=True)
    notebook["fix_gradient_flow"](llm)
    notebook["fix_gradient_flow"](llm)  # a second call must change nothing
    say = notebook.say
    assert compat.is_checkpointing(llm), say("checkpointing is off after calling the fix twice",
                                             "调用两次修复之后，梯度检查点关掉了")
    fixed = _grads(llm, lambda: llm(input_ids=ids, labels=ids).loss)
    kept = saved_activation_bytes(llm, lambda: llm(input_ids=ids, labels=ids).loss)
    compat.disable_checkpointing(llm)
    reference = _grads(llm, lambda: llm(input_ids=ids, labels=ids).loss)
    kept_unchecked = saved_activation_bytes(llm, lambda: llm(input_ids=ids, labels=ids).loss)
    assert kept < kept_unchecked, say(
        f"checkpointing must really run after the fix: the model keeps {kept:,} bytes for backward, as many as "
        "without checkpointing (a flag that says it is on is not enough)",
        f"修复之后梯度检查点必须真正生效：模型为反向传播保存了 {kept:,} 字节，和不开梯度检查点时一样多（只把标志设成开启是不够的）")
    differ = sorted(fixed.keys() ^ reference.keys())
    assert fixed.keys() == reference.keys(), say(f"parameters with a gradient differ: {differ}", f"得到梯度的参数不一致：{differ}")
    for name, grad in reference.items():
        torch.testing.assert_close(fixed[name], grad, msg=lambda m, name=name: say(
            f"{name}: gradient differs from the one without checkpointing\n{m}", f"{name}：梯度与不开梯度检查点时不同\n{m}"))


# --- Task 3: checkpointing_savings -----------------------------------------------------------------------------

def test_checkpointing_savings(notebook):
    from vla_backbone import compat
    from vla_backbone.measure import saved_activation_bytes

    llm, ids = _broken(notebook)
    compat.enable_checkpointing(llm, use_reentrant=False)
    # An input of another length than the notebook's: numbers copied from the notebook's output do not fit it.
    ids = torch.randint(3, 1000, (2, 24), generator=torch.Generator().manual_seed(1))

    def loss():
        return llm(input_ids=ids, labels=ids).loss

    got = notebook["checkpointing_savings"](llm, loss)
    say = notebook.say
    assert isinstance(got, tuple) and len(got) == 2, say(f"return a tuple (bytes_without, bytes_with), got {got!r}",
                                                         f"请返回元组 (bytes_without, bytes_with)，实际为 {got!r}")
    assert all(isinstance(value, int) for value in got), say(f"return two ints (bytes), got {got!r}",
                                                             f"请返回两个整数（字节数），实际为 {got!r}")
    assert compat.is_checkpointing(llm), say("checkpointing must be on again when checkpointing_savings returns",
                                             "checkpointing_savings 返回时，梯度检查点必须重新开启")
    with_ = saved_activation_bytes(llm, loss)
    compat.disable_checkpointing(llm)
    without = saved_activation_bytes(llm, loss)
    assert got == (without, with_), say(
        f"got {got}, but saved_activation_bytes measures {without:,} bytes with checkpointing off and {with_:,} with it "
        "on (non-reentrant); was checkpointing really off for the first number, and on for the second?",
        f"实际为 {got}，但 saved_activation_bytes 测得关闭梯度检查点时 {without:,} 字节、开启（非可重入）时 {with_:,} 字节；"
        "测第一个数时梯度检查点真的关了吗？测第二个数时真的开了吗？")
