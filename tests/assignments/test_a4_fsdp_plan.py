"""Grader for A4 · predict an FSDP wrap plan and each rank's share (notebooks/*/assignments/A4_fsdp_plan).

    .venv/bin/python -m pytest tests/assignments/test_a4_fsdp_plan.py --notebook path/to/A4_fsdp_plan.ipynb

Each rank's share is checked against FSDP itself: FSDP1 (FULL_SHARD, use_orig_params=True) wraps a fresh model
once per rank on a fake process group, in this process, so the numbers are FSDP's own sharding arithmetic. The
same check with two real processes (`torch.distributed.run`, 10-20 s on a CPU) runs when VLA_GRADE_TORCHRUN=1.
"""
import contextlib
import functools
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from vla_backbone import fsdp

ASSIGNMENT = "A4_fsdp_plan"
FAMILIES = ["llama2-7b-pure", "mistral-v0.1-7b-pure", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]


def test_notebook_runs_top_to_bottom(notebook):
    notebook.assert_ran_to_the_end()


@contextlib.contextmanager
def _no_shortcuts(notebook):
    """Make every way of asking FSDP unusable while the student's prediction runs: the package's helpers, the
    policies, FSDP and process groups, and the notebook's own `fsdp_shares`, under any name the notebook gave them
    (an alias is caught too: blocked by identity, not by name)."""
    import torch.distributed as dist
    import torch.distributed.fsdp as torch_fsdp
    import torch.distributed.fsdp.wrap as wrap

    places = [(fsdp, "wrap_plan"), (fsdp, "unit_parameter_counts"), (wrap, "transformer_auto_wrap_policy"),
              (wrap, "_or_policy"), (wrap, "_module_wrap_policy"), (dist, "init_process_group"),
              (torch_fsdp, "FullyShardedDataParallel"), (torch_fsdp, "fully_shard")]
    originals = {id(getattr(module, name)): name for module, name in places if hasattr(module, name)}
    if callable(notebook.namespace.get("fsdp_shares")):
        originals[id(notebook.namespace["fsdp_shares"])] = "fsdp_shares"

    def blocked(name):
        def refuse(*args, **kwargs):
            raise AssertionError(notebook.say(f"A4: the prediction called {name}; derive it from the module tree instead",
                                              f"A4：预测调用了 {name}；请改为从模块树推出结果"))
        return refuse

    patched = [(module, name, getattr(module, name)) for module, name in places if hasattr(module, name)]
    patched += [(notebook.namespace, key, value) for key, value in list(notebook.namespace.items())
                if id(value) in originals]
    for owner, name, old in patched:
        if isinstance(owner, dict):
            owner[name] = blocked(originals[id(old)])
        else:
            setattr(owner, name, blocked(originals[id(old)]))
    try:
        yield
    finally:
        for owner, name, old in patched:
            if isinstance(owner, dict):
                owner[name] = old
            else:
                setattr(owner, name, old)


def _policy(classes):
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    return functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=set(classes))


def _vla_classes(notebook, model):
    return {notebook["PatchBlock"], model.llm_backbone.transformer_layer_cls, notebook["Projector"]}


def _predict_plan(notebook, model, classes):
    with _no_shortcuts(notebook):
        return notebook["predict_wrap_plan"](model, classes)


def _predict_share(notebook, model, classes, world_size):
    with _no_shortcuts(notebook):
        return notebook["predict_rank_share"](model, classes, world_size)


def _fsdp_shares(build, classes, world_size):
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import ShardingStrategy
    from torch.testing._internal.distributed.fake_pg import FakeStore

    shares = []
    for rank in range(world_size):
        dist.init_process_group("fake", rank=rank, world_size=world_size, store=FakeStore())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = FSDP(build(), auto_wrap_policy=_policy(classes), sharding_strategy=ShardingStrategy.FULL_SHARD,
                             device_id=torch.device("cpu"), use_orig_params=True)
            shares.append(sum(p.numel() for p in model.parameters()))
        finally:
            dist.destroy_process_group()
    return shares


# --- Task 1: predict_wrap_plan ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone_id", FAMILIES)
def test_wrap_plan_of_a_vla(notebook, backbone_id):
    vla = notebook.cached(f"vla-{backbone_id}", lambda: notebook["TinyVLA"](backbone_id))
    classes = _vla_classes(notebook, vla)
    expected = fsdp.wrap_plan(vla, _policy(classes))
    got = _predict_plan(notebook, vla, classes)
    assert got == expected, notebook.say(f"TinyVLA('{backbone_id}'): predicted\n  {got}\nFSDP's traversal gives\n  {expected}",
                                         f"TinyVLA('{backbone_id}')：预测为\n  {got}\nFSDP 的遍历给出的是\n  {expected}")


def test_wrap_plan_of_a_backbone_alone(notebook):
    backbone = notebook.cached("vla-opt-125m", lambda: notebook["TinyVLA"]("opt-125m")).llm_backbone
    expected = fsdp.wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
    got = _predict_plan(notebook, backbone, {backbone.transformer_layer_cls})
    assert got == expected, notebook.say(f"opt-125m backbone: predicted {got}, expected {expected}",
                                         f"opt-125m 骨干网络：预测为 {got}，应为 {expected}")


def test_wrap_plan_with_nested_units(notebook):
    vla = notebook.cached("vla-llama2-7b-pure", lambda: notebook["TinyVLA"]("llama2-7b-pure"))
    classes = {notebook["PatchBlock"], nn.Linear}
    expected = fsdp.wrap_plan(vla, _policy(classes))
    got = _predict_plan(notebook, vla, classes)
    assert got == expected, notebook.say(
        "with classes {PatchBlock, nn.Linear}, the Linear layers inside each PatchBlock are units too "
        f"(in module order):\n  predicted {got}\n  expected  {expected}",
        "classes 为 {PatchBlock, nn.Linear} 时，每个 PatchBlock 里的 Linear 层也各自是一个单元（按模块顺序）："
        f"\n  预测 {got}\n  应为 {expected}")


