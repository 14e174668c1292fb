"""FSDP helpers: preview the units an auto-wrap policy makes, and a torchrun demo that shards and trains a backbone.

    torchrun --standalone --nproc_per_node 2 -m vla_backbone.fsdp             # no GPU: 2 CPU processes, gloo
    torchrun --standalone --nproc_per_node 2 -m vla_backbone.fsdp --fsdp 2    # the same with FSDP2 (fully_shard)
    torchrun --standalone --nproc_per_node 1 -m vla_backbone.fsdp             # one GPU (Colab): nccl, one rank
    torchrun --standalone --nproc_per_node gpu -m vla_backbone.fsdp           # one process per GPU of this node

With CUDA every process takes a GPU of its own (more processes than GPUs is an error that says what to run), the
backend is nccl, and training uses OpenVLA's precision recipe: autocast plus FSDP mixed precision in bf16, or in
fp16 with loss scaling on GPUs without bf16 (T4, V100). Without CUDA (or with ``CUDA_VISIBLE_DEVICES=``) every
process runs on the CPU with gloo, in fp32. Every path prints the same report: the plan, each rank's share of the
parameters, each rank's peak GPU memory, and the losses.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
# Imported before any process group exists: its constructor's default `process_group` is the default group as it
# stands at import, and an import inside a live group would pin that group beyond `destroy_process_group`.
from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

from vla_backbone.errors import BackboneError

# OpenVLA's `sharding_strategy` names and the FSDP1 strategies it passes for them: hybrid ones, which shard within a
# node and replicate across nodes (on one node, the same as FULL_SHARD / SHARD_GRAD_OP).
OPENVLA_SHARDING = {"full-shard": "HYBRID_SHARD", "shard-grad-op": "_HYBRID_SHARD_ZERO2"}
# FSDP2 has no strategy enum: keeping the gathered parameters between forward and backward is its
# `reshard_after_forward=False`.
FSDP2_RESHARD_AFTER_FORWARD = {"full-shard": True, "shard-grad-op": False}
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEMO_PROMPT = "In: What action should the robot take to pick up the cup?\nOut: "


def wrap_plan(module: nn.Module, policy: Callable) -> list[str]:
    """Qualified names of the modules FSDP's auto-wrap would turn into units, root (``""``) first.

    Follows the same traversal as FSDP's recursive wrap: ask ``policy(recurse=True)`` whether to descend, wrap
    children first, then ask ``policy(recurse=False)`` about the parameters the children left. No process group
    is needed; nothing is wrapped.
    """
    units: list[str] = []

    def visit(current: nn.Module, name: str) -> int:
        numel = sum(p.numel() for p in current.parameters())
        if not policy(module=current, recurse=True, nonwrapped_numel=numel):
            return 0
        wrapped = sum(visit(child, f"{name}.{child_name}" if name else child_name) for child_name, child in current.named_children())
        if name and policy(module=current, recurse=False, nonwrapped_numel=numel - wrapped):
            units.append(name)
            return numel
        return wrapped

    visit(module, "")
    # The root always becomes a unit too: it owns whatever no policy claimed (embeddings, final norm, head).
    return ["", *sorted(units, key=_module_order(module))]


def _module_order(module: nn.Module) -> Callable[[str], int]:
    order = {name: index for index, (name, _) in enumerate(module.named_modules())}
    return lambda name: order[name]


def unit_parameter_counts(module: nn.Module, policy: Callable) -> dict[str, int]:
    """Parameters each would-be FSDP unit owns (its own, not those of units nested inside it)."""
    units = wrap_plan(module, policy)
    counts = dict.fromkeys(units, 0)
    for param_name, param in module.named_parameters():
        owner = max((unit for unit in units if unit == "" or param_name.startswith(unit + ".")), key=len)
        counts[owner] += param.numel()
    return counts


class FSDPLaunchError(BackboneError, RuntimeError):
    """A demo launch that cannot work on this machine: the message says what to run instead."""


class ProcessCountError(FSDPLaunchError):
    """torchrun started more processes on a node than the node has GPUs."""


def device_for_rank(local_rank: int, local_world_size: int, gpu_count: int) -> torch.device:
    """The device one rank trains on: the GPU numbered by its local rank, or the CPU on a machine without GPUs.

    Raises ``ProcessCountError`` when a node runs more processes than it has GPUs: nccl needs a GPU per process.
    """
    if gpu_count == 0:
        return torch.device("cpu")
    if local_world_size > gpu_count:
        raise ProcessCountError(
            f"torchrun started {local_world_size} processes on this node, but it has {gpu_count} CUDA GPU(s), and "
            f"FSDP over nccl needs one GPU per process. Run `torchrun --standalone --nproc_per_node {gpu_count} "
            "-m vla_backbone.fsdp ...` (or `--nproc_per_node gpu`), or hide the GPUs with `CUDA_VISIBLE_DEVICES=` "
            "to run every process on the CPU with gloo."
        )
    return torch.device("cuda", local_rank)


@dataclass(frozen=True)
class Precision:
    """How the demo trains: ``name`` is ``"bf16"``, ``"fp16"`` or ``"fp32"``; ``reason`` says why."""

    name: str
    reason: str

    @property
    def compute_dtype(self) -> torch.dtype:
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.name]

    @property
    def mixed(self) -> bool:
        return self.name != "fp32"

    @property
    def loss_scaling(self) -> bool:
        # fp16 has 5 exponent bits: small gradients underflow to zero unless the loss is scaled up first.
        return self.name == "fp16"


def choose_precision(device_type: str, bf16_supported: bool, requested: str = "auto") -> Precision:
    """The precision to train in on ``device_type``; ``bf16_supported``: the GPU computes natively in bf16.

    ``"auto"``: bf16 mixed precision (OpenVLA's) on a GPU with bf16, fp16 mixed precision with loss scaling on a
    GPU without it, fp32 on the CPU. An explicit ``requested`` precision is honoured, except bf16 on a GPU without
    it, which raises ``FSDPLaunchError``.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    gpu_without_bf16 = device_type == "cuda" and not bf16_supported
    if requested == "bf16" and gpu_without_bf16:
        raise FSDPLaunchError("this GPU has no native bf16 (compute capability below 8.0, e.g. T4 or V100); "
                              "run with `--precision fp16` or `--precision fp32`")
    if requested != "auto":
        return Precision(requested, f"requested with --precision {requested}")
    if device_type != "cuda":
        return Precision("fp32", "CPU run: mixed precision saves GPU memory and time; on the CPU it would only blur "
                                 "the comparison with a single-process fp32 loss")
    if gpu_without_bf16:
        return Precision("fp16", "this GPU has no native bf16 (compute capability below 8.0, e.g. T4 or V100): "
                                 "fp16 mixed precision with loss scaling instead of OpenVLA's bf16")
    return Precision("bf16", "the GPU computes in bf16: OpenVLA's recipe (bf16 compute, fp32 reduction and "
                             "fp32 master weights)")


def gpu_has_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes natively in bf16 (compute capability 8.0 or newer, or ROCm)."""
    if device.type != "cuda":
        return False
    with torch.cuda.device(device):
        # The default `including_emulation=True` answers True on a T4 too, where bf16 is emulated, slowly.
        return torch.cuda.is_bf16_supported(including_emulation=False)


def fsdp1_sharding_strategy(sharding: str, local_world_size: int, world_size: int) -> tuple[str, str]:
    """The FSDP1 ``ShardingStrategy`` name for OpenVLA's ``sharding`` option on this layout, and why."""
    strategy = OPENVLA_SHARDING[sharding]
    if local_world_size == 1 and world_size > 1:
        # A hybrid strategy would shard over a group of one GPU; FSDP1 turns that into NO_SHARD, which then
        # syncs gradients only inside that group of one, so the nodes would silently train apart.
        flat = {"HYBRID_SHARD": "FULL_SHARD", "_HYBRID_SHARD_ZERO2": "SHARD_GRAD_OP"}[strategy]
        return flat, f"{strategy} would shard over one GPU per node; {flat} shards across the nodes instead"
    return strategy, "OpenVLA's choice: shard within a node, replicate across nodes"


def shard_with_fsdp1(model: nn.Module, policy: Callable, device: torch.device, strategy: str, mesh, precision: Precision) -> nn.Module:
    """Wrap ``model`` (still on the CPU) with FSDP1 as OpenVLA does: ``strategy`` names a ``ShardingStrategy``,
    ``mesh`` is the (nodes, GPUs per node) device mesh a hybrid strategy needs, else ``None``. FSDP1 moves one unit
    at a time to ``device`` and shards it there, so a GPU never holds the whole model next to its shards."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import MixedPrecision, ShardingStrategy

    mixed = None
    if precision.mixed:
        mixed = MixedPrecision(param_dtype=precision.compute_dtype, reduce_dtype=torch.float32, buffer_dtype=torch.float32)
    with warnings.catch_warnings():
        # With one rank per node FSDP1 falls back to NO_SHARD and warns; the report states the effective strategy.
        warnings.filterwarnings("ignore", message="FSDP is switching to use `NO_SHARD`")
        return FSDP(
            model,
            auto_wrap_policy=policy,
            sharding_strategy=ShardingStrategy[strategy],
            device_mesh=mesh,
            mixed_precision=mixed,
            device_id=device,
            use_orig_params=True,
            limit_all_gathers=True,
        )


def shard_with_fsdp2(model: nn.Module, layer_cls: type, mesh, precision: Precision, reshard_after_forward: bool = True) -> nn.Module:
    """``fully_shard`` every ``layer_cls`` module, then the root, on ``mesh``.

    Nothing is moved beforehand: each ``fully_shard`` call moves the parameters of its own unit to the mesh's device
    and keeps only this rank's shard, so a GPU never holds more than its shards plus one unit. A model built on the
    ``meta`` device shards just the same (materialise it afterwards with ``to_empty`` and a state dict).
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=precision.compute_dtype, reduce_dtype=torch.float32) if precision.mixed else MixedPrecisionPolicy()
    for layer in [m for m in model.modules() if isinstance(m, layer_cls)]:
        fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    return fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)


