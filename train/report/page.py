"""`rq report`: runs of `rq train` (+ their `rq eval`) side by side on one Markdown page with the PNGs
it embeds. A run folder holds config.json and metrics.jsonl (one line per epoch); its eval.json is
where `rq eval` writes it by default, `<run>/eval/eval.json`, unless given explicitly. A folder of
`rq train --seeds` runs is one group; every figure is given per group as mean ± std and 95% interval.

Numbers are reported as measured; every comparison of RollingQ with Vanilla MT comes with its test
(report/compare.py) and says "beats" only when its 95% interval excludes zero. Numbers of a best.pt
chosen on the test split are marked "selected on test". Training speed is shown with each run's load
average; a speed comparison between methods comes only from a same-run `rq bench train` (--bench)."""
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rq.pipeline.atomic import write_atomic
from rq.pipeline.console import err, fail, out as console, summary_table
from rq.train.evaluation.significance import Spread
from rq.train.report import plots
from rq.train.report.compare import aggregate, compare, explain_air, noise_end
from rq.train.report.csv_tables import write_csvs
from rq.train.report.runs import Group, ReportError, RunRecord, group_runs, load_runs
from rq.train.report.table1 import Table1, markdown as table1_markdown, table1

REPORT = "report.md"


@dataclass(frozen=True)
class Report:
    path: Path
    columns: list[str]
    rows: list[list]                 # the headline table: one row per figure, one column per group
    verdict: list[str]
    skipped: list[str]
    notes: list[str]                 # the AIR vs attention share explanation, the speed caveat
    csvs: list[Path]                 # the tables as CSV beside report.md (report/csv_tables.py)


def write_report(run_dirs: Sequence[Path], out: Path, eval_paths: Sequence[Path] = (),
                 bench: Path | None = None) -> Report:
    """Load the runs, draw the figures into `out`, write `out/report.md` and its tables as CSV files.
    ReportError when no run is readable."""
    runs, skipped = load_runs(run_dirs, eval_paths)
    if not runs:
        raise ReportError("no readable run: " + "; ".join(skipped))
    bench_result = _bench(bench) if bench else None
    groups = group_runs(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "accuracy": plots.accuracy_per_epoch(runs, out / "accuracy.png"),
        "air": plots.air_per_epoch(runs, out / "air.png"),
        "attention": plots.attention_per_epoch(runs, out / "attention.png"),
        "noise": plots.noise_sweep(runs, out / "noise.png"),
        "pearson": plots.pearson(runs, out / "pearson.png"),
        "speed": plots.speed_per_epoch(runs, out / "speed.png"),
    }
    columns, rows = headline(groups)
    verdict = compare(groups)
    notes = [n for n in (explain_air(groups), _speed_note(bench_result)) if n]
    table = table1(runs)
    write_atomic(out / REPORT, _markdown(runs, groups, figures, columns, rows, verdict, notes, skipped,
                                         bench_result, table).encode())
    return Report(out / REPORT, columns, rows, verdict, skipped, notes, write_csvs(out, runs, groups, table))


def cli_report(run_dirs: list[Path], out: Path, eval_paths: list[Path], bench: Path | None = None) -> None:
    """`rq report`: usage errors exit 2; an unreadable run is one line on stderr and left out."""
    if not run_dirs:
        fail("rq report needs at least one RUN_DIR (a folder written by rq train)")
    if len(eval_paths) > len(run_dirs):
        fail(f"{len(eval_paths)} --eval files for {len(run_dirs)} runs: give at most one per run, in run order")
    try:
        report = write_report(run_dirs, out, eval_paths, bench)
    except ReportError as e:
        fail(str(e), code=1)
    show(report)


def show(report: Report) -> None:
    for line in report.skipped:
        err.print(f"skipped run: {line}", markup=False)
    summary_table("rq report (test split; groups of seeds: mean ± std [95% interval])", report.columns, report.rows)
    for sentence in report.verdict + report.notes:
        console.print(sentence, markup=False)
    console.print(f"report: {report.path}", markup=False)


def _bench(path: Path) -> dict:
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReportError(f"--bench {path}: unreadable ({e})") from None
    if not isinstance(result, dict) or not isinstance(result.get("methods"), dict):
        raise ReportError(f"--bench {path}: not the --json of rq bench train")
    return result


# ---- the numbers ----

_FIGURES = (("acc", "fused"), ("acc_audio", "audio probe"), ("acc_visual", "visual probe"), ("acc_noisy", None),
            ("drop", None), ("r", "Pearson r (attention vs noisy)"), ("air", "AIR"),
            ("share_audio", "attention on audio"))