def test_wrap_plan_edge_cases(notebook):
    block = notebook["PatchBlock"]()
    got = _predict_plan(notebook, block, {notebook["PatchBlock"]})
    assert got == [""], notebook.say(
        f"when the root itself is of a wrapped class, it is only the root unit: expected [''], got {got}",
        f"根模块本身属于被包装的类时，它只算根单元：应为 ['']，实际为 {got}")
    got = _predict_plan(notebook, block, set())
    assert got == [""], notebook.say(f"with no classes, only the root is a unit: expected [''], got {got}",
                                     f"classes 为空时，只有根模块是单元：应为 ['']，实际为 {got}")


# --- Task 2: predict_rank_share --------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone_id, world_size", [("llama2-7b-pure", 3), ("qwen25-0_5b-pure", 2), ("phi-2-3b", 4)])
def test_rank_share_matches_fsdp(notebook, backbone_id, world_size):
    TinyVLA = notebook["TinyVLA"]
    vla = notebook.cached(f"vla-{backbone_id}", lambda: TinyVLA(backbone_id))
    classes = _vla_classes(notebook, vla)
    got = _predict_share(notebook, vla, classes, world_size)
    expected = _fsdp_shares(lambda: TinyVLA(backbone_id), classes, world_size)
    qwen = "qwen" in backbone_id
    assert got == expected, notebook.say(
        f"TinyVLA('{backbone_id}') on {world_size} ranks: predicted {got}, FSDP holds {expected}"
        + (" (Qwen ties its LM head to its embeddings: count a shared parameter once)" if qwen else ""),
        f"TinyVLA('{backbone_id}') 在 {world_size} 个 rank 上：预测为 {got}，FSDP 实际持有 {expected}"
        + ("（Qwen 的输出头和嵌入共享权重：共享的参数只算一次）" if qwen else ""))


def test_rank_share_with_nested_units(notebook):
    """A unit inside another owns its own parameters; the outer unit owns only what no nested unit does."""
    vla = notebook.cached("vla-llama2-7b-pure", lambda: notebook["TinyVLA"]("llama2-7b-pure"))
    classes = {notebook["PatchBlock"], nn.Linear}
    got = _predict_share(notebook, vla, classes, 5)
    expected = _fsdp_shares(lambda: notebook["TinyVLA"]("llama2-7b-pure"), classes, 5)
    assert got == expected, notebook.say(
        f"with classes {{PatchBlock, nn.Linear}} on 5 ranks: predicted {got}, FSDP holds {expected}; each parameter "
        "belongs to the innermost unit that contains it",
        f"classes 为 {{PatchBlock, nn.Linear}}、5 个 rank 时：预测为 {got}，FSDP 实际持有 {expected}；每个参数属于包含它的最内层单元")


def test_rank_share_of_a_backbone_alone(notebook):
    vla = notebook.cached("vla-opt-125m", lambda: notebook["TinyVLA"]("opt-125m"))
    backbone = vla.llm_backbone
    classes = {backbone.transformer_layer_cls}
    got = _predict_share(notebook, backbone, classes, 3)
    expected = _fsdp_shares(lambda: notebook["TinyVLA"]("opt-125m").llm_backbone, classes, 3)
    assert got == expected, notebook.say(f"opt-125m backbone on 3 ranks: predicted {got}, FSDP holds {expected}",
                                         f"opt-125m 骨干网络在 3 个 rank 上：预测为 {got}，FSDP 实际持有 {expected}")


def test_rank_share_arithmetic(notebook):
    vla = notebook.cached("vla-llama2-7b-pure", lambda: notebook["TinyVLA"]("llama2-7b-pure"))
    classes = _vla_classes(notebook, vla)
    total = sum(p.numel() for p in vla.parameters())
    for world_size in (1, 5, 7, 64):
        got = _predict_share(notebook, vla, classes, world_size)
        say = notebook.say
        assert isinstance(got, list) and len(got) == world_size, say(f"return a list of {world_size} ints, got {got!r}",
                                                                     f"请返回含 {world_size} 个整数的列表，实际为 {got!r}")
        assert sum(got) == total, say(f"{world_size} ranks: the shares add up to {sum(got):,}, not to the {total:,} parameters",
                                      f"{world_size} 个 rank：份额加起来是 {sum(got):,}，而不是全部 {total:,} 个参数")
        assert got == sorted(got, reverse=True), say(
            f"{world_size} ranks: a later rank never holds more than an earlier one: {got}",
            f"{world_size} 个 rank：靠后的 rank 持有的参数不会比靠前的多：{got}")


@pytest.mark.skipif(os.environ.get("VLA_GRADE_TORCHRUN") != "1", reason="set VLA_GRADE_TORCHRUN=1 to also run two real processes")
def test_rank_share_matches_a_real_two_process_run(notebook):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "vla_backbone.fsdp",
               "--backbone", "llama2-7b-pure", "--steps", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, notebook.say("the torchrun demo failed", "torchrun 演示运行失败") + \
        f":\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    reported = [int(n.replace(",", "")) for n in re.findall(r"rank \d+ holds ([\d,]+) of", result.stdout)]
    backbone = notebook.cached("vla-llama2-7b-pure", lambda: notebook["TinyVLA"]("llama2-7b-pure")).llm_backbone
    got = _predict_share(notebook, backbone, {backbone.transformer_layer_cls}, 2)
    assert got == reported, notebook.say(f"predicted {got}, the two processes hold {reported}",
                                         f"预测为 {got}，两个进程实际持有 {reported}")
