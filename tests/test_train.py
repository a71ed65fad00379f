"""`rq train` end to end on tiny shards: learning, metrics and TensorBoard every epoch, checkpoints,
exact resume, RollingQ rotations, bf16 autocast on CPU, one-line usage errors."""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers import write_shards
from rq.train.trainer.checkpoint import load_checkpoint
from rq.train.trainer.config import TrainConfig
from rq.train.trainer.fit import fit

TRAIN_FIELDS = {"samples", "loss", "acc", "acc_audio", "acc_visual", "macro_f1", "air", "share_audio", "share_visual",
                "lr", "steps_per_rank", "samples_per_s", "data_wait_frac", "skipped_samples", "bad_tars",
                "nonfinite_steps"}
TEST_FIELDS = {"samples", "loss", "acc", "acc_audio", "acc_visual", "macro_f1", "air", "share_audio", "share_visual",
               "unique_samples", "skipped_samples", "bad_tars"}
CHECKPOINT_KEYS = {"model", "optimizer", "param_names", "scheduler", "rollingq", "balance", "rng", "epoch",
                   "best_acc", "selection", "config", "classes", "spec_shape", "manifest_sha256", "preprocess", "provenance"}


@pytest.fixture(scope="module")
def synth_shards(tmp_path_factory) -> Path:
    """Real shards: `rq synth` clips (1 s, 64x48, class-specific tone and picture) through `rq preprocess`."""
    from typer.testing import CliRunner
    from rq import cli
    root = tmp_path_factory.mktemp("synth")
    runner = CliRunner()
    for args in (("synth", "--preset", "kinetics", "--out", root / "raw", "--clips", 30, "--classes", 3, "--seconds", 1,
                  "--size", "64x48", "--audio-noise", 0, "--visual-noise", 0, "--workers", 2),
                 ("preprocess", "kinetics", "--raw", root / "raw", "--out", root / "shards", "--audio-seconds", 1,
                  "--frame-size", 64, "--workers", 2)):
        result = runner.invoke(cli.app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return root / "shards"


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory) -> Path:
    """Docs/shards.md-format shards of dictated sizes (tests/helpers.py), spectrogram 257 x 20."""
    out = tmp_path_factory.mktemp("small") / "shards"
    write_shards(out, {"train": [9, 7], "val": [4], "test": [5, 4]}, classes=3, n_frames=3, spec_shape=(257, 20),
                 frames_per_clip=2)
    return out