def headline(groups: Sequence[Group]) -> tuple[list[str], list[list]]:
    """One row per figure, one column per group of seeds; cells mean ± std [95% interval] (one seed: the
    value). A group whose numbers were selected on the test split says so in its column name."""
    _, level_name = _noise_label(groups)
    columns = ["figure"] + [f"{g.name} ({g.method}, {len(g.runs)} seed{'s' * (len(g.runs) > 1)})"
                            + (", selected on test" if any(r.on_test for r in g.runs) else "") for g in groups]
    stats = [aggregate(g) for g in groups]
    rows = []
    for name, label in _FIGURES:
        label = label or (f"fused, {level_name}" if name == "acc_noisy" else f"drop under {level_name}")
        if any(s[name].n for s in stats):
            rows.append([label, *(_spread(s[name]) for s in stats)])
    rows.append(["rotations", *(" / ".join(str(len(r.rotations())) for r in g.runs) for g in groups)])
    rows.append(["best.pt selected on", *(_selected(g) for g in groups)])
    return columns, rows


def _noise_label(groups: Sequence[Group]) -> tuple[str | None, str]:
    for g in groups:
        for r in g.runs:
            modality, level, _ = noise_end(r)
            if modality:
                return modality, f"{modality} noise {level:g}"
    return None, "noise"


def _selected(g: Group) -> str:
    on = {r.selected_on for r in g.runs}
    names = {"val": "val", "test": "TEST (optimistic)", "last": "none (last epoch)"}
    return ", ".join(names[o] for o in sorted(on))


def _spread(s: Spread) -> str:
    if not s.n or not math.isfinite(s.mean):
        return "–"
    if s.n == 1:
        return f"{s.mean:.3f}"
    return f"{s.mean:.3f} ± {s.std:.3f} [{s.low:.3f}, {s.high:.3f}]"


def _num(v) -> float | None:
    return None if v is None else round(float(v), 3)


def _speed_note(bench: dict | None) -> str | None:
    if bench is None:
        return None
    methods = bench["methods"]
    rows = ", ".join(f"{m} {r.get('step_ms')} ms/step" for m, r in methods.items())
    overhead = bench.get("rollingq_overhead")
    load = bench.get("load_avg")
    return (f"Same-run training benchmark (rq bench train --preset {bench.get('preset')}, {bench.get('device_name')}"
            + (f", load average {load[0]:.2f}" if load else "") + f"): {rows}"
            + (f"; RollingQ's per-step overhead {100 * overhead:+.1f}%." if overhead is not None else "."))


# ---- the page ----

def _cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v).replace("|", "\\|")


def _table(columns: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows), ""]


def _markdown(runs: Sequence[RunRecord], groups: Sequence[Group], figures: dict[str, Path | None],
              columns: list[str], rows: list[list], verdict: list[str], notes: list[str], skipped: list[str],
              bench: dict | None, table: Table1) -> str:
    lines = ["# rq report: " + " vs ".join(f"`{g.name}`" for g in groups), "", *(f"- {v}" for v in verdict), ""]
    lines += [n for note in notes[:1] for n in (note, "")]   # the AIR explanation, right under the verdict
    if skipped:
        lines += ["Runs left out (unreadable):", "", *(f"- {s}" for s in skipped), ""]
    lines += ["## Summary (test split)", "", "Per group of seeds: mean ± std [95% t interval of the mean]; one seed: "
              "its value. Drop = clean fused accuracy minus fused accuracy under the noise.", ""]
    lines += _table(columns, rows)
    lines += table1_markdown(table)
    lines += ["## Runs", "", "best.pt is the epoch of the highest accuracy on the split named (val: carved out of "
              "train by rq preprocess; TEST: the released code's protocol, optimistic); test accuracy is given "
              "at that epoch and at the last one.", ""]
    lines += _table(
        ["run", "group", "method", "preset", "seed", "epochs", "best.pt", "test acc at best.pt",
         "test acc at last epoch", "evaluated"],
        [[r.name, g.name, r.method, r.config.get("preset"), r.seed, len(r.epochs), _best(r),
          _selected_mark(r, sel["test_acc_at_best"]), _num(sel["test_acc_at_last"]),
          str(r.eval_path) if r.eval_path else "not evaluated"]
         for g in groups for r in g.runs for sel in [r.selection()]])
    lines += ["## Accuracy (test split)", "",
              "Fused = the classifier on the fused CLS token; the probes are linear classifiers on each "
              "encoder's detached CLS token, i.e. how much each encoder learned on its own.", ""]
    lines += _table(["run", "fused", "audio probe", "visual probe", "macro-F1", "source"],
                    [[r.name, *(_num(r.clean()[0].get(k)) for k in ("acc", "acc_audio", "acc_visual", "macro_f1")),
                      r.clean()[1] + (" — selected on test" if r.on_test else "")] for r in runs])
    lines += ["![test accuracy per epoch](accuracy.png)", ""]
    lines += ["## Attention imbalance and rotations", "",
              "AIR = E[cos(q, k̂_a) − cos(q, k̂_v)] of the fused CLS query; > 0 means the query leans to audio. "
              "Stars mark the epochs at whose end RollingQ rotated the query.", ""]
    lines += _table(["run", "epoch", "AIR (train)", "rotated", "angle (deg)"],
                    [[r.name, e["epoch"], _num(e.get("air")), "yes" if e.get("rotated") else "no",
                      _num(e.get("angle_deg"))]
                     for r in runs for line in r.epochs for e in line.get("rollingq") or []
                     if e.get("rotated") or line is r.epochs[-1]])
    lines += ["![AIR per epoch](air.png)", "", "![attention share per epoch](attention.png)", ""]
    lines += _noise_section(runs, figures)
    lines += _speed_section(runs, bench)
    return "\n".join(lines)


