"""`rq sweep`: train a grid of methods x seeds on one dataset with the same loop, then write the report
with the paper's Table 1 (train/report/table1.py).

A method of the grid is a method name with the paper's variants: `mt*` is mt with 2 fusion layers
(Vanilla MT*), `+rollingq` adds RollingQ (`mmml+rollingq`; `rollingq` alone is Vanilla MT + RollingQ).
Runs go to OUT/<method>/seed<N>, as `rq train --seeds` writes them (`*` written as `star`, `+` as
`-`: OUT/mtstar-rollingq/seed0); a rerun skips the runs that finished and resumes the ones that
stopped, so a grid can be run in parts. This module is light (the CLI reads its method list); torch,
matplotlib and scipy are imported when a grid runs.
"""
from collections.abc import Sequence
from dataclasses import replace
import json
from pathlib import Path

from rollingq.config import SEQUENCE_PRESETS
from rq.train.trainer.config import ConfigError, TrainConfig, cli_errors

# Table 1's rows for audio-visual data (MuT is a MOSEI row: add mult, mult+rollingq to run it here).
TABLE1_METHODS = ("unimodal-audio", "unimodal-visual", "concat", "ogm-ge", "pmr", "mt", "mt*", "mbt", "jmt",
                  "mmml", "rollingq", "mt*+rollingq", "mmml+rollingq")
# Table 1's CMU-MOSEI rows (visual + text; MuT is one of them): the default on sequence-feature shards.
MOSEI_TABLE1_METHODS = ("unimodal-visual", "unimodal-text", "concat", "ogm-ge", "pmr", "mt", "mt*", "mult", "mbt",
                        "jmt", "mmml", "rollingq", "mt*+rollingq", "mult+rollingq", "mmml+rollingq")
# What the grid sets for every run; the same `rq train` option given to the sweep would contradict it.
GRID_OPTIONS = ("method", "fusion_layers", "rolling", "seed", "seeds", "out", "resume")


def variant(text: str) -> dict:
    """"mt*+rollingq" -> the train options it stands for: {"method": "mt", "fusion_layers": 2, "rolling": True}."""
    base, plus, extra = text.strip().partition("+")
    if plus and extra != "rollingq":
        raise ConfigError(f"--methods: {text!r}: only +rollingq can be added to a method")
    options = {"method": "mt", "fusion_layers": 2} if base == "mt*" else {"method": base}
    if plus:
        options["rolling"] = True
    return options


def folder_name(text: str) -> str:
    return text.strip().replace("*", "star").replace("+", "-")


def plan(shards: str, preset: str, out: Path, methods: Sequence[str], seeds: str, options: dict) -> list[TrainConfig]:
    """Every run of the grid as a TrainConfig (a bad method or option is a ConfigError before any training)."""
    from rq.train.trainer.seeds import seed_runs
    clash = [k for k in GRID_OPTIONS if options.get(k) is not None and options.get(k) is not False]
    if clash:
        raise ConfigError(f"rq sweep sets {', '.join('--' + k.replace('_', '-') for k in clash)} for every run "
                          "(--methods, --seeds, --out); do not give it as a train option")
    if not methods or len(set(methods)) != len(methods):
        raise ConfigError(f"--methods must list each method once: {', '.join(methods) or 'none given'}")
    return [run for m in methods for run in seed_runs(TrainConfig.from_options(
        shards, preset, **{**options, **variant(m), "out": str(Path(out) / folder_name(m))}), seeds)]


def run_grid(runs: Sequence[TrainConfig]) -> list[Path]:
    """Train each run that has not finished: new ones from scratch, stopped ones resumed."""
    from rq.pipeline.console import out as console
    from rq.train.trainer.fit import fit
    for cfg in runs:
        state = _state(cfg)
        if state == "finished":
            console.print(f"rq sweep: {cfg.out} finished earlier, kept", markup=False)
            continue
        fit(replace(cfg, resume=state == "stopped"))
    return [Path(cfg.out) for cfg in runs]


def _state(cfg: TrainConfig) -> str:
    """new | stopped | finished; a folder holding another run's settings is a ConfigError."""
    from rq.train.report.runs import ReportError, load_run
    run = Path(cfg.out)
    if not (run / "last.pt").is_file() or not (run / "config.json").is_file():
        return "new"
    try:
        saved = TrainConfig.from_dict(json.loads((run / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{run / 'config.json'}: unreadable ({e}); remove the run folder to train it again") from None
    changed = saved.differences(replace(cfg, frames=saved.frames))   # frames: filled in from the shards
    if changed:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ConfigError(f"{run}: holds a run with other settings ({what}); remove it or choose another --out")
    try:
        done = max(line["epoch"] for line in load_run(run).epochs)
    except ReportError:                  # no metrics line yet: it stopped in its first epoch
        return "stopped"
    return "finished" if done >= cfg.epochs - 1 else "stopped"


def cli_sweep(shards: str, preset: str | None, out: Path, methods: str | None, seeds: str, options: dict) -> None:
    """`rq sweep`: usage errors are one line (exit 2), unreadable shards one line (exit 1). `methods`
    None: Table 1's rows for the shards' data (audio-visual, or CMU-MOSEI's)."""
    from rq.pipeline.console import fail, out as console, summary_table
    from rq.train.report.page import write_report
    from rq.train.report.runs import ReportError, load_runs
    from rq.train.report.table1 import table1
    from rq.train.trainer.presets import resolve_preset
    with cli_errors():
        options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
        preset = resolve_preset(shards, preset, options)
        if methods is None:
            methods = ",".join(MOSEI_TABLE1_METHODS if preset in SEQUENCE_PRESETS else TABLE1_METHODS)
        grid = plan(shards, preset, out, [m.strip() for m in methods.split(",") if m.strip()], seeds, options)
        run_dirs = run_grid(grid)
    try:
        report = write_report(run_dirs, Path(out) / "report")
    except ReportError as e:
        fail(str(e), code=1)
    table = table1(load_runs(run_dirs)[0])
    summary_table("rq sweep: Table 1 (test accuracy %, mean ± 95% interval over seeds)", table.columns(),
                  table.body())
    for note in table.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"report: {report.path}", markup=False)
