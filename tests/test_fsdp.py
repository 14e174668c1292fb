"""The wrap-plan preview agrees with real FSDP; the demo's decisions (device per rank, precision, sharding) hold for
fake GPU counts and capabilities; FSDP2 shards before anything is moved; and the torchrun demo shards and trains on
CPU processes with the same report on every path."""
import functools
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp.wrap import _or_policy, _module_wrap_policy, size_based_auto_wrap_policy

import vla_backbone
from vla_backbone import fsdp
from vla_backbone.fsdp import (
    FSDPLaunchError, Precision, ProcessCountError, RankStats, choose_precision, device_for_rank,
    fsdp1_sharding_strategy, format_rank_line, unit_parameter_counts, wrap_plan,
)


@pytest.fixture(scope="module")
def single_process_group(tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "file"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def real_fsdp_units(module, policy):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="FSDP is switching to use `NO_SHARD`")
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


# --- decisions, with fake GPU counts and capabilities ---------------------------------------------------------------

def test_each_rank_gets_its_own_gpu_or_the_cpu():
    assert device_for_rank(local_rank=1, local_world_size=2, gpu_count=0) == torch.device("cpu")
    assert device_for_rank(local_rank=0, local_world_size=1, gpu_count=1) == torch.device("cuda", 0)
    assert device_for_rank(local_rank=3, local_world_size=4, gpu_count=8) == torch.device("cuda", 3)


def test_more_processes_than_gpus_says_what_to_run():
    with pytest.raises(ProcessCountError) as caught:
        device_for_rank(local_rank=1, local_world_size=2, gpu_count=1)
    message = str(caught.value)
    assert "2 processes" in message and "1 CUDA GPU(s)" in message
    assert "--nproc_per_node 1" in message and "CUDA_VISIBLE_DEVICES=" in message


def test_the_demo_stops_before_any_process_group_when_processes_outnumber_gpus(monkeypatch, capsys):
    # A one-GPU machine (Colab) asked for two processes: the second rank would otherwise die in set_device(cuda:1).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    process_groups = []
    monkeypatch.setattr(dist, "init_process_group", lambda *args, **kwargs: process_groups.append(kwargs))
    with pytest.raises(SystemExit) as exit_info:
        fsdp.main([])
    assert exit_info.value.code == 2
    assert "needs one GPU per process" in capsys.readouterr().err
    assert process_groups == []


@pytest.mark.parametrize("device_type, bf16, expected", [
    ("cuda", True, "bf16"),    # A100, H100, L4, RTX 30xx and newer
    ("cuda", False, "fp16"),   # T4 (Colab's free GPU), V100
    ("cpu", False, "fp32"),
])
def test_precision_follows_the_hardware(device_type, bf16, expected):
    chosen = choose_precision(device_type, bf16)
    assert chosen.name == expected and chosen.reason
    assert chosen.mixed == (expected != "fp32") and chosen.loss_scaling == (expected == "fp16")
    if expected == "fp16":
        assert "no native bf16" in chosen.reason


def test_explicit_precision_is_honoured_unless_the_gpu_lacks_it():
    assert choose_precision("cuda", True, "fp32").name == "fp32"
    assert choose_precision("cpu", False, "bf16").compute_dtype == torch.bfloat16
    with pytest.raises(FSDPLaunchError, match="--precision fp16"):
        choose_precision("cuda", False, "bf16")
    with pytest.raises(ValueError, match="choose one of"):
        choose_precision("cuda", True, "fp8")


def test_bf16_check_ignores_emulation(monkeypatch):
    # torch's default answer counts emulated bf16, which is True on a T4; the demo must not train in bf16 there.
    import contextlib

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    assert fsdp.gpu_has_bf16(torch.device("cuda", 0)) is False
    assert fsdp.gpu_has_bf16(torch.device("cpu")) is False


def test_sharding_strategies_follow_openvla():
    assert fsdp1_sharding_strategy("full-shard", local_world_size=8, world_size=16)[0] == "HYBRID_SHARD"
    assert fsdp1_sharding_strategy("shard-grad-op", local_world_size=2, world_size=2)[0] == "_HYBRID_SHARD_ZERO2"
    # One GPU per node: a hybrid strategy would shard over a group of one, so shard across the nodes instead.
    assert fsdp1_sharding_strategy("full-shard", local_world_size=1, world_size=4)[0] == "FULL_SHARD"


