"""`rq doctor`: what rq will run with (ffmpeg, Python, torch, CUDA, cores, Ray and, given an address, the
Ray cluster's nodes), as plain `name: value` lines (never truncated, easy to paste into a bug report)."""
import importlib.metadata
import os
import platform

from rq.pipeline.console import out
from rq.pipeline.errors import ExecutorError
from rq.pipeline.executors import RAY_INSTALL
from rq.pipeline.ffmpeg import FfmpegMissing, ffmpeg_location, ffmpeg_version


def doctor(ray_address: str | None = None) -> None:
    """Print the environment; exit 1 when no ffmpeg can be found (nothing else would work), or when the
    Ray cluster at `ray_address` cannot be joined."""
    rows: list[tuple[str, str]] = []
    problems = []
    try:
        binary, source = ffmpeg_location()
        version = ffmpeg_version(binary).split(" Copyright")[0]
        rows += [("ffmpeg", binary), ("ffmpeg from", source), ("ffmpeg version", version)]
    except FfmpegMissing as e:
        problems.append(str(e))
        rows.append(("ffmpeg", f"MISSING: {e}"))
    rows.append(("python", f"{platform.python_version()} ({platform.python_implementation()}, {platform.machine()})"))
    import torch
    rows.append(("torch", torch.__version__))
    cuda = torch.cuda.is_available()
    rows.append(("CUDA available", "yes" if cuda else "no"))
    rows += [(f"cuda:{i}", torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count() if cuda else 0)]
    rows.append(("CPU cores", f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable by this process)"))
    try:
        rows.append(("ray", importlib.metadata.version("ray")))
    except importlib.metadata.PackageNotFoundError:
        rows.append(("ray", f"not installed (--executor ray needs it: {RAY_INSTALL})"))
        if ray_address is not None:
            problems.append("--ray-address needs Ray")
    else:
        if ray_address is not None:
            rows += _cluster_rows(ray_address, problems)
    for name, value in rows:
        out.print(f"{name + ':':<16}{value}", markup=False)
    if problems:
        raise SystemExit(1)


def _cluster_rows(address: str, problems: list[str]) -> list[tuple[str, str]]:
    """The nodes of the cluster at `address` and their CPUs (joined for the moment, then left)."""
    from rq.pipeline.executors.ray import cluster_nodes, connect, disconnect
    try:
        connected = connect(address)
    except ExecutorError as e:
        problems.append(str(e))
        return [("ray cluster", f"UNREACHABLE: {e}")]
    try:
        nodes = cluster_nodes()
    finally:
        disconnect(connected)
    rows = [("ray cluster", f"{address}: {len(nodes)} node(s), {sum(cpus for _, cpus in nodes)} CPUs")]
    return rows + [("ray node", f"{name}: {cpus} CPUs") for name, cpus in nodes]
