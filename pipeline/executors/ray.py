"""The Ray executor: the same per-item function as the process pool, run as Ray tasks on a local Ray
instance or on an existing cluster (the optional `rq[ray]` extra).

Without an address it starts a local instance of `workers` CPUs, gone when the run ends; with one
("auto", "HOST:PORT") it joins that cluster as a driver and leaves it as it was. A task gets the paths
the driver gives it, so the raw files and the cache must be one filesystem that every node mounts at
the same path: `check_nodes` asks every node at start. Workers write their cache entries themselves
and return only the small result (the entries' heads); the shard writer reads the bytes from the
cache on the driver, as with the pool. At most a few tasks per CPU are in flight and results are
taken as they finish (ray.wait), so the driver's memory does not grow with the dataset.

Faults: a task whose worker process or node dies is run again by Ray (RETRIES times, elsewhere if its
node is gone); one lost past that comes back as `lost(item, reason)`, a transient failure that the
next run computes, so a lost node costs only the items it was running. Ctrl-C (any exception in the
caller) cancels every task in flight."""
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rq.pipeline.console import QUIET, err, verbosity
from rq.pipeline.errors import ExecutorError
from rq.pipeline.executors.pool import IN_FLIGHT_PER_WORKER, counted

T = TypeVar("T")
R = TypeVar("R")
RETRIES = 3                          # Ray's own default for tasks, written down: the README promises it
_LOCAL_OBJECT_STORE = 256 * 2**20    # a local instance's shared memory: results are small heads, not bytes
_CHECK_SECONDS = 120                 # a node that cannot start a worker in this time is reported
_SHARED = "--raw and the cache must be one filesystem that every node mounts at the same path"


def connect(address: str | None, cpus: int | None = None) -> bool:
    """Join the cluster at `address` ("auto", "HOST:PORT"), or start a local instance of `cpus` CPUs
    when there is none. Returns whether this call connected (and so should disconnect); a process
    already connected (a script that called ray.init itself) keeps its connection."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")   # rq never turns telemetry on for its user
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is not None:
        _reachable(address)
    try:
        if address is None:
            # "local": a new instance even when another one runs on this machine
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, object_store_memory=_LOCAL_OBJECT_STORE,
                     **quiet)
        else:
            _token_as_ray_start_does()
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"join the Ray cluster at {address}" if address else "start a local Ray instance"
        raise ExecutorError(f"cannot {where}: {_one_line(e.__cause__ or e)}") from None
    return True


def disconnect(connected: bool) -> None:
    """Leave the cluster (a local instance stops with it); every task of this driver is ended."""
    if connected and ray.is_initialized():
        ray.shutdown()


def cluster_nodes() -> list[tuple[str, int]]:
    """(name, CPUs) of every live node that runs tasks."""
    return [(_node_name(n), int(n["Resources"]["CPU"])) for n in _task_nodes()]


class RayExecutor:
    """`rq preprocess --executor ray`: use as a context manager; `map` streams results like the pool's.
    Ray is started (or joined) by the first `map` that has items, so a rerun with nothing to compute
    starts nothing. `workers`: a local instance's CPUs (default: this machine's cores); with an address,
    a cap on the tasks running at once (default: every CPU of the cluster). `reads` (the first clip's
    files) and `writes` (the cache folder) are what every node must see as the driver does; `lost`
    turns an item whose task was lost past every retry into its result."""

    def __init__(self, workers: int | None, address: str | None, reads: Sequence[Path], writes: Path,
                 lost: Callable[[T, str], R]):
        self.workers, self.address, self.reads, self.writes, self.lost = workers, address, reads, writes, lost
        self._connected = self._checked = False
        self._in_flight = 0

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        disconnect(self._connected)
        self._connected = self._checked = False

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str, unit: str) -> Iterator[R]:
        if items:
            self._start()   # before the progress bar: starting Ray takes seconds that are not the clips'
        return counted(self._run(fn, items), len(items), desc=desc, unit=unit)

    def _start(self) -> None:
        if self._checked:
            return
        cpus = self.workers or len(os.sched_getaffinity(0))
        self._connected = connect(self.address, cpus) or self._connected
        nodes = cluster_nodes()
        total = sum(n for _, n in nodes)
        if not total:   # tasks would wait for a CPU forever
            raise ExecutorError(f"the Ray cluster at {self.address} has no node with a CPU to run clips on")
        check_nodes(self.reads, self.writes)
        self._checked = True
        if self.address is not None and self.workers:
            self._in_flight = self.workers   # a cap: no task waits in a queue beyond it
        else:
            self._in_flight = IN_FLIGHT_PER_WORKER * total
        where = f"joined {self.address}" if self.address else "a local instance"
        if verbosity() != QUIET:
            err.print(f"ray: {where}, {len(nodes)} node(s), {total} CPUs; every node sees the shared storage",
                      markup=False)

    def _run(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(run_item)
        fn_ref = ray.put(fn)   # shipped once, not with every task
        pending = iter(items)
        running: dict = {}     # object ref -> its item
        try:
            while True:
                while len(running) < self._in_flight:
                    item = next(pending, _DONE)
                    if item is _DONE:
                        break
                    running[task.remote(fn_ref, item)] = item
                if not running:
                    return
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    yield self._result(ref, running.pop(ref))
        finally:
            for ref in running:   # Ctrl-C, or the caller stopped: nothing of this run goes on
                ray.cancel(ref, force=True)

    def _result(self, ref, item: T) -> R:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            # The function raised: a real fault, as with the pool; re-raised as itself (a missing
            # ffmpeg on a node is then the same one line as on this machine).
            raise (e.cause if isinstance(e.cause, Exception) else e) from None
        except ray.exceptions.RayError as e:   # its worker or node died on every try
            return self.lost(item, f"lost on the Ray cluster ({type(e).__name__}, {RETRIES} retries); "
                                   "a rerun computes it")


def check_nodes(reads: Sequence[Path], writes: Path) -> None:
    """Every live node reads the files in `reads` (the same sizes as here), writes into `writes` where
    this process sees it, runs the same rq and finds an ffmpeg. ExecutorError naming the first node and
    path that fail. Nodes that join later are not asked."""
    token = secrets.token_hex(8)
    reads = [str(Path(p).absolute()) for p in reads]
    writes = Path(writes).absolute()
    look = ray.remote(num_cpus=0, max_retries=0)(_node_view)
    asked = []
    for i, node in enumerate(_task_nodes()):
        marker = f".rq-node-check-{token}-{i}"
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        asked.append((node, marker, look.options(scheduling_strategy=strategy).remote(reads, str(writes), marker)))
    try:
        for node, marker, ref in asked:
            name = f"Ray node {_node_name(node)}"
            try:
                view = ray.get(ref, timeout=_CHECK_SECONDS)
            except ray.exceptions.GetTimeoutError:
                raise ExecutorError(f"{name} did not answer within {_CHECK_SECONDS} s") from None
            except ray.exceptions.RayError as e:
                raise ExecutorError(f"{name} failed the storage check: {_one_line(e)}") from None
            problem = _problem(view, {p: os.stat(p).st_size for p in reads}, writes, marker)
            if problem:
                raise ExecutorError(f"{name} {problem}")
    finally:
        for _, marker, _ in asked:
            (writes / marker).unlink(missing_ok=True)


def _problem(view: dict, sizes: dict[str, int], writes: Path, marker: str) -> str | None:
    """What is wrong with a node's view (_node_view) as this process sees the same paths, or None."""
    from rq import __version__
    if view["problem"]:
        return view["problem"]
    for path, size in view["sizes"].items():
        if size != sizes[path]:
            return f"sees another file at {path} ({size} bytes, here {sizes[path]}): {_SHARED}"
    try:
        seen = (writes / marker).read_text()
    except OSError:
        seen = None
    if seen != marker:
        return f"wrote into the cache {writes}, and this machine does not see it: {_SHARED}"
    if view["rq"] != __version__:
        return f"runs rq {view['rq']}, this machine rq {__version__}: install the same rq on every node"
    return None