def test_world_size_one_turns_fsdp1_into_no_shard_without_a_stray_warning(single_process_group):
    from torch.distributed.device_mesh import init_device_mesh

    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fsdp.shard_with_fsdp1(backbone, backbone.get_fsdp_wrapping_policy(), torch.device("cpu"), "HYBRID_SHARD",
                                      init_device_mesh("cpu", (1, 1)), Precision("fp32", "test"))
    assert model.sharding_strategy.name == "NO_SHARD"
    assert not [w for w in caught if "NO_SHARD" in str(w.message)]


def test_fsdp1_gets_openvlas_arguments(single_process_group):
    """REFERENCE §6: use_orig_params=True, limit_all_gathers=True; bf16 compute with fp32 reduction and buffers."""
    from torch.distributed.device_mesh import init_device_mesh

    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    model = fsdp.shard_with_fsdp1(backbone, backbone.get_fsdp_wrapping_policy(), torch.device("cpu"), "HYBRID_SHARD",
                                  init_device_mesh("cpu", (1, 1)), Precision("bf16", "test"))
    assert model._use_orig_params and model.limit_all_gathers
    mixed = model.mixed_precision
    assert (mixed.param_dtype, mixed.reduce_dtype, mixed.buffer_dtype) == (torch.bfloat16, torch.float32, torch.float32)


@pytest.mark.parametrize("sharding", ["full-shard", "shard-grad-op"])
def test_fsdp2_gets_the_same_precision_and_resharding_as_fsdp1(single_process_group, sharding):
    """bf16 compute with fp32 reduction, as FSDP1's MixedPrecision; OpenVLA's shard-grad-op (ZeRO-2, FSDP1's
    _HYBRID_SHARD_ZERO2) keeps the gathered parameters after forward, which FSDP2 spells reshard_after_forward=False."""
    from torch.distributed.device_mesh import init_device_mesh

    zero2 = "ZERO2" in fsdp.OPENVLA_SHARDING[sharding]
    assert fsdp.FSDP2_RESHARD_AFTER_FORWARD[sharding] is not zero2
    backbone, _ = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    model = fsdp.shard_with_fsdp2(backbone, backbone.transformer_layer_cls, init_device_mesh("cpu", (1,)),
                                  Precision("bf16", "test"), reshard_after_forward=fsdp.FSDP2_RESHARD_AFTER_FORWARD[sharding])
    for unit in [model, *(m for m in model.modules() if isinstance(m, backbone.transformer_layer_cls))]:
        state = unit._get_fsdp_state()
        assert (state._mp_policy.param_dtype, state._mp_policy.reduce_dtype) == (torch.bfloat16, torch.float32)
        assert (state._fsdp_param_group.post_forward_mesh_info is None) == zero2


