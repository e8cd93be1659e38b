"""Multi-process training under ``torchrun``: the process group, rank-aware helpers, gathering.

``torchrun --nproc_per_node=N -m stages.stageK ...`` (or ``python -m torch.distributed.run``)
starts N processes and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` joins
them into one process group: NCCL with device ``cuda:LOCAL_RANK`` when ``train.device``
resolves to CUDA, gloo on the CPU. Without those variables everything here is a no-op for a
single process, so the same code runs both ways.

How a stage runs on N ranks (``Trainer`` and the stage runners):

- only the trainable module is wrapped in DistributedDataParallel (frozen encoders are not);
  ``train.sync_batchnorm: true`` turns its batch norms into SyncBatchNorm (CUDA only);
  ``train.batch_size`` is per rank, so the effective batch is N times larger;
- train and val loaders read disjoint shards through a DistributedSampler (``set_epoch``
  every epoch); validation outputs are gathered from all ranks, the sampler's padding
  duplicates dropped by record index, and rank 0's metrics are broadcast, so every rank
  takes the same early-stopping decision;
- rank 0 alone writes the run directory (``state.pt`` with every rank's RNG state,
  ``best.pt``, logs, TensorBoard) and the registry entry; the other ranks read ``best.pt``
  and the entry back after a barrier, so the run directory and registry must be visible to
  every rank (one node, or a shared filesystem);
- every rank returns the same entry, so ``stages.stageK`` prints it once per rank; pass
  ``--local-ranks-filter=0`` to torchrun to see rank 0's output only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from gazecxr.training.runtime import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Rank, number of processes and local (per-node) rank of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes checkpoints, logs and registry entries."""
        return self.rank == 0


SINGLE = DistContext()
"""The context of an ordinary single-process run."""


def launched() -> bool:
    """True when this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto") -> DistContext:
    """Join the ``torchrun`` process group (once per process) and return this rank's context.

    ``device`` is the ``train.device`` setting: NCCL is used when it resolves to CUDA, gloo
    otherwise. Not launched by ``torchrun``: returns :data:`SINGLE` and starts nothing.
    """
    if not launched():
        return SINGLE
    if not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = resolve_device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return current()


def teardown(wait: bool = True) -> None:
    """Leave the process group (no-op when none was joined); ``wait`` for all ranks first.

    Exiting with a live gloo group can abort the process ("terminate called without an
    active exception"), so entry points call this before they return; after an error on
    this rank they pass ``wait=False`` rather than block on ranks that carry on.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def current() -> DistContext:
    """The context of the initialised process group, or :data:`SINGLE`."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def device_for(setting: str, ctx: DistContext) -> torch.device:
    """The training device: ``setting`` resolved, and ``cuda:LOCAL_RANK`` for CUDA under torchrun."""
    device = resolve_device(setting)
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (no-op for one process)."""
    if ctx.enabled:
        dist.barrier()


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable objects)."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_across(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sums of ``values`` over all ranks."""
    if not ctx.enabled:
        return list(values)
    return [sum(column) for column in zip(*all_gather_objects(list(values), ctx))]


def sync_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers of ``module`` (e.g. batch-norm statistics, which each
    rank updates from its own batch during the last training forward)."""
    if ctx.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather_outputs(outputs: dict[str, Tensor], ctx: DistContext) -> dict[str, Tensor]:
    """Per-sample outputs of all ranks joined into one set, identical on every rank.

    Samples are identified by ``outputs["index"]`` (the record's row in the dataset file):
    they are put in index order and the duplicates a ``DistributedSampler`` pads the last
    shard with are dropped, so the result equals a single process's pass over the split.
    """
    if not ctx.enabled:
        return outputs
    if "index" not in outputs:
        raise KeyError("distributed validation needs each sample's 'index' to merge the ranks' outputs")
    parts = all_gather_objects({k: v.cpu() for k, v in outputs.items()}, ctx)
    joined = {k: torch.cat([p[k] for p in parts]) for k in outputs}
    index = joined["index"]
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    first = torch.ones_like(sorted_index, dtype=torch.bool)
    first[1:] = sorted_index[1:] != sorted_index[:-1]
    keep = order[first]
    return {k: v[keep] for k, v in joined.items()}
