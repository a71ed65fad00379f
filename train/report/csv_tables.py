"""`rq report`'s tables as CSV files beside report.md, for a spreadsheet or pandas: one file per table,
a header row, plain numbers (no Markdown, no "±", no rounding; an empty cell has no value). Accuracies,
shares and AIR are fractions as in metrics.jsonl and eval.json, except in table1.csv, which is in
percent like the paper's Table 1 it stands beside.

summary.csv      the headline table, long: one row per (group of seeds, figure): n, mean, std, 95% interval
runs.csv         one row per run: how best.pt was chosen, its test figures, rotations, speed
comparisons.csv  every test the report states: RollingQ − Vanilla MT, interval, p, the test's name
table1.csv       one row per (method, dataset) cell of Table 1: the seeds' mean and interval, the paper's number
"""
import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from rq.pipeline.atomic import write_atomic
from rq.train.evaluation.significance import spread
from rq.train.report.compare import aggregate, comparisons, figures
from rq.train.report.runs import Group, RunRecord
from rq.train.report.table1 import PAPER_DATASETS, PAPER_TABLE1, Table1

_RUN_FIGURES = ("acc", "acc_audio", "acc_visual", "air", "share_audio", "share_visual", "acc_noisy", "drop", "r")


def write_csvs(out: Path, runs: Sequence[RunRecord], groups: Sequence[Group], table: Table1) -> list[Path]:
    """Write the four tables into `out` (each atomically, as report.md); returns their paths."""
    tables = {"summary.csv": _summary(groups), "runs.csv": _runs(groups), "comparisons.csv": _comparisons(groups),
              "table1.csv": _table1(table)}
    paths = []
    for name, (header, rows) in tables.items():
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows([_plain(v) for v in row] for row in rows)
        paths.append(Path(out) / name)
        write_atomic(paths[-1], text.getvalue().encode())
    return paths


def _plain(value):
    """A cell: numbers as Python writes them (full precision), None and NaN as empty."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def _summary(groups: Sequence[Group]) -> tuple[list[str], list[list]]:
    header = ["group", "method", "seeds", "selected_on", "figure", "n", "mean", "std", "ci95_low", "ci95_high"]
    rows = []
    for g in groups:
        selected = " ".join(sorted({r.selected_on for r in g.runs}))
        seeds = " ".join(map(str, g.seeds))
        rows += [[g.name, g.method, seeds, selected, name, s.n, s.mean, s.std, s.low, s.high]
                 for name, s in aggregate(g).items() if s.n]
    return header, rows


def _runs(groups: Sequence[Group]) -> tuple[list[str], list[list]]:
    header = ["run", "group", "method", "preset", "seed", "epochs", "selected_on", "best_epoch", "val_acc_at_best",
              "test_acc_at_best", "test_acc_at_last", *_RUN_FIGURES, "macro_f1", "rotations", "figures_from",
              "samples_per_s", "train_s", "eval_json"]
    rows = []
    for g in groups:
        for r in g.runs:
            sel, f, (clean, source) = r.selection(), figures(r), r.clean()
            speeds = [(line.get("train") or {}).get("samples_per_s") for line in r.epochs]
            speeds = [v for v in speeds if v is not None]
            rows.append([r.name, g.name, r.method, r.config.get("preset"), r.seed, len(r.epochs), r.selected_on,
                         sel.get("best_epoch"), sel.get("val_acc_at_best"), sel.get("test_acc_at_best"),
                         sel.get("test_acc_at_last"), *(f[name] for name in _RUN_FIGURES), clean.get("macro_f1"),
                         len(r.rotations()), source, sum(speeds) / len(speeds) if speeds else None,
                         sum(line.get("epoch_s") or 0 for line in r.epochs), r.eval_path])
    return header, rows


def _comparisons(groups: Sequence[Group]) -> tuple[list[str], list[list]]:
    header = ["figure", "what", "a", "b", "a_value", "b_value", "diff", "ci95_low", "ci95_high", "p", "significant",
              "test"]
    a = next((g.name for g in groups if g.method == "rollingq"), None)
    b = next((g.name for g in groups if g.method == "mt"), None)
    return header, [[name, c.what, a, b, c.a, c.b, c.diff, c.low, c.high, c.p, int(c.significant), c.test]
                    for name, c in comparisons(groups)]


def _table1(table: Table1) -> tuple[list[str], list[list]]:
    header = ["method", "dataset", "seeds", "n", "acc_pct", "ci95_half_pct", "ci95_low_pct", "ci95_high_pct",
              "paper_acc_pct"]
    rows = []
    for row, dataset in ((r, d) for r in table.rows for d in table.datasets if (r, d) in table.cells):
        cell = table.cells[row, dataset]
        s = spread(cell.accs)
        paper = PAPER_TABLE1.get(row, (None,) * 3)[PAPER_DATASETS.index(dataset)] if dataset in PAPER_DATASETS \
            else None
        half = 100 * (s.high - s.low) / 2 if s.n > 1 else None
        rows.append([row, dataset, " ".join(map(str, cell.seeds)), s.n, 100 * s.mean, half,
                     100 * s.low if s.n > 1 else None, 100 * s.high if s.n > 1 else None, paper])
    return header, rows
