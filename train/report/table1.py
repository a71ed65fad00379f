"""The paper's Table 1 from any number of runs: one row per method (as the paper names it), one column
per dataset, each cell the mean test accuracy over the runs' seeds ± the half-width of its 95%
t-interval, with the paper's number beside it.

A run's row comes from its config (method, fusion layers, --rollingq), its dataset from its shards'
manifest (the recipe: kinetics = Kinetics-Sounds, cremad = CREMA-D, mosei = CMU-MOSEI; other shards
by their folder's name), and its accuracy from the run's headline test numbers (RunRecord.clean:
`rq eval`'s when there is one). Runs of one row and dataset are its seeds.
"""
from collections.abc import Sequence
from dataclasses import dataclass
import json
from pathlib import Path

from rq.train.evaluation.significance import spread
from rq.train.report.runs import ReportError, RunRecord

# Table 1 of the paper (accuracy %, slides): row -> (CREMA-D, Kinetics-Sounds, CMU-MOSEI); None = not reported.
PAPER_DATASETS = ("CREMA-D", "Kinetics-Sounds", "CMU-MOSEI")
PAPER_TABLE1: dict[str, tuple[float | None, float | None, float | None]] = {
    "Unimodal audio": (47.6, 53.9, None),
    "Unimodal visual": (36.3, 57.0, 47.1),
    "Unimodal text": (None, None, 60.9),
    "Concat": (49.3, 68.0, 62.8),
    "OGM-GE": (51.2, 68.2, 62.7),
    "PMR": (50.1, 68.2, 63.0),
    "Vanilla MT": (48.8, 67.0, 62.7),
    "Vanilla MT*": (51.5, 69.1, 62.2),
    "MuT": (None, None, 62.4),
    "MBT": (51.5, 72.2, 63.0),
    "JMT": (50.7, 67.7, 62.6),
    "MMML": (52.0, 69.8, 62.8),
    "Vanilla MT + RollingQ": (51.9, 69.3, 63.2),
    "Vanilla MT* + RollingQ": (52.2, 70.1, 62.9),
    "MuT + RollingQ": (None, None, 62.5),
    "MMML + RollingQ": (52.7, 70.7, 63.2),
}
_ROW_OF_METHOD = {"concat": "Concat", "ogm-ge": "OGM-GE", "pmr": "PMR", "mbt": "MBT", "jmt": "JMT", "mmml": "MMML",
                  "mult": "MuT"}
_DATASET_OF_RECIPE = {"cremad": "CREMA-D", "kinetics": "Kinetics-Sounds", "mosei": "CMU-MOSEI"}
_DATASET_OF_PRESET = {"cremad": "CREMA-D", "cremad-official": "CREMA-D", "ks": "Kinetics-Sounds",
                      "ks-official": "Kinetics-Sounds"}
_SMALL_PRESETS = ("tiny",)     # not the paper's model: its runs are not comparable with the paper's numbers
_MANIFEST_LIMIT = 64 << 20     # a manifest is read only below this size (it lists shards, not samples)


def row_name(config: dict) -> str:
    """The paper's name of a run's method: "Vanilla MT*" for mt with 2 fusion layers, "+ RollingQ" ..."""
    method = str(config.get("method", "?"))
    if method in ("mt", "rollingq"):
        layers = config.get("fusion_layers") or 1
        base = {1: "Vanilla MT", 2: "Vanilla MT*"}.get(layers, f"MT ({layers} fusion layers)")
    elif method.startswith("unimodal-"):
        base = "Unimodal " + method.removeprefix("unimodal-")
    else:
        base = _ROW_OF_METHOD.get(method, method)
    return f"{base} + RollingQ" if method == "rollingq" or config.get("rolling") else base


def dataset_name(config: dict) -> str:
    """The dataset a run trained on: its shards' recipe, else its preset's dataset, else the folder's name."""
    shards = str(config.get("shards", ""))
    # a local folder has its manifest inside; URL patterns (a::b) only through --manifest
    recipe = _recipe(Path(config.get("manifest") or Path(shards) / "manifest.json"))
    if recipe in _DATASET_OF_RECIPE:
        return _DATASET_OF_RECIPE[recipe]
    if recipe is None and config.get("preset") in _DATASET_OF_PRESET:
        return _DATASET_OF_PRESET[config["preset"]]
    return Path(shards.split("::")[0]).name or "?"


