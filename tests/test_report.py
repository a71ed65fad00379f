"""`rq report` on real runs: two tiny `rq train` runs (Vanilla MT and RollingQ) on tiny shards, one of
them evaluated by `rq eval` with the noise sweep and the Pearson test; plus unreadable runs."""
import json
import re
from pathlib import Path

import cv2
import pytest

from helpers import write_shards

EPOCHS = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """{"shards", "mt", "rollingq"}: the rollingq run also has eval/eval.json."""
    from typer.testing import CliRunner

    from rq import cli
    root = tmp_path_factory.mktemp("report")
    shards = root / "shards"
    write_shards(shards, {"train": [8], "test": [6]}, classes=3, spec_shape=(257, 32), frames_per_clip=2)
    invoke = CliRunner().invoke
    found = {"shards": shards}
    for method in ("mt", "rollingq"):
        found[method] = root / method
        result = invoke(cli.app, ["train", "--shards", str(shards), "--preset", "tiny", "--method", method,
                                  "--out", str(root / method), "--epochs", str(EPOCHS), "--batch-size", "4",
                                  "--max-steps-per-epoch", "2", "--workers", "0", "--device", "cpu",
                                  "--rq-beta", "0"])  # beta 0: the RollingQ run rotates, so the plot marks it
        assert result.exit_code == 0, result.output
    result = invoke(cli.app, ["eval", "--ckpt", str(root / "rollingq" / "last.pt"), "--shards", str(shards),
                              "--noise-modality", "audio", "--noise-levels", "0,0.5,1", "--noisy-fraction", "0.5",
                              "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return found


def _embedded(report: Path) -> list[Path]:
    return [report.parent / name for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())]


def test_report_two_runs(rq, runs, tmp_path):
    out = tmp_path / "report"
    result = rq("report", runs["mt"], runs["rollingq"], "--out", out)
    assert result.exit_code == 0, result.output
    page = (out / "report.md").read_text()
    assert "`mt` vs `rollingq`" in page
    # the verdict is stated whichever way it comes out
    assert re.search(r"RollingQ \(rollingq\) (beats|does NOT beat|ties with) Vanilla MT \(mt\) on fused test accuracy",
                     page)
    # accuracy table: one row per run with fused, audio probe and visual probe numbers
    for name in ("mt", "rollingq"):
        assert re.search(rf"^\| {name} \| \d\.\d{{3}} \| \d\.\d{{3}} \| \d\.\d{{3}} \|", page, re.M), name
    # the un-evaluated run is said to be so; the evaluated one has its noise sweep and Pearson rows
    assert "not evaluated" in page
    assert re.search(r"^\| rollingq \| fused acc( \| \d\.\d{3}){3} \|$", page, re.M)
    assert re.search(r"^\| rollingq \| \d+ / 6 \|", page, re.M)
    # the rotation of the RollingQ run (beta 0) is listed
    assert re.search(r"^\| rollingq \| \d \| -?\d\.\d{3} \| yes \|", page, re.M)
    pictures = _embedded(out / "report.md")
    assert {p.name for p in pictures} == {"accuracy.png", "air.png", "attention.png", "noise.png", "pearson.png",
                                          "speed.png"}
    for picture in pictures:
        image = cv2.imread(str(picture))
        assert image is not None and image.shape[0] > 200 and image.shape[1] > 400, picture
    # the headline table is printed too, with where the report is
    assert "rq report (test split)" in result.stdout and str(out / "report.md") in result.stdout


def test_report_skips_unreadable_runs(rq, runs, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"method": "mt"}))
    (broken / "metrics.jsonl").write_text('{"epoch": 0, "train": {}}\nnot json\n')
    out = tmp_path / "report"
    result = rq("report", runs["mt"], tmp_path / "nowhere", broken, "--out", out)
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "nowhere: no such run folder" in lines[0] and "metrics.jsonl:2: not JSON" in lines[1]
    page = (out / "report.md").read_text()
    assert "Runs left out" in page and "nowhere" in page
    assert "No Vanilla MT / RollingQ pair to compare" in page
    assert all(cv2.imread(str(p)) is not None for p in _embedded(out / "report.md"))


def test_report_usage_errors(rq, runs, tmp_path):
    result = rq("report", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "RUN_DIR" in result.stderr and "Traceback" not in result.output
    result = rq("report", tmp_path / "nowhere", "--out", tmp_path / "r")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    result = rq("report", runs["mt"], "--eval", tmp_path / "a.json", "--eval", tmp_path / "b.json")
    assert result.exit_code == 2 and "--eval" in result.stderr