def test_fsdp2_shards_before_anything_is_moved(single_process_group):
    """Sharding must need no weights in memory: a model on the meta device shards, then materialises on the target."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor

    reference, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    model, _ = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")
    model.to("meta")
    # Moving a meta tensor's data anywhere raises, so any move before sharding would fail here.
    fsdp.shard_with_fsdp2(model, model.transformer_layer_cls, init_device_mesh("cpu", (1,)), Precision("fp32", "test"))
    assert all(isinstance(p, DTensor) and p.device.type == "meta" for p in model.parameters())

    model.to_empty(device="cpu")
    set_model_state_dict(model, reference.state_dict(), options=StateDictOptions(full_state_dict=True))
    # Non-persistent buffers (the rotary frequencies) are not in a state dict: recompute or copy them.
    for name, buffer in reference.named_buffers():
        model.get_buffer(name).copy_(buffer)
    batch = tokenizer([fsdp.DEMO_PROMPT], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=batch.input_ids).logits, reference(input_ids=batch.input_ids).logits)


def test_rank_lines_have_the_same_fields_on_gpu_and_cpu():
    on_gpu = format_rank_line(RankStats(1, 500, 2000, "cuda:1", 3 * 2**20, 5 * 2**20), total=1000)
    on_cpu = format_rank_line(RankStats(1, 500, 2000, "cpu", None, None), total=1000)
    for line in (on_gpu, on_cpu):
        assert re.match(r"rank 1 holds 500 of 1,000 parameters \(50\.0%\), 2,000 bytes on \S+; peak GPU memory: ", line)
    assert on_gpu.endswith("3.00 MiB after sharding, 5.00 MiB while training") and on_cpu.endswith("n/a on the CPU")


# --- the torchrun demo on CPU processes -----------------------------------------------------------------------------

REPORT_LINE_KINDS = {
    "plan": r"plan: backbone=\S+ fsdp=\d backend=\w+ world_size=\d+ nodes=\d+ device=\w+$",
    "precision": r"precision: (bf16|fp16|fp32) \(.+\)$",
    "sharding": r"sharding: \S+ -> FSDP\d .+; effective .+$",
    "unit": r"  unit \S+: [\d,]+ parameters$",
    "rank": r"rank \d+ holds [\d,]+ of [\d,]+ parameters \([\d.]+%\), [\d,]+ bytes on \S+; peak GPU memory: .+$",
    "step": r"step \d+: loss [\d.]+( \(fp16 overflow: update skipped, loss scale now \d+\))?$",
    "time": r"time on rank 0: load [\d.]+ s, shard [\d.]+ s, \d+ steps [\d.]+ s$",
}


def report_kinds(out: str) -> dict[str, list[str]]:
    """Every report line by kind; a line of no known kind fails the test."""
    kinds: dict[str, list[str]] = {kind: [] for kind in REPORT_LINE_KINDS}
    for line in out.splitlines():
        kind = next((k for k, pattern in REPORT_LINE_KINDS.items() if re.match(pattern, line)), None)
        assert kind, f"unexpected report line: {line!r}"
        kinds[kind].append(line)
    return kinds


def torchrun(args, env, nproc=2, timeout=300):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "vla_backbone.fsdp", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def cpu_env(**extra):
    # The GPUs are hidden so that these stay CPU runs on a GPU machine too.
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **extra}


# The FSDP2 case starts from an empty replica cache: every rank must find a complete replica (built before the
# process group exists), not one whose model files only rank 0 wrote. The mixed-precision cases run the autocast,
# MixedPrecision / MixedPrecisionPolicy and loss-scaling code of the GPU path, over gloo.
@pytest.mark.parametrize("fsdp_version, backbone_id, extra, cold_cache", [
    (1, "llama2-7b-pure", [], False),
    (2, "qwen25-0_5b-pure", [], True),
    (2, "llama2-7b-pure", ["--precision", "bf16"], False),
    (1, "llama2-7b-pure", ["--precision", "fp16", "--sharding", "shard-grad-op"], False),
])
def test_torchrun_demo_on_two_cpu_processes(fsdp_version, backbone_id, extra, cold_cache, tmp_path):
    env = cpu_env(**({"VLA_BACKBONE_HOME": str(tmp_path)} if cold_cache else {}))
    result = torchrun(["--backbone", backbone_id, "--fsdp", str(fsdp_version), "--steps", "3", *extra], env)
    # stdout too: whether rank 0's report came out tells a crash in training from one at teardown.
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-3000:]
    report = report_kinds(result.stdout)
    assert {kind: len(lines) for kind, lines in report.items() if kind != "unit"} == {
        "plan": 1, "precision": 1, "sharding": 1, "rank": 2, "step": 3, "time": 1}
    assert report["plan"][0].endswith(f"fsdp={fsdp_version} backend=gloo world_size=2 nodes=1 device=cpu")
    precision = extra[1] if extra else "fp32"
    assert report["precision"][0].startswith(f"precision: {precision} ")
    effective = {1: "HYBRID_SHARD" if "shard-grad-op" not in extra else "_HYBRID_SHARD_ZERO2", 2: "placements (Shard(dim=0),)"}
    assert report["sharding"][0].endswith(f"effective {effective[fsdp_version]}")

    shares = [int(x.replace(",", "")) for x in re.findall(r"rank \d holds ([\d,]+) of", result.stdout)]
    total = int(re.search(r"of ([\d,]+) parameters", result.stdout).group(1).replace(",", ""))
    assert sum(shares) == total and abs(shares[0] - shares[1]) <= total * 0.02
    assert all(line.endswith("bytes on cpu; peak GPU memory: n/a on the CPU") for line in [
        re.sub(r"\d[\d,]* bytes", "bytes", line) for line in report["rank"]])
    losses = [float(x) for x in re.findall(r"loss ([\d.]+)", result.stdout)]
    skipped = ["update skipped" in line for line in report["step"]]
    if precision == "fp16":
        # An update skipped for an fp16 overflow leaves the next loss where it was; every other update lowers it.
        assert all((b == a) if skip else (b < a) for a, b, skip in zip(losses, losses[1:], skipped))
    else:
        assert not any(skipped) and losses[-1] < losses[0]
    if cold_cache:
        from vla_backbone import tiny

        # The replica the ranks loaded is the one this process would build: same spec, same directory.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("VLA_BACKBONE_HOME", str(tmp_path))
            assert tiny.is_valid(tiny.tiny_dir("qwen25"))


def test_one_process_runs_no_shard_and_reports_it():
    result = torchrun(["--fsdp", "1", "--steps", "2"], cpu_env(), nproc=1)
    assert result.returncode == 0, result.stderr[-3000:]
    report = report_kinds(result.stdout)
    assert report["sharding"][0].startswith("sharding: full-shard -> FSDP1 HYBRID_SHARD")
    assert "effective NO_SHARD (one rank per node" in report["sharding"][0]
    assert "(100.0%)" in report["rank"][0]
    assert "NO_SHARD" not in result.stderr


def test_two_nodes_of_one_process_shard_across_the_nodes(tmp_path):
    # Two torchrun agents on this machine play two nodes with one process each (static rendezvous on a free port).
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    agents = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
         "--master_addr", "127.0.0.1", "--master_port", port, "--nproc_per_node", "1",
         "-m", "vla_backbone.fsdp", "--fsdp", "1", "--steps", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cpu_env()) for node in (0, 1)]
    outputs = [agent.communicate(timeout=300) for agent in agents]
    assert [agent.returncode for agent in agents] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    report = report_kinds(outputs[0][0])
    assert report["plan"][0].endswith("world_size=2 nodes=2 device=cpu")
    assert "FSDP1 FULL_SHARD" in report["sharding"][0] and report["sharding"][0].endswith("effective FULL_SHARD")
    assert all("(50.0%)" in line for line in report["rank"])


OVERFLOW_ON_ONE_RANK = """
import sys, torch, torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
from torch.distributed.device_mesh import init_device_mesh
from vla_backbone.fsdp import loss_scaler
version = int(sys.argv[1])
dist.init_process_group("gloo")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
if version == 1:
    model = FullyShardedDataParallel(model, device_id=torch.device("cpu"))
