"""Measurements the notebooks and assignments share."""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn


def saved_activation_bytes(model: nn.Module, compute_loss: Callable[[], torch.Tensor]) -> int:
    """Bytes autograd keeps for backward while ``compute_loss()`` runs, parameters excluded.

    Counts each storage once. Under non-reentrant checkpointing the checkpoint's own hooks take over inside the
    checkpointed blocks, so what they drop is (correctly) not counted. Runs backward afterwards to free the graph.
    """
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = compute_loss()
    loss.backward()
    return sum(storages.values())


def median_seconds(step: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``step()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