def _recipe(manifest: Path) -> str | None:
    """The manifest's recipe name; None when there is no readable manifest (never an error: untrusted input)."""
    try:
        if not manifest.is_file() or manifest.stat().st_size > _MANIFEST_LIMIT:
            return None
        recipe = json.loads(manifest.read_text(encoding="utf-8")).get("recipe")
    except (OSError, ValueError, AttributeError):
        return None
    return recipe if isinstance(recipe, str) and len(recipe) <= 64 else None


@dataclass(frozen=True)
class Cell:
    accs: tuple[float, ...]          # test accuracy of each seed, in [0, 1]
    seeds: tuple[int, ...]

    def text(self) -> str:
        """Percent, as the paper writes it: "51.3 ± 1.2 (seeds 0, 1, 2)" (± the half-width of the 95%
        t-interval of the mean), or "51.3 (seed 0)"."""
        s = spread(self.accs)
        half = f" ± {100 * (s.high - s.low) / 2:.1f}" if s.n > 1 else ""
        return f"{100 * s.mean:.1f}{half} (seed{'s' if s.n != 1 else ''} {', '.join(map(str, self.seeds))})"


@dataclass(frozen=True)
class Table1:
    datasets: list[str]
    rows: list[str]
    cells: dict[tuple[str, str], Cell]       # (row, dataset) -> the seeds' accuracies
    notes: list[str]

    def columns(self) -> list[str]:
        cols = ["method"]
        for d in self.datasets:
            cols += [f"{d} (rq)", f"{d} (paper)"] if d in PAPER_DATASETS else [f"{d} (rq)"]
        return cols

    def body(self) -> list[list[str]]:
        out = []
        for row in self.rows:
            line = [row]
            for d in self.datasets:
                cell = self.cells.get((row, d))
                line.append(cell.text() if cell else "–")
                if d in PAPER_DATASETS:
                    paper = PAPER_TABLE1.get(row, (None,) * 3)[PAPER_DATASETS.index(d)]
                    line.append(f"{paper:.1f}" if paper is not None else "–")
            out.append(line)
        return out


def table1(runs: Sequence[RunRecord]) -> Table1:
    """Group the runs into Table 1's cells; runs without a test accuracy are named in the notes."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    notes = []
    for run in runs:
        acc = run.clean()[0].get("acc")
        if acc is None:
            notes.append(f"{run.name}: no test accuracy, left out")
            continue
        groups.setdefault((row_name(run.config), dataset_name(run.config)), []).append(run)
    order = list(PAPER_TABLE1)
    rows = sorted({r for r, _ in groups}, key=lambda r: (order.index(r) if r in order else len(order), r))
    datasets = sorted({d for _, d in groups}, key=lambda d: (PAPER_DATASETS.index(d) if d in PAPER_DATASETS
                                                            else len(PAPER_DATASETS), d))
    cells = {key: Cell(tuple(float(r.clean()[0]["acc"]) for r in group), tuple(r.config.get("seed", 0) for r in group))
             for key, group in groups.items()}
    for (row, d), group in groups.items():
        notes += _mixed_settings(row, d, group)
    for d in datasets:
        presets = sorted({str(r.config.get("preset")) for (_, gd), g in groups.items() if gd == d for r in g})
        if d in PAPER_DATASETS and any(p in _SMALL_PRESETS for p in presets):
            notes.append(f"{d}: runs of the {', '.join(presets)} preset(s); the paper's numbers are for its "
                         "ViT-B model (the ks / cremad presets)")
    return Table1(datasets, rows, cells, notes)


def _mixed_settings(row: str, dataset: str, group: list[RunRecord]) -> list[str]:
    """A note when the runs of one cell differ in more settings than their seed (they are averaged anyway)."""
    try:
        first = group[0].settings
        differing = sorted({k for r in group[1:] for k in first.differences(r.settings)} - {"seed"})
    except ReportError as e:             # a config this rq cannot read: say so, keep the cell
        return [f"{row} on {dataset}: {e}"]
    return [f"{row} on {dataset}: its runs differ in {', '.join(differing)}"] if differing else []


def markdown(table: Table1) -> list[str]:
    """Table 1 as a section of the report page."""
    if not table.rows:
        return []
    cols = table.columns()
    lines = ["## Table 1: accuracy by method and dataset", "",
             "Test accuracy (%) over seeds: mean ± half-width of the 95% t-interval; the paper's number beside. "
             "Rows are named as in the paper (Vanilla MT\\* = 2 fusion layers).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    # "MT*" escaped: a lone asterisk may start emphasis in Markdown
    lines += ["| " + " | ".join(cell.replace("*", "\\*") for cell in line) + " |" for line in table.body()]
    return lines + [""] + [f"- {n}" for n in table.notes] + ([""] if table.notes else [])