def _speed_section(runs: Sequence[RunRecord], bench: dict | None) -> list[str]:
    lines = ["## Training speed", "",
             "Each run's speed under the machine load it met (load average over its epochs: 1-minute value at "
             "each epoch's end). Runs made at different times met different loads: these are not a comparison "
             "of methods. " + ("The same-run benchmark below is." if bench else
                               "For one, time both methods in the same run: `rq bench train`, then "
                               "`rq report --bench FILE`."), ""]
    lines += _table(["run", "mean samples/s", "train time (s)", "data wait (share of step time)", "load average"],
                    [[r.name, _mean([(line.get("train") or {}).get("samples_per_s") for line in r.epochs]),
                      round(sum(line.get("epoch_s") or 0 for line in r.epochs), 1),
                      _mean([(line.get("train") or {}).get("data_wait_frac") for line in r.epochs]), _load(r)]
                     for r in runs])
    if bench:
        lines += [_speed_note(bench), ""]
    return lines + ["![training speed](speed.png)", ""]


def _load(run: RunRecord) -> str:
    loads = [line["load_avg"][0] for line in run.epochs if isinstance(line.get("load_avg"), list) and line["load_avg"]]
    if not loads:
        return "not recorded"
    return f"{sum(loads) / len(loads):.2f} (range {min(loads):.2f}–{max(loads):.2f})"


def _noise_section(runs: Sequence[RunRecord], figures: dict[str, Path | None]) -> list[str]:
    lines = ["## Noise robustness (paper Tables 2 and 3)", ""]
    swept = [r for r in runs if (r.evaluation or {}).get("noise")]
    if not swept:
        return lines + ["No run has a noise sweep (`rq eval --noise-modality audio ...`).", ""]
    sweep = swept[0].evaluation["noise"]
    lines += [f"Noise: {sweep.get('definition', '')}, on {sweep['modality']}. A robustness claim compares how "
              "much accuracy each model loses, not the noisy levels: a model ahead on clean data stays ahead "
              "under noise without being any more robust.", ""]
    lines += _table(["run", "measure", *(f"level {lv:g}" for lv in sweep["levels"])],
                    [[r.name, label, *(_num(v) for v in r.evaluation["noise"][key])]
                     for r in swept for label, key in (("fused acc", "acc"), (f"attention on {sweep['modality']}",
                                                                             f"share_{sweep['modality']}"))])
    lines += ["![accuracy and attention vs noise](noise.png)", ""]
    tested = [r for r in runs if (r.evaluation or {}).get("pearson")]
    if tested:
        p = tested[0].evaluation["pearson"]
        lines += [f"Pearson test: exactly round({p['fraction']:g} × N) of the N test samples get {p['modality']} "
                  f"noise at level {p['level']:g}; {p.get('convention', '')}. Both variants: r of the share on "
                  "the other modality, and of the share on the noisy one.", ""]
        lines += _table(["run", "noisy / samples", "r", "p", "r (share on the noisy modality)", "p", "acc"],
                        [[r.name, f"{q['noisy_samples']} / {q['samples']}", _num(q.get("r")), _sci(q.get("p")),
                          _num(q.get("r_perturbed_share")), _sci(q.get("p_perturbed_share")), _num(q.get("acc"))]
                         for r in tested for q in [r.evaluation["pearson"]]])
        lines += ["![Pearson r per run](pearson.png)", ""]
    return lines


def _best(run: RunRecord) -> str:
    sel = run.selection()
    if sel["on"] == "last":
        return f"last epoch ({sel['last_epoch']}): no val split"
    at = f"epoch {sel['best_epoch']}"
    return f"{at}, val acc {sel['val_acc_at_best']:.3f}" if sel["on"] == "val" and sel["val_acc_at_best"] is not None \
        else f"{at}, selected on TEST"


def _selected_mark(run: RunRecord, value) -> str:
    text = "–" if value is None else f"{value:.3f}"
    return text + (" (selected on test)" if run.selected_on == "test" and value is not None else "")


def _mean(values: Sequence) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 3) if values else None


def _sci(v) -> str:
    return "–" if v is None else f"{v:.2g}"
