"""Per-clip overhead benchmark (issue 14): `rq preprocess kinetics` on many short, tiny clips (2 s at
96x64 by default, where starting processes and Python's per-clip work cost more than decoding),
against an earlier rq (`--baseline`, e.g. a `git worktree` of main before the change), in one run.

Phases, the two versions taking turns for `--rounds` rounds (which goes first alternates; the
speed-up is the median of the rounds' ratios, so a burst of other jobs' load hits one round, not the
result; medians of the times are reported beside it):
  full run          `rq preprocess kinetics --workers N` into a fresh output + cache;
  no-change rerun   the same command again;
  1-clip rerun      the no-change rerun of a copy of the dataset holding one clip: what a rerun
                    costs whatever the number of clips (interpreter, imports, CLI, manifest, tables).
The rerun's per-clip cost beyond start-up is (no-change rerun - 1-clip rerun) / (clips - 1).

    git worktree add /tmp/rq-start <commit> && python benchmarks/overhead.py --baseline /tmp/rq-start"""
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RQ, Parser, check_work, command_line, load_average, machine, timed, write_json  # noqa: E402
from rq.pipeline.console import err, fail, out as console, summary_table  # noqa: E402


@dataclass(frozen=True)
class Settings:
    clips: int = 500
    workers: int = 2
    seconds: float = 2.0
    size: str = "96x64"
    rounds: int = 3


def shim(baseline: Path, work: Path) -> dict:
    """The environment that runs the baseline checkout as `rq`: a PYTHONPATH folder whose `rq` and
    `rollingq` point into it (the repository root is the `rq` package)."""
    folder = work / "baseline-path"
    folder.mkdir()
    (folder / "rq").symlink_to(baseline.resolve(), target_is_directory=True)
    (folder / "rollingq").symlink_to((baseline / "rollingq").resolve(), target_is_directory=True)
    return os.environ | {"PYTHONPATH": str(folder)}


def one_clip_copy(raw: Path, single: Path) -> None:
    """The dataset cut to its first train clip (kinetics layout: the clip and its annotation row)."""
    clip = sorted((raw / "train").glob("*.mp4"))[0]
    (single / "train").mkdir(parents=True)
    shutil.copy2(clip, single / "train" / clip.name)
    (single / "annotations").mkdir()
    youtube_id = clip.stem[:-14]   # {youtube_id}_{start:06d}_{end:06d}
    for csv in (raw / "annotations").glob("*.csv"):
        lines = csv.read_text().splitlines()
        keep = [lines[0]] + [line for line in lines[1:] if f",{youtube_id}," in line]
        (single / "annotations" / csv.name).write_text("\n".join(keep) + "\n")


def run(settings: Settings, baseline: Path, work: Path) -> dict:
    raw, single, logs = work / "raw", work / "single", work / "logs"
    logs.mkdir(parents=True)
    err.print(f"generating {settings.clips} clips of {settings.seconds:g} s at {settings.size} (not timed)")
    timed([*RQ, "synth", "--preset", "kinetics", "--out", raw, "--clips", settings.clips, "--classes",
           min(4, settings.clips), "--seconds", settings.seconds, "--size", settings.size,
           "--workers", settings.workers], logs / "synth.txt")
    one_clip_copy(raw, single)
    versions = {"baseline": shim(baseline, work), "rq": None}
    phases = ("full", "rerun", "single")
    times: dict[str, dict[str, list]] = {v: {f"{p}{cpu}": [] for p in phases for cpu in ("", "_cpu")}
                                         for v in versions}
    for r in range(settings.rounds):
        for version, env in (versions.items() if r % 2 == 0 else reversed(versions.items())):
            out, out1 = work / f"{version}-{r}", work / f"{version}-{r}-single"

            def preprocess(data: Path, dest: Path, phase: str):
                return timed([*RQ, "preprocess", "kinetics", "--raw", data, "--out", dest, "--workers",
                              settings.workers], logs / f"{version}-{r}-{phase}.txt", env)
            preprocess(single, out1, "single-full")
            for phase, clock in (("full", preprocess(raw, out, "full")), ("rerun", preprocess(raw, out, "rerun")),
                                 ("single", preprocess(single, out1, "single"))):
                times[version][phase].append(clock.wall)
                times[version][f"{phase}_cpu"].append(clock.cpu)
    return {version: {phase: statistics.median(t) for phase, t in runs.items()} | {"rounds": runs}
            for version, runs in times.items()}