def _node_view(reads: list[str], writes: str, marker: str) -> dict:
    """Run on one node: what it sees of the shared storage, and its rq and ffmpeg."""
    from rq import __version__
    from rq.pipeline.ffmpeg import FfmpegMissing, ffmpeg_location
    view = {"rq": __version__, "sizes": {}, "problem": None}
    for path in reads:
        try:
            with open(path, "rb") as f:
                f.read(1)
            view["sizes"][path] = os.stat(path).st_size
        except OSError as e:
            view["problem"] = f"cannot read {path}: {e.strerror}; {_SHARED}"
            return view
    try:
        (Path(writes) / marker).write_text(marker)
    except OSError as e:
        view["problem"] = f"cannot write into the cache {writes}: {e.strerror}; {_SHARED}"
        return view
    try:
        ffmpeg_location()
    except FfmpegMissing as e:
        view["problem"] = f"has {e}"
    return view


def run_item(fn: Callable[[T], R], item: T) -> R:
    """The Ray task (a worker running it is titled `ray::run_item`)."""
    return fn(item)


def _task_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]


def _node_name(node: dict) -> str:
    """Its address and the start of its id: two nodes on one machine share the address."""
    return f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})"


def _reachable(address: str) -> None:
    """A quick look before ray.init, which retries an unreachable address for many minutes."""
    if address == "auto":   # Ray finds the cluster started on this machine, or says there is none
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--ray-address must be auto or HOST:PORT (the head's GCS port), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=_CHECK_SECONDS / 4).close()
    except OSError as e:
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


def _token_as_ray_start_does() -> None:
    """`ray start` turns token authentication on when a token is at hand ($RAY_AUTH_TOKEN,
    ~/.ray/auth_token); a driver does not, and could then not join such a cluster. Do as ray start does
    (a cluster without authentication accepts a driver that sends a token)."""
    try:
        from ray._private.authentication import authentication_token_setup as auth
    except ImportError:   # a Ray without token authentication
        return
    logging.getLogger(auth.__name__).setLevel(logging.ERROR)
    auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _one_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


_DONE = object()