def tiny(shards: Path, out: Path, **options) -> TrainConfig:
    defaults = dict(out=str(out), workers=0, batch_size=4, epochs=2, seed=0, device="cpu")
    return TrainConfig.from_options(str(shards), "tiny", **{**defaults, **options})


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss_and_logs_every_epoch(rq, synth_shards, tmp_path):
    out = tmp_path / "run"
    result = rq("train", "--shards", synth_shards, "--preset", "tiny", "--method", "mt", "--epochs", 3,
                "--batch-size", 8, "--lr", 0.05, "--workers", 0, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    history = lines(out)
    splits = json.loads((synth_shards / "manifest.json").read_text())["splits"]
    steps = splits["train"]["samples"] // 8
    assert [h["epoch"] for h in history] == [0, 1, 2]
    for h in history:
        assert set(h["train"]) == TRAIN_FIELDS and set(h["test"]) == TEST_FIELDS
        assert h["train"]["steps_per_rank"] == [steps] and h["train"]["samples"] == 8 * steps
        assert h["test"]["samples"] == h["test"]["unique_samples"] == splits["test"]["samples"]
        assert len(h["train"]["air"]) == 1 and h["rollingq"][0]["rotated"] is False  # mt: measured, never rotated
        assert 0 <= h["test"]["share_audio"][0] + h["test"]["share_visual"][0] <= 1 + 1e-6
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    assert "rq train" in result.stdout and result.stdout.count("saved") == 3
    assert list((out / "tb").glob("events.out.tfevents.*"))
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "mt" and config["frames"] == 3 and config["image_size"] == 64
    best, last = load_checkpoint(out / "best.pt"), load_checkpoint(out / "last.pt")  # weights_only=True
    assert set(last) == CHECKPOINT_KEYS and last["epoch"] == 2 and {**last["config"], **last["provenance"]} == config
    # best.pt is picked on val (rq preprocess carved it out of train), the first epoch of the highest val accuracy
    val_acc = [h["val"]["acc"] for h in history]
    assert best["selection"] == {"on": "val", "best_epoch": val_acc.index(max(val_acc)), "best_value": max(val_acc)}
    assert best["epoch"] == val_acc.index(max(val_acc)) and best["best_acc"] == max(val_acc)
    assert all(h["val"]["samples"] == splits["val"]["samples"] > 0 for h in history)
    assert f"best.pt = epoch {best['epoch']}, selected on val" in result.stdout
    assert all(len(h["load_avg"]) == 3 for h in history)


@pytest.fixture(scope="module")
def rotated_run(small_shards, tmp_path_factory) -> tuple[TrainConfig, dict]:
    """RollingQ with beta 0 (rotate at the first epoch end), trained 2 epochs without a break."""
    cfg = tiny(small_shards, tmp_path_factory.mktemp("straight") / "run", rq_beta=0.0)
    return cfg, fit(cfg)


def test_rotation_event_is_logged_and_checkpointed(rotated_run):
    cfg, result = rotated_run
    first, second = (h["rollingq"] for h in result["epochs"])
    assert first[0]["rotated"] and first[0]["angle_deg"] > 0 and first[0]["rotations_done"] == 1
    assert not second[0]["rotated"]  # --rq-max-rotations 1
    state = load_checkpoint(Path(cfg.out) / "last.pt")["model"]
    rotation = state["fusion.layers.0.rotation"].double()
    eye = torch.eye(len(rotation), dtype=torch.float64)
    assert int(state["fusion.layers.0.rotations_done"]) == 1
    assert not torch.allclose(rotation, eye)
    assert torch.allclose(rotation @ rotation.T, eye, atol=1e-5)


def test_resume_reaches_the_same_weights_and_warns_on_changed_shards(rotated_run, small_shards, tmp_path, capsys):
    straight, _ = rotated_run
    cfg = replace(straight, out=str(tmp_path / "run"))
    fit(replace(cfg, stop_after=1))
    assert [h["epoch"] for h in lines(tmp_path / "run")] == [0]
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    capsys.readouterr()
    fit(replace(cfg, resume=True))
    assert "warning" not in capsys.readouterr().err
    assert [h["epoch"] for h in lines(tmp_path / "run")] == [0, 1]
    a, b = (load_checkpoint(Path(d) / "last.pt") for d in (straight.out, cfg.out))
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for param, state_a in a["optimizer"]["state"].items():
        for name, value in state_a.items():   # momentum buffers (SGD), moments and step (AdamW)
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][param][name])), name

    changed = tmp_path / "changed"
    write_shards(changed, {"train": [9, 8], "test": [5, 4]}, classes=3, n_frames=3, spec_shape=(257, 20),
                 frames_per_clip=2)
    fit(replace(cfg, shards=str(changed), out=str(tmp_path / "copy"), resume=True))
    err = capsys.readouterr().err
    assert "warning" in err and "shards changed" in err and str(changed) in err


def test_paper_statistics_pass_rotates_too(small_shards, tmp_path):
    result = fit(tiny(small_shards, tmp_path / "run", rq_beta=0.0, rq_stats="pass", epochs=1))
    assert result["epochs"][0]["rollingq"][0]["rotated"]


def test_bf16_autocast_path_runs_on_cpu(small_shards, tmp_path):
    result = fit(tiny(small_shards, tmp_path / "run", precision="bf16", epochs=1, max_steps_per_epoch=2,
                      method="concat"))
    train = result["epochs"][0]["train"]
    assert train["steps_per_rank"] == [2] and train["loss"] > 0
    assert train["air"] is None and train["share_audio"] is None  # concat has no fusion attention


@pytest.mark.parametrize("args, code, message", [
    (("--preset", "huge"), 2, "--preset must be one of"),
    (("--method", "late"), 2, "--method must be one of"),
    (("--rq-stats", "sometimes"), 2, "--rq-* options"),
    (("--resume",), 2, "no checkpoint to resume from"),
    (("--device", "gpu7"), 2, "--device must be"),
    (("--image-size", 50), 2, "must be a multiple of patch"),
    (("--pretrained", "vit.safetensors"), 2, "vit.safetensors: no such checkpoint file"),
])
def test_usage_errors_are_one_line(rq, small_shards, tmp_path, args, code, message):
    result = rq("train", "--shards", small_shards, "--out", tmp_path / "run", "--device", "cpu", "--preset", "tiny",
                *args)  # last wins
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_shards_is_one_line(rq, tmp_path):
    result = rq("train", "--shards", tmp_path / "nowhere", "--preset", "tiny")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "nowhere" in result.stderr


