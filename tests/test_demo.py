"""`rq demo` end to end, shortened (24 clips of 1.5 s, 2 seeds of 2 epochs of 1 step): every artefact exists
and is well-formed, a rerun reuses every stage and says so, a changed setting retrains and says why."""
import json
import re
from dataclasses import replace

import cv2
import pytest
import torch

from rq.train.demo import METHODS, DemoSettings, make_demo

SHORT = DemoSettings(clips=24, classes=3, seconds=1.5, size="64x48", fps=5, frame_size=48, epochs=2,
                     max_steps_per_epoch=1, noise_levels=(0.0, 1.0), seeds=(0, 1), test_share=0.25)
RUNS = [f"{m}/seed{s}" for m in METHODS for s in SHORT.seeds]


THREADS = torch.get_num_threads()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, make_demo(out, SHORT, workers=2)


def _actions(result) -> dict[str, str]:
    return {row[0]: row[1] for row in result["stages"]}


def test_first_run_makes_every_artefact(demo):
    out, result = demo
    assert _actions(result) == {"synth": "generated", "preprocess": "ran", **{f"train {r}": "trained" for r in RUNS},
                                **{f"eval {r}": "ran" for r in RUNS}, "report": "written"}
    listing = json.loads((out / "raw" / "synth.json").read_text())
    assert len(listing["clips"]) == SHORT.clips and listing["settings"]["audio_informative"] == SHORT.audio_informative
    # the sound of 30% of each split's clips is corrupted: 18 train clips -> 5, 6 test clips -> 2
    assert [sum(bool(c["audio_corruption"]) for c in listing["clips"] if c["split"] == s) for s in ("train", "val")] \
        == [5, 2]
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    assert manifest["totals"]["samples"] == SHORT.clips and len(manifest["classes"]) == SHORT.classes
    assert {s: v["samples"] for s, v in manifest["splits"].items()} == {"train": 15, "val": 3, "test": 6}
    for run_name in RUNS:
        run = out / "runs" / run_name
        config = json.loads((run / "config.json").read_text())
        assert (config["method"], f"seed{config['seed']}") == tuple(run_name.split("/"))
        lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
        assert [line["epoch"] for line in lines] == list(range(SHORT.epochs))
        assert all(line["test"]["samples"] == 6 and line["val"]["samples"] == 3 for line in lines)
        assert torch.load(run / "last.pt", weights_only=True)["epoch"] == SHORT.epochs - 1
        evaluation = json.loads((run / "eval" / "eval.json").read_text())
        assert evaluation["ckpt"].endswith("best.pt")   # selected on val
        assert evaluation["noise"]["levels"] == list(SHORT.noise_levels) and len(evaluation["noise"]["acc"]) == 2
        assert evaluation["pearson"]["fraction"] == SHORT.noisy_fraction
        assert (run / "eval" / "per_sample.json").is_file()
    page = (out / "report" / "report.md").read_text()
    assert "`mt` vs `rollingq`" in page and "paired t test over 2 seeds" in page
    assert "AIR vs attention share" in page and "## Corrupted sound (rq demo)" in page
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert len(pictures) == 6
    for name in pictures:
        assert cv2.imread(str(out / "report" / name)) is not None, name
    assert result["report"].columns[1:] == ["mt (mt, 2 seeds)", "rollingq (rollingq, 2 seeds)"]
    assert "load average" in result["machine"] and torch.get_num_threads() == THREADS   # restored


def test_rerun_reuses_every_stage(demo, capsys):
    out, _ = demo
    capsys.readouterr()
    result = make_demo(out, SHORT, workers=2)
    shown = capsys.readouterr().out
    assert _actions(result) == {"synth": "reused", "preprocess": "reused", **{f"train {r}": "reused" for r in RUNS},
                                **{f"eval {r}": "reused" for r in RUNS}, "report": "written"}
    assert "[demo] synth: reused" in shown and "[demo] train rollingq/seed1: reused" in shown
    # preprocess's own table: every clip's probe came from the cache
    assert re.search(rf"probe\s*│\s*0\s*│\s*{SHORT.clips}\s*│\s*0\s*│", shown)
    # the final table and where the report is
    assert "rq report (test split" in shown and f"report: {out / 'report' / 'report.md'}" in shown
    assert re.search(r"rq demo: \d+ s on \d+ cores .*load average", shown)
    assert "Corrupted sound (rq synth: 2 of the 6 test clips)" in shown


def test_changed_setting_retrains_and_says_why(demo, capsys):
    out, _ = demo
    result = make_demo(out, replace(SHORT, epochs=SHORT.epochs + 1), workers=2)
    shown = capsys.readouterr().out
    actions = _actions(result)
    assert actions["synth"] == "reused" and actions["preprocess"] == "reused"
    assert all(actions[f"train {r}"] == "trained" and actions[f"eval {r}"] == "ran" for r in RUNS)
    assert f"config changed: epochs {SHORT.epochs} -> {SHORT.epochs + 1}" in shown
    lines = (out / "runs" / "mt" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["epoch"] for s in lines] == list(range(SHORT.epochs + 1))


def test_usage_errors(rq, tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    result = rq("demo", "--out", afile)
    assert result.exit_code == 2 and "not a folder" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = rq("demo", "--out", tmp_path / "d", "--workers", "0")
    assert result.exit_code == 2 and "--workers" in result.stderr