def loss_scaler(fsdp_version: int, device_type: str, enabled: bool) -> torch.amp.GradScaler:
    """The gradient scaler for fp16 training with FSDP ``fsdp_version``; a no-op when not ``enabled``.

    An overflow in any rank's shard must skip the step on every rank, or the ranks' weights drift apart. FSDP1's
    gradients are plain tensors (shards of flat parameters): ``ShardedGradScaler`` all-reduces the overflow flag
    over the process group. FSDP2's gradients are DTensors, and the plain ``torch.amp.GradScaler`` already reduces
    the flag over their mesh (``ShardedGradScaler`` would work too, but with a warning about an implicitly
    replicated tensor on every step).
    """
    scaler_cls = ShardedGradScaler if fsdp_version == 1 else torch.amp.GradScaler
    return scaler_cls(device=device_type, enabled=enabled)


def local_shards(model: nn.Module) -> list[torch.Tensor]:
    """This rank's piece of every parameter: FSDP2 keeps DTensors (``to_local()``); FSDP1 with ``use_orig_params``
    exposes views into the local shard of its flat parameters (empty where a parameter lives on another rank)."""
    return [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]


@dataclass
class RankStats:
    """What one rank measured; rank 0 prints everyone's."""

    rank: int
    numel: int
    nbytes: int
    devices: str
    peak_after_sharding: Optional[int]
    peak_training: Optional[int]


