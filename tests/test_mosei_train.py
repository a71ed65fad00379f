"""The MOSEI path end to end on `rq synth --preset mosei` data: `rq preprocess mosei`, then `--preset mosei`
training (Vanilla MT and RollingQ) with probes, AIR and attention shares named visual and text, and
`rq eval`'s noise sweep and Pearson test on a feature modality."""
import math
import re
from pathlib import Path

import pytest
import torch

from rollingq import create_model, preset_config
from rq.train.data import eval_batches, open_source
from rq.train.data.loader import DataConfig
from rq.train.evaluation.evaluate import EvalConfig, evaluate_checkpoint
from rq.train.sweep import MOSEI_TABLE1_METHODS, folder_name
from rq.train.trainer.config import ConfigError, TrainConfig
from rq.train.trainer.fit import fit

FIELDS = {"acc_visual", "acc_text", "share_visual", "share_text", "air"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread runs them ~10x faster than two fighting over a loaded
    CPU (0.2 s vs 2-5 s a step, measured with the suite's other jobs running)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    from typer.testing import CliRunner
    from rq import cli
    root = tmp_path_factory.mktemp("mosei")
    runner = CliRunner()
    for args in (("synth", "--preset", "mosei", "--out", root / "raw", "--clips", 96, "--text-corrupt", 0.2),
                 ("preprocess", "mosei", "--raw", root / "raw", "--out", root / "shards", "--steps", 12,
                  "--workers", 1)):
        result = runner.invoke(cli.app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return root / "shards"


def test_the_loader_yields_each_modality_and_its_mask(shards):
    src = open_source(str(shards))
    assert src.modalities == ("visual", "text") and src.features == {"visual": (12, 35), "text": (12, 300)}
    batch = next(iter(eval_batches(src, DataConfig(batch_size=8, workers=0, pin_memory=False), split="test")))
    assert batch["features"]["visual"].shape == (8, 12, 35) and batch["features"]["text"].dtype == torch.float32
    assert batch["masks"]["text"].dtype == torch.bool and batch["masks"]["text"][:, 0].all()
    padded = ~batch["masks"]["visual"]
    assert (batch["features"]["visual"][padded] == 0).all() and padded.any()   # segments of 4-12 words


def _train(shards: Path, out: Path, method: str, **options) -> dict:
    cfg = TrainConfig.from_options(str(shards), "mosei", method=method, out=str(out), epochs=4, batch_size=16,
                                   optimizer="adamw", lr=1e-3, warmup_epochs=0, workers=0, device="cpu", **options)
    return fit(cfg)


@pytest.fixture(scope="module")
def runs(shards, tmp_path_factory) -> dict[str, dict]:
    """Vanilla MT and RollingQ (rotating whenever |AIR| > 0, at most once), same seed."""
    root = tmp_path_factory.mktemp("runs")
    return {method: _train(shards, root / method, method, rq_beta=0.0) for method in ("mt", "rollingq")}


@pytest.mark.parametrize("method", ["mt", "rollingq"])
def test_preset_mosei_learns_and_reports_visual_and_text(runs, method):
    run = runs[method]
    epochs = run["epochs"]
    assert epochs[-1]["train"]["loss"] < epochs[0]["train"]["loss"]
    test = epochs[-1]["test"]
    assert FIELDS <= set(test) and all(test[f] is not None for f in FIELDS)
    assert "acc_audio" not in test and 0.3 < test["share_visual"][0] < 0.7
    rotated = [e["rotated"] for epoch in epochs for e in epoch["rollingq"]]
    assert rotated == ([True, False, False, False] if method == "rollingq" else [False] * 4)
    state = torch.load(Path(run["out"]) / "last.pt", weights_only=True)
    assert state["features"] == {"visual": [12, 35], "text": [12, 300]}
    assert sum(p.numel() for k, p in state["model"].items() if k.startswith("encoders.text.blocks.")) == 4 * 174_360


def test_eval_sweeps_noise_on_text_and_runs_the_pearson_test(shards, runs):
    run = runs["mt"]
    result = evaluate_checkpoint(EvalConfig(ckpt=str(Path(run["out"]) / "last.pt"), shards=str(shards),
                                            noise_modality="text", noise_levels=(0.0, 1.0, 8.0), noisy_fraction=0.5,
                                            workers=0, device="cpu"))
    sweep = result["noise"]
    assert sweep["modality"] == "text" and sweep["input_std"] > 0 and result["modalities"] == ["visual", "text"]
    assert sweep["acc_visual"][0] == sweep["acc_visual"][-1]       # the visual input is left alone
    assert sweep["acc"][0] == result["clean"]["acc"] and sweep["share_text"][0] != sweep["share_text"][-1]
    pearson = result["pearson"]
    assert pearson["modality"] == "text" and pearson["r"] is not None and "share on visual" in pearson["convention"]
    with pytest.raises(ConfigError, match="--noise-modality audio: .* has visual and text"):
        evaluate_checkpoint(EvalConfig(ckpt=str(Path(run["out"]) / "last.pt"), shards=str(shards),
                                       noise_modality="audio", workers=0, device="cpu"))


def test_a_preset_that_does_not_fit_the_shards_is_one_line(shards, tmp_path):
    with pytest.raises(ConfigError, match="--preset tiny does not fit these shards of sequence features"):
        fit(TrainConfig.from_options(str(shards), "tiny", out=str(tmp_path / "run"), workers=0, device="cpu"))
    with pytest.raises(ConfigError, match="method unimodal-audio needs audio inputs; the data have visual and text"):
        _train(shards, tmp_path / "ua", "unimodal-audio")


def test_padded_steps_change_nothing_and_get_no_attention():
    cfg = preset_config("mosei", 2, "rollingq", features=(("visual", 35), ("text", 300)), steps=6)
    torch.manual_seed(0)
    model = create_model(cfg).eval()
    real = torch.arange(6)[None] < torch.tensor([[2], [6]])          # sample 0 has 2 real steps, sample 1 all 6
    x = {"visual": torch.randn(2, 6, 35), "text": torch.randn(2, 6, 300), "masks": {"visual": real, "text": real}}
    out = model(x)
    moved = model({**x, "visual": x["visual"].masked_fill(~real[..., None], 50.0)})
    assert torch.allclose(moved.logits, out.logits, atol=1e-5)
    # padding gets no fusion attention and is left out of the mean keys AIR reads
    for name in ("visual", "text"):
        assert torch.allclose(moved.fusion[0].shares[name], out.fusion[0].shares[name], atol=1e-6)
        assert torch.allclose(moved.fusion[0].keys[name], out.fusion[0].keys[name], atol=1e-5)
    unmasked = model({**x, "masks": {}})
    assert not torch.allclose(unmasked.fusion[0].keys["visual"][0], out.fusion[0].keys["visual"][0])


def test_the_text_baseline_trains_on_text_alone(shards, tmp_path):
    run = fit(TrainConfig.from_options(str(shards), "mosei", method="unimodal-text", out=str(tmp_path / "text"),
                                       epochs=1, batch_size=16, max_steps_per_epoch=2, workers=0, device="cpu"))
    test = run["epochs"][0]["test"]
    assert test["acc_text"] is not None and test["acc_visual"] is None and test["share_text"] is None


def test_rq_model_refuses_the_sequence_preset_in_one_line(rq):
    result = rq("model", "--preset", "mosei")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: rq model counts the audio-visual presets; mosei is not one of them"


FUSED = ("mt", "rollingq", "concat", "ogm-ge", "pmr", "mbt", "jmt", "mmml", "mult")


@pytest.mark.parametrize("method", FUSED)
def test_every_fusion_method_leaves_padded_steps_out(method):
    """The baselines' parts (MBT's bottleneck blocks, JMT's joint branch, MMML's cross-modal encoder, MulT's
    crossmodal blocks) take the padding masks too: what padded steps hold changes nothing."""
    cfg = preset_config("mosei", 2, method, features=(("visual", 35), ("text", 300)), steps=6)
    torch.manual_seed(0)
    model = create_model(cfg).eval()
    real = torch.arange(6)[None] < torch.tensor([[2], [6]])
    x = {"visual": torch.randn(2, 6, 35), "text": torch.randn(2, 6, 300), "masks": {"visual": real, "text": real}}
    padded = {m: x[m].masked_fill(~real[..., None], 50.0) for m in ("visual", "text")}
    out, moved = model(x), model({**x, **padded})
    assert torch.allclose(moved.logits, out.logits, atol=1e-4)
    assert all(torch.allclose(moved.probes[m], out.probes[m], atol=1e-4) for m in ("visual", "text"))
    unmasked = model({**x, **padded, "masks": {}})
    assert not torch.allclose(unmasked.logits[0], out.logits[0], atol=1e-3)   # sample 0's padding, if attended


def test_the_baselines_train_on_visual_and_text(shards, tmp_path):
    """One short run of each Table 1 baseline on MOSEI shards: finite losses, metrics named visual and text,
    OGM-GE's and PMR's coefficients named so, and --rollingq rotating MMML's and MulT's readout query."""
    runs = {name: fit(TrainConfig.from_options(
        str(shards), "mosei", method=method, out=str(tmp_path / name), epochs=2, batch_size=16, max_steps_per_epoch=2,
        optimizer="adamw", lr=1e-3, warmup_epochs=0, workers=0, device="cpu", rq_beta=0.0, ogm_start=0, **extra))
        for name, method, extra in (("ogm-ge", "ogm-ge", {}), ("pmr", "pmr", {}), ("mbt", "mbt", {}),
                                    ("jmt", "jmt", {}), ("mmml+rq", "mmml", {"rolling": True}),
                                    ("mult+rq", "mult", {"rolling": True}))}
    for name, run in runs.items():
        for epoch in run["epochs"]:
            assert math.isfinite(epoch["train"]["loss"]) and epoch["test"]["acc_visual"] is not None, name
            assert epoch["test"]["acc_text"] is not None and "acc_audio" not in epoch["test"]
        attends = name.endswith("+rq")    # a fusion CLS over both modalities: attention shares and AIR
        assert (runs[name]["epochs"][-1]["test"]["share_text"] is not None) == attends, name
        assert [e["rotated"] for e in run["epochs"][0]["rollingq"]] == ([True] if attends else []), name
    ogm = runs["ogm-ge"]["epochs"][0]["balance"]
    assert ogm["active"] and set(ogm["steps"]) == {"ratio", "coeff_visual", "coeff_text"}
    assert all(max(v, t) == 1.0 for v, t in zip(ogm["steps"]["coeff_visual"], ogm["steps"]["coeff_text"]))
    pmr = runs["pmr"]["epochs"][1]["balance"]
    assert pmr["active"] and len(pmr["steps"]["coeff_text"]) == 2


def test_sweep_on_mosei_shards_runs_table1s_mosei_rows(rq, shards, tmp_path):
    result = rq("sweep", "--shards", shards, "--out", tmp_path / "grid", "--seeds", "0", "--epochs", 1,
                "--max-steps-per-epoch", 1, "--batch-size", 8, "--workers", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert sorted(p.parent.parent.name for p in (tmp_path / "grid").glob("*/seed0/last.pt")) == sorted(
        map(folder_name, MOSEI_TABLE1_METHODS))
    page = (tmp_path / "grid" / "report" / "report.md").read_text()
    assert "| method | CMU-MOSEI (rq) | CMU-MOSEI (paper) |" in page
    for row, paper in (("Unimodal text", "60.9"), ("MuT", "62.4"), ("MuT + RollingQ", "62.5"), ("MBT", "63.0"),
                       ("MMML + RollingQ", "63.2")):
        assert re.search(rf"^\| {re.escape(row)} \| \d+\.\d \(seed 0\) \| {paper} \|$", page, re.M), row
