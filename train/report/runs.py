"""Run folders of `rq train` as records: config.json, metrics.jsonl (one line per epoch) and, when
`rq eval` wrote them, `<run>/eval/eval.json` and its per_sample.json (or an eval.json given
explicitly). A folder of seed runs (`rq train --seeds`: OUT/seed0, OUT/seed1, ...) is one group; runs
given separately that differ only in their seed are grouped too."""
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from rq.train.trainer.config import ConfigError, TrainConfig
from rq.train.trainer.selection import selection_summary


class ReportError(Exception):
    """A run folder that cannot be read: one line naming the file and the reason."""


@dataclass(frozen=True)
class RunRecord:
    name: str
    path: Path
    config: dict
    epochs: list[dict]               # metrics.jsonl, one dict per epoch
    evaluation: dict | None          # eval.json, when the run was evaluated
    eval_path: Path | None
    samples: dict | None = None      # per_sample.json beside eval.json, when rq eval wrote one

    @property
    def method(self) -> str:
        return self.config.get("method", "?")

    @property
    def settings(self) -> TrainConfig:
        """The run's TrainConfig, read as every other reader of a run reads it (any rq version)."""
        try:
            return TrainConfig.from_dict(self.config)
        except ConfigError as e:
            raise ReportError(f"{self.path / 'config.json'}: {e}") from None

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def selected_on(self) -> str:
        """val | test | last: how the run chose best.pt. Runs of rq before the val split chose on test."""
        return ((self.epochs[-1].get("selection") or {}).get("on")) or "test"

    def selection(self) -> dict:
        """The selected epoch and test accuracy there and at the last epoch (selection.selection_summary)."""
        return selection_summary(self.epochs, self.selected_on)

    def rotations(self) -> list[tuple[int, float | None]]:
        """(epoch, AIR that triggered it) of every RollingQ rotation, any fusion layer."""
        return [(e["epoch"], e.get("air")) for line in self.epochs for e in line.get("rollingq") or []
                if e.get("rotated")]

    def clean(self) -> tuple[dict, str]:
        """The headline test metrics and where they come from: the evaluated checkpoint, else the
        selected epoch's test pass."""
        if self.evaluation and self.evaluation.get("clean"):
            ckpt = Path(self.evaluation.get("ckpt", "?")).name
            return self.evaluation["clean"], f"rq eval of {ckpt}" + (
                f" (selected on {self.selected_on})" if ckpt == "best.pt" else "")
        chosen = self.selection()["best_epoch"]
        line = next((line for line in self.epochs if line["epoch"] == chosen), self.epochs[-1])
        return line.get("test") or {}, f"epoch {line['epoch']} test pass (selected on {self.selected_on})"

    @property
    def on_test(self) -> bool:
        """Its headline numbers were selected on the test split (the released code's protocol): best.pt
        evaluated, or the selected epoch's test pass, of a run that selected on test."""
        if self.selected_on != "test":
            return False
        if self.evaluation and self.evaluation.get("clean"):
            return Path(self.evaluation.get("ckpt", "?")).name == "best.pt"
        return True


@dataclass(frozen=True)
class Group:
    """The runs of one method and config, one per seed."""
    name: str
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.runs[0].method

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]


def load_run(path: Path, eval_path: Path | None = None) -> RunRecord:
    """Read one run folder; ReportError when its config or metrics are missing or malformed."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: no such run folder")
    config = _json(path / "config.json")
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise ReportError(f"{metrics}: missing (not a folder written by rq train?)")
    epochs = []
    for number, text in enumerate(metrics.read_text(encoding="utf-8").splitlines(), 1):
        if text.strip():
            try:
                line = json.loads(text)
            except ValueError as e:
                raise ReportError(f"{metrics}:{number}: not JSON ({e})") from None
            if not isinstance(line, dict) or "epoch" not in line:
                raise ReportError(f"{metrics}:{number}: not a metrics line (no 'epoch')")
            epochs.append(line)
    if not epochs:
        raise ReportError(f"{metrics}: no epoch finished yet")
    explicit = eval_path is not None
    eval_path = Path(eval_path) if explicit else path / "eval" / "eval.json"
    evaluation = _json(eval_path) if explicit or eval_path.is_file() else None
    samples = None
    if evaluation and isinstance(evaluation.get("per_sample"), str):
        side = eval_path.parent / Path(evaluation["per_sample"]).name   # a name beside eval.json, never a path
        samples = _json(side) if side.is_file() else None
    return RunRecord(path.name, path, config, epochs, evaluation, eval_path if evaluation else None, samples)


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: missing") from None
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: unreadable ({e})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object")
    return data


def _run_folders(path: Path) -> list[Path]:
    """The run itself, or the seed runs inside a folder of `rq train --seeds`."""
    path = Path(path)
    if path.is_dir() and not (path / "config.json").exists():
        inner = sorted(p for p in path.iterdir() if (p / "config.json").is_file())
        if inner:
            return inner
    return [path]


def load_runs(run_dirs: Sequence[Path], eval_paths: Sequence[Path] = ()) -> tuple[list[RunRecord], list[str]]:
    """The readable runs (names made unique) and one line per run that was skipped."""
    runs, skipped = [], []
    for i, run_dir in enumerate(run_dirs):
        folders = _run_folders(run_dir)
        for folder in folders:
            explicit = eval_paths[i] if i < len(eval_paths) and len(folders) == 1 else None
            try:
                runs.append(load_run(folder, explicit))
            except ReportError as e:
                skipped.append(str(e))
    names = [r.name for r in runs]
    return [r if names.count(r.name) == 1 else _renamed(r) for r in runs], skipped


def group_runs(runs: Sequence[RunRecord]) -> list[Group]:
    """Runs that differ only in seed (and where or how they ran) form a group, in first-seen order."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        settings = run.settings
        same = {f.name for f in fields(settings) if f.metadata.get("runtime")} | {"seed"}
        key = json.dumps({k: v for k, v in settings.to_dict().items() if k not in same}, sort_keys=True)
        groups.setdefault(key, []).append(run)
    named = []
    for members in groups.values():
        parents = {r.path.parent for r in members}
        name = members[0].path.parent.name if len(members) > 1 and len(parents) == 1 else members[0].name
        named.append(Group(name, sorted(members, key=lambda r: r.seed)))
    return named


def _renamed(run: RunRecord) -> RunRecord:
    return RunRecord(f"{run.path.parent.name}/{run.name}", run.path, run.config, run.epochs, run.evaluation,
                     run.eval_path, run.samples)
