"""Executors run the per-clip function over the clips that need work and stream the results back in
completion order, counted on the same progress bar. `rq preprocess --executor NAME` picks one:

  process  worker processes on this machine (pool.py), the default;
  ray      Ray tasks on a local Ray instance or an existing cluster (ray.py; the optional `rq[ray]` extra).

Both keep a bounded number of items in flight; the caller writes the shards and the manifest."""
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from rq.pipeline.executors.pool import map_unordered

T = TypeVar("T")
R = TypeVar("R")
EXECUTORS = ("process", "ray")
RAY_INSTALL = "pip install 'rq[ray]'"


class Executor(Protocol):
    """A context manager (what it starts stops on exit) whose `map` yields fn(item) for every item."""

    def __enter__(self) -> "Executor": ...

    def __exit__(self, *exc) -> None: ...

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str, unit: str) -> Iterator[R]: ...


class ProcessExecutor:
    """The process pool (pool.py) behind the Executor interface; it starts on the first map with items."""

    def __init__(self, workers: int):
        self.workers = workers

    def __enter__(self) -> "ProcessExecutor":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str, unit: str) -> Iterator[R]:
        return map_unordered(fn, items, self.workers, desc=desc, unit=unit)


def executor_problem(name: str, address: str | None) -> str | None:
    """The one-line usage error of --executor / --ray-address, or None."""
    if name not in EXECUTORS:
        return f"--executor must be {' or '.join(EXECUTORS)}, got {name!r}"
    if address is not None and name != "ray":
        return "--ray-address needs --executor ray"
    if name == "ray" and importlib.util.find_spec("ray") is None:
        return f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}"
    return None


def open_executor(name: str, *, workers: int | None, address: str | None = None, reads: Sequence[Path] = (),
                  writes: Path | None = None, lost: Callable[[T, str], R] | None = None) -> Executor:
    """The executor `name` (checked by executor_problem). `workers`: None = every core (the pool, a
    local Ray instance) or every CPU of the cluster joined at `address`. `reads` / `writes`: the files
    and the folder every Ray node must see as this machine does; `lost(item, reason)`: the result of an
    item whose Ray task was lost past every retry."""
    if name == "ray":
        from rq.pipeline.executors.ray import RayExecutor
        return RayExecutor(workers, address, reads, writes, lost)
    return ProcessExecutor(workers or len(os.sched_getaffinity(0)))