def test_bench_train_times_both_methods(rq, tmp_path):
    result = rq("bench", "train", "--preset", "tiny", "--steps", 4, "--batch-size", 2, "--spec-frames", 32,
                "--device", "cpu", "--json", tmp_path / "bench.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report["methods"]) == {"mt", "rollingq"} and report["spec_shape"] == [257, 32]
    assert all(m["samples_per_s"] > 0 for m in report["methods"].values())
    assert report["samples_per_s"] == report["methods"]["rollingq"]["samples_per_s"]
    assert isinstance(report["rollingq_overhead"], float) and "overhead" in result.stdout


def _val_test_accuracies(run_dir: Path) -> tuple[list[float], list[float]]:
    history = lines(run_dir)
    return [h["val"]["acc"] for h in history], [h["test"]["acc"] for h in history]


def test_selection_on_val_on_test_and_without_val(small_shards, tmp_path, capsys):
    # on val: best.pt is the epoch of the highest val accuracy; test is reported there and at the last epoch
    result = fit(tiny(small_shards, tmp_path / "val", epochs=3, method="mt"))
    val, test = _val_test_accuracies(tmp_path / "val")
    chosen = val.index(max(val))
    assert result["selection"] == {"on": "val", "best_epoch": chosen, "val_acc_at_best": val[chosen],
                                   "test_acc_at_best": test[chosen], "last_epoch": 2, "test_acc_at_last": test[2]}
    assert load_checkpoint(tmp_path / "val" / "best.pt")["epoch"] == chosen
    # --select-on test: the released code's protocol, said to be so
    capsys.readouterr()
    result = fit(tiny(small_shards, tmp_path / "test", epochs=3, method="mt", select_on="test"))
    val, test = _val_test_accuracies(tmp_path / "test")
    assert result["selection"]["on"] == "test" and result["selection"]["best_epoch"] == test.index(max(test))
    shown = capsys.readouterr()
    assert "selected on TEST" in shown.out and "--select-on test" in shown.err
    # shards without a val split (made before rq had one): best.pt is the last epoch, and the run says so
    old = tmp_path / "old"
    write_shards(old, {"train": [9, 7], "test": [5, 4]}, classes=3, n_frames=3, spec_shape=(257, 20), frames_per_clip=2)
    result = fit(tiny(old, tmp_path / "last", epochs=2, method="mt"))
    shown = capsys.readouterr()
    assert "no val split" in shown.err and "LAST epoch" in shown.err
    assert result["selection"]["on"] == "last" and result["selection"]["best_epoch"] == 1
    assert load_checkpoint(tmp_path / "last" / "best.pt")["epoch"] == 1
    assert all(h["val"] is None for h in lines(tmp_path / "last"))


def test_seeds_make_one_run_each(rq, small_shards, tmp_path):
    out = tmp_path / "runs"
    result = rq("train", "--shards", small_shards, "--preset", "tiny", "--method", "mt", "--seeds", "3,5", "--epochs",
                1, "--max-steps-per-epoch", 1, "--batch-size", 4, "--workers", 0, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["seed3", "seed5"]
    for seed in (3, 5):
        assert json.loads((out / f"seed{seed}" / "config.json").read_text())["seed"] == seed
        assert len(lines(out / f"seed{seed}")) == 1
    for args, message in ((("--seeds", "1,x", "--out", out), "--seeds must be"),
                          (("--seeds", "1,1", "--out", out), "distinct"),
                          (("--seeds", "1,2"), "--seeds needs --out")):
        result = rq("train", "--shards", small_shards, "--preset", "tiny", "--device", "cpu", *args)
        assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_preset_is_chosen_to_fit_the_shards_or_the_run_stops(rq, small_shards, tmp_path):
    from rq.train.trainer.presets import resolve_preset
    ks = tmp_path / "ks"
    write_shards(ks, {"train": [1]}, classes=2, n_frames=3, spec_shape=(257, 1004), frame_hw=(224, 240))
    cremad = tmp_path / "cremad"
    write_shards(cremad, {"train": [1]}, classes=2, n_frames=2, spec_shape=(257, 299), frame_hw=(256, 300),
                 frames_per_clip=1)
    odd = tmp_path / "odd"
    write_shards(odd, {"train": [1]}, classes=2, n_frames=3, spec_shape=(257, 499), frame_hw=(256, 300))
    assert resolve_preset(str(ks), None, {}) == "ks" and resolve_preset(str(cremad), None, {}) == "cremad"
    assert resolve_preset(str(small_shards), None, {}) == "tiny"   # 48 px frames: made for CPU runs
    assert resolve_preset(str(odd), "ks", {}) == "ks"               # another clip length: the user's call
    result = rq("train", "--shards", odd, "--device", "cpu")
    assert result.exit_code == 2 and "no preset fits" in result.stderr and "257x499" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # the README's toy shards with --preset ks: one line, not a ViT-B on upscaled frames
    result = rq("train", "--shards", small_shards, "--preset", "ks", "--device", "cpu", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "would be upscaled" in result.stderr and "--preset tiny" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    result = rq("train", "--shards", small_shards, "--epochs", 1, "--max-steps-per-epoch", 1, "--workers", 0,
                "--device", "cpu", "--out", tmp_path / "auto")
    assert result.exit_code == 0 and "preset: tiny (chosen for the shards' 257x20 spectrograms" in result.stdout
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["preset"] == "tiny"
