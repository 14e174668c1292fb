"""The wrap-plan preview agrees with real FSDP, and the torchrun demo shards and trains on 2 CPU processes."""
import functools
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp.wrap import _or_policy, _module_wrap_policy, size_based_auto_wrap_policy

import vla_backbone
from vla_backbone.fsdp import unit_parameter_counts, wrap_plan


@pytest.fixture(scope="module")
def single_process_group(tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "file"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def real_fsdp_units(module, policy):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    wrapped = FSDP(module, auto_wrap_policy=policy, device_id=torch.device("cpu"), use_orig_params=True)
    return [name.replace("_fsdp_wrapped_module.", "") for name, m in wrapped.named_modules() if isinstance(m, FSDP)]


class Projector(nn.Sequential):
    pass


class ToyVLM(nn.Module):
    def __init__(self, llm_backbone):
        super().__init__()
        self.projector = Projector(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 64))
        self.llm_backbone = llm_backbone


POLICIES = {
    "decoder_layers": lambda backbone: backbone.get_fsdp_wrapping_policy(),
    "or_with_projector": lambda backbone: functools.partial(
        _or_policy,
        policies=[backbone.get_fsdp_wrapping_policy(), functools.partial(_module_wrap_policy, module_classes={Projector})],
    ),
    "size_based": lambda backbone: functools.partial(size_based_auto_wrap_policy, min_num_params=30_000),
}


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("backbone_id", ["llama2-7b-pure", "opt-125m"])
def test_wrap_plan_matches_real_fsdp(single_process_group, backbone_id, policy_name):
    def fresh():
        backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer(backbone_id)
        return ToyVLM(backbone)

    model = fresh()
    policy = POLICIES[policy_name](model.llm_backbone)
    plan = wrap_plan(model, policy)
    assert plan == real_fsdp_units(fresh(), policy)
    counts = unit_parameter_counts(model, policy)
    assert list(counts) == plan and sum(counts.values()) == sum(p.numel() for p in model.parameters())
    if policy_name == "or_with_projector":
        assert "projector" in plan


# The FSDP2 case starts from an empty replica cache: every rank must find a complete replica (built before the
# process group exists), not one whose model files only rank 0 wrote.
@pytest.mark.parametrize("fsdp_version, backbone_id, cold_cache", [(1, "llama2-7b-pure", False), (2, "qwen25-0_5b-pure", True)])
def test_torchrun_demo_on_two_cpu_processes(fsdp_version, backbone_id, cold_cache, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if cold_cache:
        env["VLA_BACKBONE_HOME"] = str(tmp_path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "vla_backbone.fsdp", "--backbone", backbone_id, "--fsdp", str(fsdp_version), "--steps", "3"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"backend=gloo world_size=2 device=cpu fsdp={fsdp_version}" in out
    shares = [int(x.replace(",", "")) for x in re.findall(r"rank \d holds ([\d,]+) of", out)]
    total = int(re.search(r"of ([\d,]+) parameters", out).group(1).replace(",", ""))
    assert len(shares) == 2 and sum(shares) == total and abs(shares[0] - shares[1]) <= total * 0.02
    losses = [float(x) for x in re.findall(r"loss ([\d.]+)", out)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    if cold_cache:
        from vla_backbone import tiny

        replica = next((tmp_path / "tiny").glob("*/qwen25"))
        assert tiny.is_valid(replica)
