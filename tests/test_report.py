"""`rq report` on real runs: two tiny `rq train` runs (Vanilla MT and RollingQ) on tiny shards, one of
them evaluated by `rq eval` with the noise sweep and the Pearson test; plus unreadable runs."""
import csv
import json
import re
import statistics
from pathlib import Path

import cv2
import pytest

from helpers import write_shards

EPOCHS = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """{"shards", "mt", "rollingq", "on_test"}: mt and rollingq are folders of two seed runs each (rq train
    --seeds 0,1), every seed evaluated by rq eval (noise sweep + Pearson test); on_test one mt run that
    selected best.pt on test."""
    from typer.testing import CliRunner

    from rq import cli
    root = tmp_path_factory.mktemp("report")
    shards = root / "shards"
    write_shards(shards, {"train": [8], "val": [3], "test": [6]}, classes=3, spec_shape=(257, 32), frames_per_clip=2)
    invoke = CliRunner().invoke
    found = {"shards": shards}
    common = ["--shards", str(shards), "--preset", "tiny", "--epochs", str(EPOCHS), "--batch-size", "4",
              "--max-steps-per-epoch", "2", "--workers", "0", "--device", "cpu"]
    for method in ("mt", "rollingq"):
        found[method] = root / method
        result = invoke(cli.app, ["train", *common, "--method", method, "--out", str(root / method), "--seeds", "0,1",
                                  "--rq-beta", "0"])  # beta 0: the RollingQ runs rotate, so the plot marks it
        assert result.exit_code == 0, result.output
        for seed in (0, 1):
            result = invoke(cli.app, ["eval", "--ckpt", str(root / method / f"seed{seed}" / "best.pt"), "--shards",
                                      str(shards), "--noise-modality", "audio", "--noise-levels", "0,0.5,1",
                                      "--noisy-fraction", "0.5", "--workers", "0", "--device", "cpu"])
            assert result.exit_code == 0, result.output
    found["on_test"] = root / "on_test"
    result = invoke(cli.app, ["train", *common, "--method", "mt", "--out", str(root / "on_test"), "--select-on", "test"])
    assert result.exit_code == 0, result.output
    return found


def _embedded(report: Path) -> list[Path]:
    return [report.parent / name for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())]


VERDICT = r"(RollingQ \([^)]+\) beats Vanilla MT \([^)]+\)|Vanilla MT \([^)]+\) beats RollingQ \([^)]+\)|" \
          r"No significant difference between RollingQ \([^)]+\) and Vanilla MT \([^)]+\)) on fused test accuracy"


def test_report_seed_groups(rq, runs, tmp_path):
    out = tmp_path / "report"
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"preset": "tiny", "device_name": "CPU (2 threads)", "load_avg": [1.5, 1.2, 1.0],
                                 "methods": {"mt": {"step_ms": 480.0}, "rollingq": {"step_ms": 484.0}},
                                 "rollingq_overhead": 0.0083}))
    result = rq("report", runs["mt"], runs["rollingq"], "--out", out, "--bench", bench)
    assert result.exit_code == 0, result.output
    page = (out / "report.md").read_text()
    assert "`mt` vs `rollingq`" in page
    # two seeds per method: every comparison is tested over seeds, worded by its interval
    assert re.search(VERDICT + r".*paired t test over 2 seeds", page)
    assert re.search(r"(more robust than|No significant difference in robustness to) .*audio noise 1", page)
    assert "Pearson r of attention vs noisy input" in page and "AIR on clean test samples" in page
    # the summary: one column per group, mean ± std [95% interval]
    assert re.search(r"^\| fused \| \d\.\d{3} ± \d\.\d{3} \[-?\d\.\d{3}, \d\.\d{3}\] \|", page, re.M)
    assert "mt (mt, 2 seeds)" in page and "rollingq (rollingq, 2 seeds)" in page
    assert re.search(r"^\| best.pt selected on \| val \| val \|$", page, re.M)
    # per run: best.pt picked on val, test at that epoch and at the last one
    assert re.search(r"^\| mt/seed1 \| mt \| mt \| tiny \| 1 \| 2 \| epoch \d, val acc \d\.\d{3} \| \d\.\d{3} \| \d\.\d{3} \|",
                     page, re.M)
    # the rotations of the RollingQ runs (beta 0) are listed
    assert re.search(r"^\| rollingq/seed0 \| \d \| -?\d\.\d{3} \| yes \|", page, re.M)
    # AIR vs attention share, with the token counts of these runs: 16 x 2 audio, 2 frames x 16 visual
    assert "32 audio and 32 visual tokens" in page and "0.49 of it on audio" in page
    # speed: each run with its load; the method comparison only from the same-run benchmark
    assert re.search(r"^\| mt/seed0 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+\.\d\d \(range", page, re.M)
    assert "not a comparison of methods" in page and "+0.8%" in page and "load average 1.50" in page
    pictures = _embedded(out / "report.md")
    assert {p.name for p in pictures} == {"accuracy.png", "air.png", "attention.png", "noise.png", "pearson.png",
                                          "speed.png"}
    for picture in pictures:
        image = cv2.imread(str(picture))
        assert image is not None and image.shape[0] > 200 and image.shape[1] > 400, picture
    # the headline table is printed too, with the verdict and where the report is
    assert "rq report (test split" in result.stdout and str(out / "report.md") in result.stdout
    assert re.search(VERDICT, " ".join(result.stdout.split()))


