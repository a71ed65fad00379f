"""Ray executor benchmark (issue 13): `rq preprocess kinetics --executor ray` on a local Ray instance
of --workers CPUs against the process pool with the same --workers, on the same generated clips, in
one run; then what Ray costs by itself.

Phases, in order:
  pool full run   `rq preprocess kinetics --workers N` into a fresh output and cache;
  ray full run    the same with `--executor ray` into another fresh output and cache (the local
                  instance's start and stop included: what a user waits for); both outputs are then
                  compared byte for byte;
  ray start/stop  in this process: start a local instance of N CPUs, check its node, stop it;
  no-op items     --noop items through each executor with a function that does nothing: what one
                  item costs the executor itself (pool: pickling through pipes; Ray: a task).
Ray's overhead per clip is read two ways: (ray full - pool full) / clips, which spreads the fixed
start/stop over the clips, and the no-op items' cost per item over the pool's. (Subtracting the
start/stop measured alone from the full run is no measure: that start includes the first worker's
start, which the full run needs anyway.) Wall-clock times only (see `report`).

    python benchmarks/ray_executor.py [--clips 40] [--workers 2] [--noop 400] [--json results.json]"""
import argparse
import json
import os
import sys
import tempfile
import shutil
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RQ, Clock, machine, timed  # noqa: E402
from preprocess import BenchSettings, Phase, make_clips  # noqa: E402  (the sibling benchmark)

from rq.pipeline.console import fail, out as console, summary_table  # noqa: E402
from rq.pipeline.executors import map_unordered  # noqa: E402
from rq.pipeline.executors.ray import RayExecutor, check_nodes, connect, disconnect  # noqa: E402

OUTPUTS = ("manifest.json", "clips.jsonl", "failures.jsonl", "sizes.json")


def run_phases(settings: BenchSettings, noop: int, work: Path) -> dict:
    raw, logs = work / "raw", work / "logs"
    clips = make_clips(settings, raw, logs)
    runs = {}
    for name, extra in (("pool", []), ("ray", ["--executor", "ray"])):
        clock = timed([*RQ, "preprocess", "kinetics", "--raw", raw, "--out", work / name, "--workers",
                       settings.workers, *extra], logs / f"{name}.txt")
        samples = json.loads((work / name / "manifest.json").read_text())["totals"]["samples"]
        runs[name] = Phase(f"{name} full run", clock.wall, clock.cpu, samples)
    same = _outputs(work / "pool") == _outputs(work / "ray")
    if not same:
        fail(f"the Ray executor's output differs from the process pool's ({work / 'pool'} vs {work / 'ray'})", code=1)

    noops = {"pool": _noop(lambda: map_unordered(abs, range(noop), settings.workers, desc="pool no-op", unit="it"))}
    with Clock() as start:
        connected = connect(None, settings.workers)
        check_nodes(clips[:1], work / "ray" / ".cache")
    # the same instance for the no-op items (the executor finds it running and leaves it to us)
    with RayExecutor(settings.workers, None, clips[:1], work / "ray" / ".cache", lambda item, reason: None) as ray:
        ray.map(abs, [0], desc="ray start", unit="it")   # its own node check, before the clock
        noops["ray"] = _noop(lambda: ray.map(abs, range(noop), desc="ray no-op", unit="it"))
    with Clock() as stop:
        disconnect(connected)
    start_stop = Phase("ray start/stop", start.wall + stop.wall, start.cpu + stop.cpu, 0)
    return {"runs": runs, "same_bytes": same, "ray_start_stop": start_stop, "noop": noops}


def _noop(results) -> Phase:
    with Clock() as clock:
        n = sum(1 for _ in results())
    return Phase("no-op", clock.wall, clock.cpu, n)


def _outputs(folder: Path) -> dict[str, bytes]:
    paths = sorted(folder.glob("*.tar")) + sorted(folder.glob("*.wids.json")) + [folder / n for n in OUTPUTS]
    return {p.name: p.read_bytes() for p in paths}


