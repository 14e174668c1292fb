"""FSDP helpers: preview which modules an auto-wrap policy turns into FSDP units, and a runnable torchrun demo.

    torchrun --nproc_per_node 2 -m vla_backbone.fsdp --backbone llama2-7b-pure            # FSDP1, gloo on CPU
    torchrun --nproc_per_node 2 -m vla_backbone.fsdp --backbone llama2-7b-pure --fsdp 2   # FSDP2 (fully_shard)

On a machine with CUDA GPUs the demo uses nccl, one GPU per rank, and bf16 mixed precision as OpenVLA does.
"""
from __future__ import annotations

import argparse
import os
from typing import Callable

import torch
from torch import nn


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


def _local_numel(model: nn.Module) -> int:
    # FSDP2 parameters are DTensors (the local shard via to_local()); FSDP1 with use_orig_params exposes views
    # of the local shard directly.
    return sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())


def run_demo(backbone_id: str, fsdp_version: int, steps: int) -> None:
    """Shard a backbone across the ranks torchrun started, print the plan, each rank's share and a few losses."""
    import torch.distributed as dist

    from vla_backbone.registry import checkpoint_path, get_llm_backbone_and_tokenizer

    # Resolve (and, for a tiny replica, build) the checkpoint before the process group exists: inside one,
    # transformers 5 writes model files from rank 0 only, and another rank's build would come out incomplete.
    checkpoint = checkpoint_path(backbone_id)
    use_cuda = torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)

    backbone, tokenizer = get_llm_backbone_and_tokenizer(backbone_id, source=checkpoint)
    total = sum(p.numel() for p in backbone.parameters())
    if rank == 0:
        print(f"backend={dist.get_backend()} world_size={world} device={device.type} fsdp={fsdp_version}")
        counts = unit_parameter_counts(backbone, backbone.get_fsdp_wrapping_policy())
        for unit, numel in counts.items():
            print(f"  unit {unit or '(root)'}: {numel:,} parameters")

    if fsdp_version == 1:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import MixedPrecision, ShardingStrategy

        mixed = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.float32)
        model = FSDP(
            backbone,
            auto_wrap_policy=backbone.get_fsdp_wrapping_policy(),
            sharding_strategy=ShardingStrategy.FULL_SHARD,
            mixed_precision=mixed if use_cuda else None,
            device_id=device,
            use_orig_params=True,
            limit_all_gathers=True,
        )
    else:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        backbone.to(device)
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if use_cuda else MixedPrecisionPolicy()
        for layer in [m for m in backbone.modules() if isinstance(m, backbone.transformer_layer_cls)]:
            fully_shard(layer, mp_policy=mp)
        model = fully_shard(backbone, mp_policy=mp)

    shares = [torch.zeros((), dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(shares, torch.tensor(_local_numel(model), device=device))
    if rank == 0:
        for r, share in enumerate(shares):
            print(f"rank {r} holds {int(share):,} of {total:,} parameters ({int(share) / total:.1%})")
        if use_cuda:
            print(f"rank 0 peak GPU memory after sharding: {torch.cuda.max_memory_allocated(device) / 2**20:.1f} MiB")

    prompt = "In: What action should the robot take to pick up the cup?\nOut: "
    batch = tokenizer([prompt] * 2, return_tensors="pt").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(steps):
        loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        reduced = loss.detach().float().clone()
        dist.all_reduce(reduced, op=dist.ReduceOp.AVG)
        if rank == 0:
            print(f"step {step}: loss {reduced.item():.4f}")
    dist.barrier()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="llama2-7b-pure", help="a registered backbone id")
    parser.add_argument("--fsdp", type=int, choices=(1, 2), default=1, help="FSDP1 (wrapper class) or FSDP2 (fully_shard)")
    parser.add_argument("--steps", type=int, default=3, help="training steps to run")
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        parser.error("start me with torchrun, e.g. `torchrun --nproc_per_node 2 -m vla_backbone.fsdp`")
    run_demo(args.backbone, args.fsdp, args.steps)


if __name__ == "__main__":
    main()
