"""The local executor: a per-item function over many items on a pool of worker processes.

Deliberately small and ignorant of clips and caches (the Ray executor, executors/ray.py, stands in for
it the same way): `map_unordered(fn, items, workers)`. Results stream back as they finish; at most a
few items per worker are in flight, so memory stays bounded however many items there are."""
import ctypes
import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import TypeVar

from rq.pipeline.console import progress

T = TypeVar("T")
R = TypeVar("R")
IN_FLIGHT_PER_WORKER = 4


def map_unordered(fn: Callable[[T], R], items: Sequence[T], workers: int, *, desc: str = "",
                  unit: str = "it") -> Iterator[R]:
    """Yield fn(item) for every item, in completion order, with a progress bar (rate, ETA).
    `fn` must not raise for a bad item (it returns a failure record); an exception here is a real fault
    and stops the run. workers <= 1 runs in this process (no pool start-up, easy to debug)."""
    return counted(_serial(fn, items) if workers <= 1 else _pooled(fn, items, workers), len(items), desc=desc,
                   unit=unit)


def counted(results: Iterable[R], total: int, *, desc: str, unit: str) -> Iterator[R]:
    """`results` as they come, counted on a progress bar: every executor shows the same one."""
    with progress(total=total, desc=desc, unit=unit) as bar:
        for result in results:
            bar.update(1)
            yield result


def _serial(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    for item in items:
        yield fn(item)


def _pooled(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    # fork: workers inherit the imported modules instead of importing them again (seconds per worker).
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    pending = iter(items)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_die_with_parent) as pool:
        running = set()
        while True:
            while len(running) < workers * IN_FLIGHT_PER_WORKER:
                item = next(pending, _DONE)
                if item is _DONE:
                    break
                running.add(pool.submit(fn, item))
            if not running:
                return
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()


_DONE = object()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """A worker ends when the run that started it is killed (SIGKILL gives the pool no chance to stop
    its workers, which would otherwise wait for work for ever, holding memory)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