def test_report_one_seed_each_pairs_the_test_samples(rq, runs, tmp_path):
    out = tmp_path / "report"
    result = rq("report", runs["mt"] / "seed0", runs["rollingq"] / "seed0", "--out", out)
    assert result.exit_code == 0, result.output
    page = (out / "report.md").read_text()
    assert re.search(VERDICT + r".*exact McNemar over 6 test samples", page)
    assert "paired bootstrap over 6 test samples" in page
    assert "One run per method of seed 0: tested over the 6 test samples" in page
    with (out / "comparisons.csv").open(newline="") as f:
        tests = {row["figure"]: row["test"] for row in csv.DictReader(f)}
    assert tests["acc"].startswith("exact McNemar over 6 test samples") and "paired bootstrap over 6" in tests["air"]
    # the Pearson test: exactly 3 of 6 samples noisy, both r variants
    assert re.search(r"^\| mt/seed0 \| 3 / 6 \| -?\d\.\d{3} \| [\d.e-]+ \| -?\d\.\d{3} \|", page, re.M)


def test_numbers_selected_on_test_are_marked(rq, runs, tmp_path):
    out = tmp_path / "report"
    result = rq("report", runs["on_test"], runs["rollingq"] / "seed0", "--out", out)
    assert result.exit_code == 0, result.output
    page = (out / "report.md").read_text()
    assert "on_test (mt, 1 seed), selected on test" in page and "TEST (optimistic)" in page
    assert "selected on TEST" in page and "(selected on test)" in page
    assert "Numbers marked 'selected on test'" in page
    # on_test was not evaluated: no sample-by-sample test, and the report says so
    assert "not tested (no per_sample.json" in page


def test_report_skips_unreadable_runs(rq, runs, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"method": "mt"}))
    (broken / "metrics.jsonl").write_text('{"epoch": 0, "train": {}}\nnot json\n')
    out = tmp_path / "report"
    result = rq("report", runs["mt"] / "seed0", tmp_path / "nowhere", broken, "--out", out)
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
    result = rq("report", runs["on_test"], "--eval", tmp_path / "a.json", "--eval", tmp_path / "b.json")
    assert result.exit_code == 2 and "--eval" in result.stderr


def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_report_writes_its_tables_as_csv(rq, runs, tmp_path):
    out = tmp_path / "report"
    result = rq("report", runs["mt"], runs["rollingq"], "--out", out)
    assert result.exit_code == 0, result.output
    names = ["summary.csv", "runs.csv", "comparisons.csv", "table1.csv"]
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(names)
    tables = {name: _csv(out / name) for name in names}
    # plain values: no Markdown, no "±", no "–" placeholders
    assert all(not re.search(r"[|±–*]", v) for rows in tables.values() for row in rows for k, v in row.items()
               if k not in ("what", "test", "figures_from", "eval_json"))
    accs: dict[str, list[float]] = {}
    for row in tables["runs.csv"]:
        run = runs[row["group"]] / f"seed{row['seed']}"
        evaluation = json.loads((run / "eval" / "eval.json").read_text())
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert row["run"] == f"{row['group']}/seed{row['seed']}" and row["method"] == row["group"]
        assert float(row["acc"]) == evaluation["clean"]["acc"]                    # full precision, read back
        assert float(row["acc_audio"]) == evaluation["clean"]["acc_audio"]
        assert float(row["test_acc_at_last"]) == epochs[-1]["test"]["acc"] and int(row["epochs"]) == EPOCHS
        rotated = [e for line in epochs for e in line.get("rollingq") or [] if e.get("rotated")]
        assert int(row["rotations"]) == len(rotated)
        assert row["selected_on"] == "val" and int(row["best_epoch"]) in range(EPOCHS)
        accs.setdefault(row["group"], []).append(evaluation["clean"]["acc"])
    assert sorted(accs) == ["mt", "rollingq"] and all(len(v) == 2 for v in accs.values())
    summary = {(r["group"], r["figure"]): r for r in tables["summary.csv"]}
    for group, values in accs.items():
        row = summary[group, "acc"]
        assert int(row["n"]) == 2 and row["seeds"] == "0 1" and row["selected_on"] == "val"
        assert float(row["mean"]) == pytest.approx(statistics.mean(values))
        assert float(row["std"]) == pytest.approx(statistics.stdev(values))
        assert float(row["ci95_low"]) <= float(row["mean"]) <= float(row["ci95_high"])
    compared = {r["figure"]: r for r in tables["comparisons.csv"]}
    assert {"acc", "drop", "r", "air"} <= set(compared)
    acc = compared["acc"]
    assert (acc["a"], acc["b"]) == ("rollingq", "mt") and "paired t test over 2 seeds" in acc["test"]
    assert float(acc["a_value"]) == pytest.approx(statistics.mean(accs["rollingq"]))
    assert float(acc["b_value"]) == pytest.approx(statistics.mean(accs["mt"]))
    assert float(acc["diff"]) == pytest.approx(float(acc["a_value"]) - float(acc["b_value"]))
    assert acc["significant"] == str(int(float(acc["ci95_low"]) > 0 or float(acc["ci95_high"]) < 0))
    assert 0 <= float(acc["p"]) <= 1
    # Table 1: percent, the seeds' mean; these tiny shards are no paper dataset, so no paper number
    cells = {r["method"]: r for r in tables["table1.csv"]}
    assert set(cells) == {"Vanilla MT", "Vanilla MT + RollingQ"}
    for method, group in (("Vanilla MT", "mt"), ("Vanilla MT + RollingQ", "rollingq")):
        cell = cells[method]
        assert cell["dataset"] == "shards" and cell["seeds"] == "0 1" and cell["paper_acc_pct"] == ""
        assert float(cell["acc_pct"]) == pytest.approx(100 * statistics.mean(accs[group]))
        low, high = float(cell["ci95_low_pct"]), float(cell["ci95_high_pct"])
        assert float(cell["ci95_half_pct"]) == pytest.approx((high - low) / 2) and low <= float(cell["acc_pct"]) <= high
