"""The command line as a user of open_clip, timm or video2dataset expects it: --version, -q/-v on every
command, --config files, help with panels, real defaults and types in words, exit 2 for every usage
error, resume that never ignores an option, and the run folder's summary.csv and TensorBoard steps."""
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_shards
from rq import __version__


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "shards"
    write_shards(out, {"train": [9, 7], "test": [5, 4]}, classes=3, n_frames=3, spec_shape=(257, 20), frames_per_clip=2)
    return out


TINY = ("--preset", "tiny", "--workers", 0, "--device", "cpu", "--batch-size", 4)


def test_version(rq):
    result = rq("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"rq {__version__}"


def test_help_shows_panels_defaults_and_types_in_words(rq):
    text = rq("train", "--help").stdout
    for panel in ("Input", "Model", "Optimisation", "RollingQ", "Run and output"):
        assert f"─ {panel} " in text, panel
    flat = " ".join(text.replace("│", " ").split())
    assert "Epochs [ks, cremad, ks-official, cremad-official 30; tiny 4]" in flat      # from the presets
    assert "|AIR| > beta [0]" in flat                                                  # RollingQConfig
    assert not re.search(r"[A-Za-z] \.(\s|$)", flat), "an empty default placeholder"
    assert "<float>" not in text and "list[str]" not in text and "NUMBER" in text
    for command in (("preprocess", "cremad"), ("eval",), ("synth",), ("report",), ("bench", "loader")):
        assert "--quiet" in rq(*command, "--help").stdout, command


@pytest.mark.parametrize("args, message", [
    (("train", "--shards", "/nope"), "--shards /nope: no such file or folder"),
    (("preprocess", "folder", "--raw", "/nope", "--out", "/tmp/x"), "--raw /nope: no such folder"),
    (("eval", "--ckpt", "/nope.pt", "--shards", "/nope"), "/nope"),
    (("train", "--shards", "x", "--epochs", "many"), "'--epochs'"),
])
def test_usage_errors_exit_2_with_one_line(args, message):
    """Through the real entry point (`rq` is `rq.cli:main`), as a user meets them."""
    result = subprocess.run([sys.executable, "-m", "rq.cli", *args], capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0] and lines[0].startswith("error: "), \
        result.stderr


@pytest.mark.parametrize("suffix, text", [
    (".toml", 'epochs = 1\nbatch-size = 4\nrq_beta = 0.0\nmethod = "mt"\n'),
    (".json", '{"epochs": 1, "batch_size": 4, "rq-beta": 0.0, "method": "mt"}'),
    (".yaml", "epochs: 1\nbatch_size: 4\nrq_beta: 0.0\nmethod: mt\n"),
])
def test_config_file_gives_defaults_the_command_line_overrides(rq, shards, tmp_path, suffix, text):
    options = tmp_path / f"train{suffix}"
    options.write_text(text)
    result = rq("train", "--shards", shards, "--config", options, "--out", tmp_path / "run", "--method", "rollingq",
                *TINY, "-q")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["epochs"] == 1 and config["batch_size"] == 4 and config["rollingq"]["beta"] == 0.0
    assert config["method"] == "rollingq"                                  # the command line wins
    assert config["rq_version"] == __version__ and config["fusion_layers"] == 1   # resolved, not 0


@pytest.mark.parametrize("text, message", [("epochs = 1\nepohcs = 2\n", "unknown option(s) epohcs"),
                                           ("epochs = [1,\n", "not valid TOML"),
                                           ('[section]\nepochs = {a = 1}\n', "unknown option(s) section")])
def test_config_file_errors(shards, tmp_path, text, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = subprocess.run([sys.executable, "-m", "rq.cli", "train", "--shards", str(shards), "--config", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


def test_quiet_keeps_the_summary_and_drops_the_rest(rq, shards, tmp_path):
    loud = rq("train", "--shards", shards, "--out", tmp_path / "a", "--epochs", 1, *TINY)
    quiet = rq("train", "--shards", shards, "--out", tmp_path / "b", "--epochs", 1, *TINY, "-q")
    assert loud.exit_code == quiet.exit_code == 0
    assert "rq train: " in loud.stdout and "saved" in loud.stdout
    assert "rq train: " not in quiet.stdout and "saved" not in quiet.stdout
    assert "rq train (test split" in quiet.stdout                           # the closing table stays
    assert "train 0:" in loud.stderr and "train 0:" not in quiet.stderr      # progress bars


def test_resume_never_ignores_an_option(rq, shards, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = Path("runs") / "first"
    assert rq("train", "--shards", shards, "--out", run, "--epochs", 2, *TINY, "-q").exit_code == 0
    changed = rq("train", "--shards", shards, "--out", run, "--resume", "--lr", 0.5)
    assert changed.exit_code == 2 and "lr 0.001 -> 0.5" in changed.stderr
    fewer = rq("train", "--shards", shards, "--resume", str(run), "--epochs", 1)
    assert fewer.exit_code == 2 and "fewer than the 2 already done" in fewer.stderr
    extended = rq("train", "--shards", shards, "--resume", "auto", "--epochs", 3, "--workers", 0, "-q")
    assert extended.exit_code == 0, extended.output
    assert [json.loads(s)["epoch"] for s in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and all(float(r["train_loss"]) > 0 for r in rows)


def test_tensorboard_gets_every_step_and_an_hparams_entry(rq, shards, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert rq("train", "--shards", shards, "--out", tmp_path / "run", "--epochs", 2, *TINY, "-q").exit_code == 0
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    steps = 16 // 4                                               # 16 train samples, batch 4
    assert [e.step for e in events.Scalars("step/loss")] == list(range(2 * steps))
    assert [e.step for e in events.Scalars("step/lr")] == list(range(2 * steps))
    assert [e.step for e in events.Scalars("train/loss")] == [0, 1]
    assert list((tmp_path / "run" / "tb" / "hparams").glob("events.out.tfevents.*"))


def test_wandb_offline_run_gets_the_config_and_every_epoch(rq, shards, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'rq[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = rq("train", "--shards", shards, "--out", tmp_path / "run", "--epochs", 2, *TINY, "-q",
                "--wandb", "rq-test-project")
    assert result.exit_code == 0, result.output
    [record] = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    data = record.read_bytes()      # W&B's own record log: our keys and values are in it as written
    for key in (b"step/loss", b"step/lr", b"train/loss", b"test/acc", b"rq-test-project", b'"tiny"'):
        assert key in data, key
