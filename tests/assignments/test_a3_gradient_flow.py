"""Grader for A3 · a gradient-flow failure, diagnosed, fixed and measured (notebooks/*/assignments/A3_gradient_flow).

    pytest tests/assignments/test_a3_gradient_flow.py --notebook path/to/A3_gradient_flow.py
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reentrant checkpointing warns when no input requires grad
        return notebook["missing_gradients"](model, compute_loss)


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
    assert got == ["unused.weight", "unused.bias"], (
        f"expected the trainable parameters the loss never touches, ['unused.weight', 'unused.bias'], got {got} "
        "(frozen parameters are not listed: they are not meant to get a gradient)"
    )


def test_missing_gradients_does_not_raise_when_the_loss_has_no_grad(notebook):
    model = nn.Linear(3, 3)
    x = torch.randn(2, 3)
    try:
        got = notebook["missing_gradients"](model, lambda: model(x).detach().sum())
    except NotImplementedError:  # a RuntimeError too; reported as "not implemented yet"
        raise
    except RuntimeError as exc:
        pytest.fail(f"A3: missing_gradients raised RuntimeError ({exc}); when the loss does not require grad, return "
                    "every trainable parameter's name instead", pytrace=False)
    assert got == ["weight", "bias"], f"no parameter can get a gradient from a detached loss; expected ['weight', 'bias'], got {got}"


def test_missing_gradients_clears_old_gradients(notebook):
    model = nn.ModuleDict({"used": nn.Linear(3, 3), "unused": nn.Linear(3, 3)})
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    got = notebook["missing_gradients"](model, lambda: model["used"](torch.randn(2, 3)).sum())
    assert got == ["unused.weight", "unused.bias"], (
        f"got {got}: a gradient left from an earlier step hid the problem; clear every .grad before computing the loss"
    )


@pytest.mark.parametrize("silent", [False, True], ids=["crashing", "silent"])
def test_missing_gradients_finds_the_adapters(notebook, silent):
    llm, ids = _broken(notebook, silent=silent)
    adapters = [name for name in _trainable(llm) if ".down." in name or ".up." in name]
    got = _missing(notebook, llm, lambda: llm(input_ids=ids, labels=ids).loss)
    assert got == adapters, f"expected every adapter ({len(adapters)} tensors), in named_parameters order; got {got}"


# --- Task 2: fix_gradient_flow ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone_id, silent", CASES, ids=[f"{i}-{'silent' if s else 'crashing'}" for i, s in CASES])
def test_fix_gradient_flow(notebook, backbone_id, silent):
    from vla_backbone import compat

    llm, ids = _broken(notebook, backbone_id, silent)
    trainable = _trainable(llm)
    notebook["fix_gradient_flow"](llm)
    assert compat.is_checkpointing(llm), f"{backbone_id}: checkpointing is off after the fix; it must stay on"
    assert llm.training, f"{backbone_id}: the model left training mode (checkpointing only runs in training mode)"
    assert _trainable(llm) == trainable, f"{backbone_id}: the fix changed which parameters are trainable"
    missing = _missing(notebook, llm, lambda: llm(input_ids=ids, labels=ids).loss)
    assert missing == [], f"{backbone_id}: after the fix these still get no gradient from input_ids: {missing}"
    embeds = llm.get_input_embeddings().weight[ids].detach()
    missing = _missing(notebook, llm, lambda: llm(inputs_embeds=embeds, labels=ids).loss)
    assert missing == [], (
        f"{backbone_id}: with inputs_embeds that bypass the embedding module, these get no gradient: {missing}. "
        "An input-grad hook on the embeddings cannot help there."
    )


def test_fix_gives_the_gradients_of_an_unchecked_model(notebook):
    from vla_backbone import compat

    llm, ids = _broken(notebook, silent=True)
    notebook["fix_gradient_flow"](llm)
    notebook["fix_gradient_flow"](llm)  # a second call must change nothing
    assert compat.is_checkpointing(llm), "checkpointing is off after calling the fix twice"
    fixed = _grads(llm, lambda: llm(input_ids=ids, labels=ids).loss)
    compat.disable_checkpointing(llm)
    reference = _grads(llm, lambda: llm(input_ids=ids, labels=ids).loss)
    assert fixed.keys() == reference.keys(), f"parameters with a gradient differ: {sorted(fixed.keys() ^ reference.keys())}"
    for name, grad in reference.items():
        torch.testing.assert_close(fixed[name], grad, msg=lambda m, name=name: f"{name}: gradient differs from the one without checkpointing\n{m}")


# --- Task 3: checkpointing_savings -----------------------------------------------------------------------------

def test_checkpointing_savings(notebook):
    from vla_backbone import compat
    from vla_backbone.measure import saved_activation_bytes

    llm, ids = _broken(notebook)
    compat.enable_checkpointing(llm, use_reentrant=False)

    def loss():
        return llm(input_ids=ids, labels=ids).loss

    got = notebook["checkpointing_savings"](llm, loss)
    assert isinstance(got, tuple) and len(got) == 2, f"return a tuple (bytes_without, bytes_with), got {got!r}"
    assert all(isinstance(value, int) for value in got), f"return two ints (bytes), got {got!r}"
    assert compat.is_checkpointing(llm), "checkpointing must be on again when checkpointing_savings returns"
    with_ = saved_activation_bytes(llm, loss)
    compat.disable_checkpointing(llm)
    without = saved_activation_bytes(llm, loss)
    assert got == (without, with_), (
        f"got {got}, but saved_activation_bytes measures {without:,} bytes with checkpointing off and {with_:,} with it "
        "on (non-reentrant); was checkpointing really off for the first number, and on for the second?"
    )