else:
    fully_shard(model, mesh=init_device_mesh("cpu", (2,)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = loss_scaler(version, "cpu", enabled=True)
scaler.scale(model(torch.ones(2, 8)).sum()).backward()
if dist.get_rank() == 1:
    grad = next(model.parameters()).grad
    (grad.to_local() if hasattr(grad, "to_local") else grad).view(-1)[0] = float("inf")
shards = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
before = [shard.detach().clone() for shard in shards]
scaler.step(optimizer)
scaler.update()
stepped = any(not torch.equal(old, new) for old, new in zip(before, shards))
everyone = [None, None]
dist.all_gather_object(everyone, f"scale {scaler.get_scale():g}, stepped {stepped}")
if dist.get_rank() == 0:
    print("\\n".join(f"rank {rank}: {line}" for rank, line in enumerate(everyone)))
dist.destroy_process_group()
"""


@pytest.mark.parametrize("fsdp_version", [1, 2])
def test_an_overflow_on_one_rank_skips_the_step_on_every_rank(fsdp_version, tmp_path):
    script = tmp_path / "overflow.py"
    script.write_text(OVERFLOW_ON_ONE_RANK)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(fsdp_version)]
    result = subprocess.run(command, capture_output=True, text=True, env=cpu_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.findall(r"rank \d: .*", result.stdout) == [
        "rank 0: scale 32768, stepped False", "rank 1: scale 32768, stepped False"]
    assert "implicitly creating a replicated DTensor" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available() or shutil.which("nvidia-smi") is not None,
                    reason="checks what a machine without a GPU gets")
def test_gpu_script_stops_before_installing_anything_without_a_gpu(tmp_path):
    venv = tmp_path / "venv"
    env = {**os.environ, "PYTHON": sys.executable, "VLA_GPU_VENV": str(venv)}
    result = subprocess.run(["bash", "tests/gpu/run.sh"], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 1
    assert "no NVIDIA GPU" in result.stderr and "bash tests/run_all.sh" in result.stderr
    assert not venv.exists(), "nothing is installed on a machine without a GPU"