def report(settings: Settings, times: dict, host: dict, load: dict, baseline: Path) -> dict:
    n = settings.clips
    rows, derived = [], {}
    for version, t in times.items():
        per_clip_ms = 1e3 * (t["rerun"] - t["single"]) / max(n - 1, 1)
        per_clip_cpu_ms = 1e3 * (t["rerun_cpu"] - t["single_cpu"]) / max(n - 1, 1)
        derived[version] = {"clips_per_s": n / t["full"], "rerun_ms_per_clip_beyond_startup": per_clip_ms,
                            "rerun_cpu_ms_per_clip_beyond_startup": per_clip_cpu_ms}
        rows.append([version, round(t["full"], 2), round(n / t["full"], 1), round(t["full_cpu"], 1),
                     round(t["rerun"], 2), round(t["single"], 2), f"{per_clip_ms:.3f} / {per_clip_cpu_ms:.3f}"])
    speedup, cpu_speedup = (statistics.median(b / o for b, o in zip(times["baseline"]["rounds"][phase],
                                                                    times["rq"]["rounds"][phase]))
                            for phase in ("full", "full_cpu"))
    summary_table(f"Per-clip overhead: {n} clips of {settings.seconds:g} s at {settings.size}, {settings.workers} "
                  f"workers, medians of {settings.rounds} rounds (baseline: {baseline})",
                  ["version", "full run s", "clips/s", "full run CPU s", "rerun s", "1-clip rerun s",
                   "rerun ms/clip beyond start-up (wall / CPU)"], rows)
    rerun_ms = derived["rq"]["rerun_ms_per_clip_beyond_startup"]
    rerun_cpu_ms = derived["rq"]["rerun_cpu_ms_per_clip_beyond_startup"]
    summary_table("Targets (issue 14), judged on wall-clock times", ["measure", "value", "target", "result",
                                                                     "on CPU times"], [
        ["full run clips/s, rq / baseline (median of rounds)", round(speedup, 3), ">= 1.5", "met" if speedup >= 1.5 else "NOT MET",
         round(cpu_speedup, 3)],
        ["no-change rerun ms/clip beyond start-up", round(rerun_ms, 3), "<= 0.5",
         "met" if rerun_ms <= 0.5 else "NOT MET", round(rerun_cpu_ms, 3)]])
    console.print(f"load average before / after: {load['before']} / {load['after']} "
                  f"({host['nproc']} cores, {host['cpu']})")
    return {"settings": asdict(settings), "baseline": str(baseline), "machine": host, "load_average": load,
            "times": times, "derived": derived, "speedup": speedup, "cpu_speedup": cpu_speedup,
            "command": command_line()}


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog="benchmarks/overhead.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="A checkout of the rq to compare with (its root, e.g. a git worktree).")
    parser.add_argument("--clips", type=int, default=Settings.clips, help="Clips to generate (default 500).")
    parser.add_argument("--workers", type=int, default=Settings.workers, help="Workers (default 2).")
    parser.add_argument("--seconds", type=float, default=Settings.seconds, help="Clip length (default 2).")
    parser.add_argument("--size", default=Settings.size, help="Frame size WxH (default 96x64).")
    parser.add_argument("--rounds", type=int, default=Settings.rounds, help="Rounds (default 3).")
    parser.add_argument("--work", type=Path, help="Folder for clips and outputs, kept afterwards; must not exist "
                        "or be empty [default: a temporary folder, removed at the end].")
    parser.add_argument("--json", type=Path, help="Also write the results here as JSON.")
    args = parser.parse_args(argv)
    if args.clips < 2 or args.workers < 1 or args.seconds <= 0 or args.rounds < 1:
        fail("--clips must be >= 2, --workers and --rounds >= 1, --seconds > 0")
    if not (args.baseline / "pipeline" / "preprocess.py").is_file():
        fail(f"--baseline {args.baseline}: not an rq checkout (no pipeline/preprocess.py)")
    check_work(args.work)
    settings = Settings(args.clips, args.workers, args.seconds, args.size, args.rounds)
    work = args.work or Path(tempfile.mkdtemp(prefix="rq-overhead-"))
    load = {"before": load_average()}
    try:
        times = run(settings, args.baseline, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    load["after"] = load_average()
    write_json(args.json, report(settings, times, machine(), load, args.baseline))


if __name__ == "__main__":
    main()
