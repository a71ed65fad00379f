"""Table 1 end to end on tiny runs of every method: `rq sweep` trains the grid (tiny preset, tiny
shards whose manifest names the CREMA-D recipe, so the paper's column shows), every run lowers its
loss, the --rollingq variants rotate, OGM-GE and PMR log their per-step coefficients, the report lays
the runs out as Table 1, and each new method resumes to the same weights and evaluates."""
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers import write_shards
from rq.train.sweep import TABLE1_METHODS, folder_name
from rq.train.trainer.checkpoint import load_checkpoint
from rq.train.trainer.config import TrainConfig
from rq.train.trainer.fit import fit

METHODS = (*TABLE1_METHODS, "mult", "mult+rollingq")
ROLLING = ("rollingq", "mt*+rollingq", "mmml+rollingq", "mult+rollingq")
# 32 px frames, one per clip, a 257 x 16 spectrogram: 4 visual and 16 audio tokens, a few ms per step
TRAIN = ("--preset", "tiny", "--image-size", "32", "--epochs", "3", "--batch-size", "4", "--max-steps-per-epoch", "2",
         "--lr", "3e-3", "--workers", "0", "--device", "cpu", "--rq-beta", "0", "--ogm-start", "0")


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> dict:
    """Every method with seed 0, then concat and MMML + RollingQ with seeds 0 and 1 (seed 0 kept)."""
    from typer.testing import CliRunner
    from rq import cli
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # tiny models on shared cores: a second thread only waits (2x the CPU time)
    root = tmp_path_factory.mktemp("table1")
    shards = root / "shards"
    write_shards(shards, {"train": [8], "test": [6]}, classes=3, n_frames=2, spec_shape=(257, 16), frames_per_clip=1)
    manifest = json.loads((shards / "manifest.json").read_text())
    (shards / "manifest.json").write_text(json.dumps({**manifest, "recipe": "cremad"}))
    runner = CliRunner()
    first = runner.invoke(cli.app, ["sweep", "--shards", str(shards), "--out", str(root / "grid"), "--methods",
                                    ",".join(METHODS), "--seeds", "0", *TRAIN], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli.app, ["sweep", "--shards", str(shards), "--out", str(root / "grid"), "--methods",
                                     "concat,mmml+rollingq", "--seeds", "0,1", *TRAIN], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    yield {"shards": shards, "grid": root / "grid", "first": first, "second": second}
    torch.set_num_threads(threads)


def run_dir(grid, method, seed=0) -> Path:
    return grid["grid"] / folder_name(method) / f"seed{seed}"


def lines(run: Path) -> list[dict]:
    return [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_lowers_its_loss(grid, method):
    history = lines(run_dir(grid, method))
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]


@pytest.mark.parametrize("method", METHODS)
def test_rollingq_switch_rotates_the_dynamic_methods(grid, method):
    history = lines(run_dir(grid, method))
    state = load_checkpoint(run_dir(grid, method) / "last.pt")["model"]
    rotations = [k for k in state if k.endswith(".rotation")]
    if method in ROLLING:
        assert history[0]["rollingq"][0]["rotated"]            # beta 0: at the first epoch's end
        r = state[rotations[0]].double()
        eye = torch.eye(len(r), dtype=torch.float64)
        assert not torch.allclose(r, eye) and torch.allclose(r @ r.T, eye, atol=1e-5)
        assert history[0]["train"]["air"] is not None           # and AIR, attention shares are measured
    else:
        assert not rotations and not any(e["rotated"] for h in history for e in h["rollingq"])


def test_ogm_and_pmr_log_their_coefficients_per_step(grid):
    for h in lines(run_dir(grid, "ogm-ge")):
        steps = h["balance"]["steps"]
        assert h["balance"]["active"] and len(steps["coeff_audio"]) == h["train"]["steps_per_rank"][0] == 2
        assert all(0 <= k <= 1 for k in steps["coeff_audio"] + steps["coeff_visual"])
        # at most one modality is slowed down: the one whose ratio exceeds 1
        assert all(max(a, v) == 1.0 for a, v in zip(steps["coeff_audio"], steps["coeff_visual"]))
    pmr = lines(run_dir(grid, "pmr"))
    assert not pmr[0]["balance"]["active"] and pmr[0]["balance"]["steps"]["ratio"] == []   # building prototypes
    for h in pmr[1:]:
        assert h["balance"]["active"] and len(h["balance"]["steps"]["ratio"]) == 2
        assert all(k in (0.0, 0.6) for k in h["balance"]["steps"]["coeff_audio"] + h["balance"]["steps"]["coeff_visual"])
    prototypes = load_checkpoint(run_dir(grid, "pmr") / "last.pt")["balance"]["prototypes"]
    assert prototypes["audio"].shape == prototypes["visual"].shape == (3, 64)
    assert all(lines(run_dir(grid, m))[0]["balance"] is None for m in ("concat", "mt", "mbt"))


def test_report_lays_out_table1_with_the_papers_numbers(rq, grid, tmp_path):
    runs = sorted(grid["grid"].glob("*/seed*"))
    result = rq("report", *runs, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "report.md").read_text()
    assert "## Table 1" in page and "| method | CREMA-D (rq) | CREMA-D (paper) |" in page
    for row, paper in (("Unimodal audio", "47.6"), ("Concat", "49.3"), ("OGM-GE", "51.2"), ("PMR", "50.1"),
                       ("Vanilla MT", "48.8"), ("Vanilla MT\\*", "51.5"), ("MBT", "51.5"), ("JMT", "50.7"),
                       ("MMML", "52.0"), ("Vanilla MT + RollingQ", "51.9"), ("Vanilla MT\\* + RollingQ", "52.2"),
                       ("MMML + RollingQ", "52.7"), ("MuT", "–"), ("MuT + RollingQ", "–")):
        cells = r"\d+\.\d( ± \d+\.\d)? \(seeds? [\d, ]+\)"
        assert re.search(rf"^\| {re.escape(row)} \| {cells} \| {paper} \|$", page, re.M), row
    assert re.search(r"^\| Concat \| \d+\.\d ± \d+\.\d \(seeds 0, 1\) \| 49\.3 \|$", page, re.M)
    assert re.search(r"^\| OGM-GE \| \d+\.\d \(seed 0\) \| 51\.2 \|$", page, re.M)
    assert "the paper's numbers are for its ViT-B model" in page         # these runs are the tiny preset
    out = grid["second"].output
    assert "rq sweep: Table 1" in out and out.count("finished earlier, kept") == 2    # seed 0 was not retrained
    assert "Concat" in out and "(seeds 0, 1)" in out


# The methods with state of their own in a checkpoint: the balancers', MBT's encoders without their
# final norm, MulT's staged fusion with a rotation; JMT and MMML resume like any model.
@pytest.mark.parametrize("method", ["ogm-ge", "pmr", "mbt", "mult+rollingq"])
def test_resume_reaches_the_same_weights(grid, tmp_path, method):
    straight = run_dir(grid, method)
    cfg = TrainConfig.from_dict(json.loads((straight / "config.json").read_text()))
    cfg = replace(cfg, out=str(tmp_path / "run"))
    fit(replace(cfg, stop_after=1))
    fit(replace(cfg, resume=True))
    a, b = (load_checkpoint(Path(d) / "last.pt") for d in (straight, cfg.out))
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert lines(straight)[-1]["balance"] == lines(Path(cfg.out))[-1]["balance"]


def test_resume_from_the_command_line_keeps_the_rollingq_switch(rq, grid, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir(grid, "mmml+rollingq"), run)
    result = rq("train", "--shards", grid["shards"], "--resume", "--out", run, "--epochs", 4, "--workers", 0)
    assert result.exit_code == 0, result.output                  # no --rollingq given: the run's own is kept
    assert [h["epoch"] for h in lines(run)] == [0, 1, 2, 3]
    assert json.loads((run / "config.json").read_text())["rolling"] is True


@pytest.mark.parametrize("method", ["ogm-ge", "pmr", "mbt", "jmt", "mmml", "mult", "mmml+rollingq"])
def test_eval_reads_each_methods_checkpoint(rq, grid, method):
    run = run_dir(grid, method)
    result = rq("eval", "--ckpt", run / "last.pt", "--shards", grid["shards"], "--workers", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output
    clean = json.loads((run / "eval" / "eval.json").read_text())["clean"]
    assert clean["samples"] == 6 and clean["acc"] == lines(run)[-1]["test"]["acc"]   # the same model, split