def report(settings: BenchSettings, noop: int, found: dict, host: dict, load: dict) -> dict:
    """Wall-clock figures only: Ray's workers are not the command's children, so the CPU time the
    process pool's benchmark reads (its waited-for children) would miss them."""
    pool, ray, start, noops = found["runs"]["pool"], found["runs"]["ray"], found["ray_start_stop"], found["noop"]
    clips = max(pool.clips, 1)
    figures = {"ray_over_pool_clips_per_s": ray.clips_per_s / pool.clips_per_s,
               "ray_overhead_per_clip_s": (ray.seconds - pool.seconds) / clips,
               "noop_ms_per_item": {name: 1e3 * p.seconds / max(p.clips, 1) for name, p in noops.items()}}
    summary_table(f"Ray executor benchmark: {settings.clips} clips of {settings.seconds:g} s at {settings.size}, "
                  f"{settings.workers} workers", ["phase", "clips", "seconds", "clips/s"],
                  [[p.name, p.clips, round(p.seconds, 2), round(p.clips_per_s, 2)] for p in (pool, ray)]
                  + [[start.name, "", round(start.seconds, 2), ""]])
    summary_table(f"Executor cost per item ({noop} no-op items)", ["executor", "seconds", "ms per item"],
                  [[name, round(p.seconds, 3), round(figures["noop_ms_per_item"][name], 3)] for name, p in noops.items()])
    summary_table("Ray against the process pool", ["measure", "value"], [
        ["ray clips/s / pool clips/s", round(figures["ray_over_pool_clips_per_s"], 3)],
        ["Ray's overhead per clip, its start/stop spread over the clips (ms)",
         round(1e3 * figures["ray_overhead_per_clip_s"], 1)],
        ["Ray's cost per item on top of the pool's, no-op items (ms)",
         round(figures["noop_ms_per_item"]["ray"] - figures["noop_ms_per_item"]["pool"], 3)],
        ["same bytes", "yes" if found["same_bytes"] else "NO"]])
    console.print(f"load average before / after: {load['before']} / {load['after']} "
                  f"({host['nproc']} cores, {host['cpu']})")
    return {"settings": asdict(settings), "noop_items": noop, "machine": host, "load_average": load,
            "phases": [asdict(p) | {"clips_per_s": p.clips_per_s} for p in (pool, ray)],
            "ray_start_stop_s": start.seconds, **figures, "same_bytes": found["same_bytes"],
            "command": " ".join([Path(sys.argv[0]).name if sys.argv else "ray_executor.py", *sys.argv[1:]])}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 2
        fail(f"{self.prog}: {message}")


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(prog="benchmarks/ray_executor.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=BenchSettings.clips, help="Clips to generate (default 40).")
    parser.add_argument("--workers", type=int, default=BenchSettings.workers, help="Workers of both executors "
                        "(Ray: the local instance's CPUs; default 2).")
    parser.add_argument("--seconds", type=float, default=BenchSettings.seconds, help="Clip length (default 10).")
    parser.add_argument("--size", default=BenchSettings.size, help="Frame size WxH (default 640x360).")
    parser.add_argument("--noop", type=int, default=400, help="No-op items per executor (default 400).")
    parser.add_argument("--work", type=Path, help="Folder for clips and outputs, kept afterwards; must not exist "
                        "or be empty [default: a temporary folder, removed at the end].")
    parser.add_argument("--json", type=Path, help="Also write the results here as JSON.")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.workers < 1 or args.seconds <= 0 or args.noop < 1:
        fail("--clips, --workers and --noop must be >= 1, --seconds > 0")
    if args.work is not None and args.work.exists() and (not args.work.is_dir() or any(args.work.iterdir())):
        fail(f"--work {args.work}: exists and is not an empty folder (every phase needs a fresh start)")
    settings = BenchSettings(args.clips, args.workers, args.seconds, args.size)
    work = args.work or Path(tempfile.mkdtemp(prefix="rq-ray-bench-"))
    load = {"before": [round(x, 2) for x in os.getloadavg()]}
    try:
        found = run_phases(settings, args.noop, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    load["after"] = [round(x, 2) for x in os.getloadavg()]
    result = report(settings, args.noop, found, machine(), load)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
