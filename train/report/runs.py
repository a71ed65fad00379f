"""Run folders of `rq train` as records: config.json, metrics.jsonl (one line per epoch) and, when
`rq eval` wrote it, `<run>/eval/eval.json` (or an eval.json given explicitly)."""
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rq.train.trainer.config import ConfigError, TrainConfig


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

    def rotations(self) -> list[tuple[int, float | None]]:
        """(epoch, AIR that triggered it) of every RollingQ rotation, any fusion layer."""
        return [(e["epoch"], e.get("air")) for line in self.epochs for e in line.get("rollingq") or []
                if e.get("rotated")]

    def clean(self) -> tuple[dict, str]:
        """The headline test metrics and where they come from: the evaluated checkpoint, else the last epoch."""
        if self.evaluation and self.evaluation.get("clean"):
            return self.evaluation["clean"], f"rq eval of {Path(self.evaluation.get('ckpt', '?')).name}"
        return self.epochs[-1].get("test") or {}, f"epoch {self.epochs[-1]['epoch']} test pass"


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
    return RunRecord(path.name, path, config, epochs, evaluation, eval_path if evaluation else None)


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


def load_runs(run_dirs: Sequence[Path], eval_paths: Sequence[Path] = ()) -> tuple[list[RunRecord], list[str]]:
    """The readable runs (names made unique) and one line per run that was skipped."""
    runs, skipped = [], []
    for i, run_dir in enumerate(run_dirs):
        try:
            runs.append(load_run(run_dir, eval_paths[i] if i < len(eval_paths) else None))
        except ReportError as e:
            skipped.append(str(e))
    names = [r.name for r in runs]
    return [r if names.count(r.name) == 1 else _renamed(r) for r in runs], skipped


def _renamed(run: RunRecord) -> RunRecord:
    return RunRecord(f"{run.path.parent.name}/{run.name}", run.path, run.config, run.epochs, run.evaluation,
                     run.eval_path)