def format_rank_line(stats: RankStats, total: int) -> str:
    """One report line per rank, with the same fields on every device."""
    share = f"rank {stats.rank} holds {stats.numel:,} of {total:,} parameters ({stats.numel / total:.1%}), {stats.nbytes:,} bytes on {stats.devices}"
    if stats.peak_after_sharding is None:
        return f"{share}; peak GPU memory: n/a on the CPU"
    return (f"{share}; peak GPU memory: {stats.peak_after_sharding / 2**20:.2f} MiB after sharding, "
            f"{stats.peak_training / 2**20:.2f} MiB while training")


def run_demo(backbone_id: str, fsdp_version: int, steps: int, precision: str = "auto", sharding: str = "full-shard",
             source: Optional[str] = None) -> None:
    """Shard a backbone across the ranks torchrun started and train it a few steps; rank 0 prints the report."""
    import torch.distributed as dist
    import transformers

    from vla_backbone.registry import checkpoint_path

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world % local_world:
        raise FSDPLaunchError(f"WORLD_SIZE {world} is not a multiple of LOCAL_WORLD_SIZE {local_world}: "
                              "start every node with the same --nproc_per_node")
    device = device_for_rank(local_rank, local_world, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if device.type == "cuda":
        # Bind this rank's GPU before anything touches CUDA, so that no rank opens a context on GPU 0.
        torch.cuda.set_device(device)
    chosen = choose_precision(device.type, gpu_has_bf16(device), precision)
    # Resolve (and, for a tiny replica, build) the checkpoint before the process group exists: inside one,
    # transformers 5 writes model files from rank 0 only, and another rank's build would come out incomplete.
    checkpoint = checkpoint_path(backbone_id, source)
    transformers.utils.logging.disable_progress_bar()

    # `device_id` makes nccl connect at once, on this rank's GPU (and report a broken set-up here, not later).
    if device.type == "cuda":
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    try:
        _shard_and_train(dist, device, chosen, backbone_id, checkpoint, fsdp_version, steps, sharding, local_world)
    finally:
        # FSDP modules hold their process groups in reference cycles; free them while the groups still exist.
        gc.collect()
        dist.destroy_process_group()


def _shard_and_train(dist, device: torch.device, precision: Precision, backbone_id: str, checkpoint: str,
                     fsdp_version: int, steps: int, sharding: str, local_world: int) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    from vla_backbone.registry import get_llm_backbone_and_tokenizer

    rank, world = dist.get_rank(), dist.get_world_size()
    nodes = world // local_world
    on_gpu = device.type == "cuda"
    torch.manual_seed(0)
    started = time.perf_counter()
    # Every rank loads the model into CPU memory; sharding then moves one unit at a time to its GPU.
    backbone, tokenizer = get_llm_backbone_and_tokenizer(backbone_id, source=checkpoint)
    total = sum(p.numel() for p in backbone.parameters())
    policy = backbone.get_fsdp_wrapping_policy()
    counts = unit_parameter_counts(backbone, policy)
    loaded = time.perf_counter()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)

    if fsdp_version == 1:
        strategy, why = fsdp1_sharding_strategy(sharding, local_world, world)
        hybrid_mesh = None
        if strategy in OPENVLA_SHARDING.values():
            hybrid_mesh = init_device_mesh(device.type, (nodes, local_world), mesh_dim_names=("replicate", "shard"))
        model = shard_with_fsdp1(backbone, policy, device, strategy, hybrid_mesh, precision)
        effective = model.sharding_strategy.name
        sharding_line = f"sharding: {sharding} -> FSDP1 {strategy} ({why}); effective {effective}{_no_shard_note(effective)}"
    else:
        reshard = FSDP2_RESHARD_AFTER_FORWARD[sharding]
        # Several nodes of several GPUs: replicate across nodes, shard within each (HSDP, as OpenVLA's hybrid
        # strategies). Otherwise one flat mesh over every rank.
        hsdp = nodes > 1 and local_world > 1
        shape, names = ((nodes, local_world), ("replicate", "shard")) if hsdp else ((world,), ("shard",))
        mesh = init_device_mesh(device.type, shape, mesh_dim_names=names)
        model = shard_with_fsdp2(backbone, backbone.transformer_layer_cls, mesh, precision, reshard)
        placements = next(model.parameters()).placements
        sharding_line = (f"sharding: {sharding} -> FSDP2 fully_shard per decoder layer, then the root, on mesh "
                         f"{dict(zip(names, shape, strict=True))}, reshard_after_forward={reshard}; effective placements {placements}")
    sharded = time.perf_counter()
    peak_after_sharding = torch.cuda.max_memory_allocated(device) if on_gpu else None
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)

    batch = tokenizer([DEMO_PROMPT] * 2, return_tensors="pt").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = loss_scaler(fsdp_version, device.type, enabled=precision.loss_scaling)
    losses = []
    for _ in range(steps):
        # OpenVLA's training step: autocast to the half-precision dtype on top of FSDP's mixed-precision policy.
        with torch.autocast(device.type, dtype=precision.compute_dtype, enabled=precision.mixed):
            loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids).loss
        scale_before = scaler.get_scale() if scaler.is_enabled() else None
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        reduced = loss.detach().float().clone()
        dist.all_reduce(reduced, op=dist.ReduceOp.AVG)
        # The scaler halves its scale exactly when it found inf/NaN gradients and skipped the update.
        skipped = scaler.is_enabled() and scaler.get_scale() < scale_before
        losses.append((reduced.item(), skipped, scaler.get_scale() if scaler.is_enabled() else None))
    trained = time.perf_counter()

    shards = local_shards(model)
    mine = RankStats(
        rank=rank,
        numel=sum(t.numel() for t in shards),
        nbytes=sum(t.numel() * t.element_size() for t in shards),
        devices=",".join(sorted({str(t.device) for t in shards})),
        peak_after_sharding=peak_after_sharding,
        peak_training=torch.cuda.max_memory_allocated(device) if on_gpu else None,
    )
    everyone: list = [None] * world
    dist.all_gather_object(everyone, mine)
    if rank == 0:
        print(f"plan: backbone={backbone_id} fsdp={fsdp_version} backend={dist.get_backend()} world_size={world} "
              f"nodes={nodes} device={device.type}")
        print(f"precision: {precision.name} ({precision.reason})")
        print(sharding_line)
        for unit, numel in counts.items():
            print(f"  unit {unit or '(root)'}: {numel:,} parameters")
        for stats in everyone:
            print(format_rank_line(stats, total))
        for step, (value, skipped, scale) in enumerate(losses):
            note = f" (fp16 overflow: update skipped, loss scale now {scale:g})" if skipped else ""
            print(f"step {step}: loss {value:.4f}{note}")
        print(f"time on rank 0: load {loaded - started:.2f} s, shard {sharded - loaded:.2f} s, "
              f"{steps} steps {trained - sharded:.2f} s")
    dist.barrier()


