"""The one module that reads rank variables (torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or SLURM's)
and talks to torch.distributed. Everything else asks it for `env.is_main` and the reduce helpers."""
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
import os

import torch
import torch.distributed as dist

from rq.train.trainer.config import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only this process logs, writes metrics and saves checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _rank_variables() -> tuple[int, int, int]:
    """(rank, world, local_rank): torchrun first, then SLURM (srun without torchrun), else one process."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" picks this process's GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: torch sees no CUDA device")
    return torch.device("cuda", local_rank) if name == "cuda" else device


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group when launched with several processes: NCCL on GPUs, gloo on CPU.
    Rendezvous is torch's env:// (MASTER_ADDR / MASTER_PORT, which torchrun sets)."""
    rank, world, local_rank = _rank_variables()
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world,
                                device_id=dev if dev.type == "cuda" else None)
    return DistEnv(rank, world, local_rank, dev)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(device: str = "auto") -> Iterator[DistEnv]:
    """init_distributed for the length of a command, left again however it ends."""
    env = init_distributed(device)
    try:
        yield env
    finally:
        shutdown(env)


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over all processes (returns a new tensor on the input's device)."""
    if not env.distributed:
        return t.clone()
    # NCCL reduces only on the GPU; gloo only on the CPU.
    out = t.detach().to(env.device if env.device.type == "cuda" else "cpu").clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def all_gather_objects(obj, env: DistEnv) -> list:
    """Every process's `obj` (any picklable value), in rank order."""
    if not env.distributed:
        return [obj]
    gathered = [None] * env.world
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