def _no_shard_note(effective: str) -> str:
    if effective != "NO_SHARD":
        return ""
    return " (one rank per node: FSDP1 turns every strategy into NO_SHARD; no all-gather, no reduce-scatter)"


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="llama2-7b-pure", help="a registered backbone id")
    parser.add_argument("--source", default=None, help='"tiny" (default), "hub" (real weights) or a checkpoint directory')
    parser.add_argument("--fsdp", type=int, choices=(1, 2), default=1, help="FSDP1 (wrapper class) or FSDP2 (fully_shard)")
    parser.add_argument("--steps", type=int, default=3, help="training steps to run")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 on GPUs with bf16, fp16 (loss scaling) on older GPUs, fp32 on the CPU")
    parser.add_argument("--sharding", choices=tuple(OPENVLA_SHARDING), default="full-shard",
                        help="OpenVLA's sharding option (FSDP1: HYBRID_SHARD or _HYBRID_SHARD_ZERO2)")
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        parser.error("start me with torchrun, e.g. `torchrun --standalone --nproc_per_node 2 -m vla_backbone.fsdp`")
    try:
        run_demo(args.backbone, args.fsdp, args.steps, args.precision, args.sharding, args.source)
    except FSDPLaunchError as error:
        if int(os.environ.get("LOCAL_RANK", 0)) == 0:
            print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
