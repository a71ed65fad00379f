"""The released model (the authors' fusion layer, inputs, init), its parameter counts against the
paper's Table 4, `rq model`, and the released RollingQ defaults on a real tiny training run; each
improvement one option away, restoring rq 0.1's behaviour."""
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import write_shards
from rollingq import RollingQ, RollingQConfig, balanced_anchor, create_model, preset_config, summarize
from rollingq.fusion import AttentionFusion, PreNormFusionLayer, ReleasedFusionLayer
from rq.train.trainer.build import build_model, data_config, input_warnings
from rq.train.trainer.checkpoint import load_checkpoint
from rq.train.trainer.config import ConfigError, TrainConfig
from rq.train.trainer.fit import fit
from rq.train.data import model_inputs, open_source, to_device, train_batches

D, C = 64, 3


# ---- parameter counts and `rq model` (meta device: no memory) ----

def test_table4_parameter_counts_on_cremad():
    mt, rq = (summarize(preset_config("cremad", 6, m)) for m in ("mt", "rollingq"))
    # SPEC.md's sum of the released model's leaf modules, = Table 4's 59.87M (and 60.46M with the rotation)
    assert mt.leaf_parameters == mt.table4 == 59_871_762
    assert rq.leaf_parameters == 59_871_762 and rq.buffers == 768 * 768 and rq.table4 == 60_461_586
    assert round(mt.table4 / 1e6, 2) == 59.87 and round(rq.table4 / 1e6, 2) == 60.46
    # bare parameters (CLS tokens, position embeddings) are what "all" adds; the unused norm is frozen
    assert mt.parameters - mt.leaf_parameters == 768 * (3 + 290 + 197)
    assert mt.parameters - mt.trainable == 2 * 768
    assert mt.parts["fusion"] == 4 * (768 * 768 + 768) + 2 * 768
    # the rotation costs one D x D product per sample and nothing else
    assert rq.macs["total"] - mt.macs["total"] == 768 * 768 and rq.macs["thop"] == mt.macs["thop"]


@pytest.mark.parametrize("preset,audio,visual", [("cremad", 289, 197), ("cremad-official", 177, 197),
                                                 ("ks", 993, 589), ("ks-official", 513, 589)])
def test_token_counts_of_the_presets(preset, audio, visual):
    s = summarize(preset_config(preset, 6, "mt"))
    assert s.tokens == {"audio": audio, "visual": visual}
    # the released visual encoder has one position per (frame, patch); same leaf count whatever the inputs
    assert s.leaf_parameters == summarize(preset_config(preset.split("-")[0], 6, "mt")).leaf_parameters


def test_rq_model_command(rq):
    result = rq("model", "--preset", "cremad", "--method", "rollingq", "--json")
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["leaf_parameters"] == 59_871_762 and card["table4"] == 60_461_586
    assert card["config"]["fusion_block"] == "released" and card["tokens"] == {"audio": 289, "visual": 197}
    table = rq("model", "--preset", "cremad-official", "--method", "mt", "--fusion-layers", "2")
    assert table.exit_code == 0 and "59,871,762" not in table.stdout and "patched transposed" in table.stdout
    # the help shows the defaults, read from RollingQConfig and the presets
    help_text = " ".join(re.sub("[│╭╮╰╯─]", " ", rq("train", "--help").output).split())
    for default in ("[pass]", "[last-batch]", "[svd]", "[0: alpha = 1/2]"):
        assert default in help_text
    bad = rq("model", "--preset", "cremad", "--fusion-block", "postnorm")
    assert bad.exit_code == 2 and "--fusion-block must be one of released, prenorm" in bad.output


# ---- the released fusion layer ----

def _fusion(rolling=False, layers=1, dropout=0.2, seed=0):
    torch.manual_seed(seed)
    return AttentionFusion(D, [ReleasedFusionLayer(D, 1, dropout, rolling) for _ in range(layers)], torch.nn.Identity(),
                           encoder_cls=True)


def _tokens(b=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(b, 1 + 5, D, generator=g), "visual": torch.randn(b, 1 + 4, D, generator=g)}


def test_released_layer_attends_over_every_token_cls_included_without_residual_or_norm():
    fusion = _fusion().eval()
    layer = fusion.layers[0]
    tokens = _tokens()
    fused, [stats] = fusion(tokens)
    # By hand: [fusion CLS; audio incl. its CLS; visual incl. its CLS], single head, scale 1/sqrt(D),
    # output = out-map of the attention mix, nothing added, nothing normalised.
    x = torch.cat([fusion.cls_token.expand(3, -1, -1), tokens["audio"], tokens["visual"]], 1)
    q, k, v = layer.q(x[:, 0]), layer.k(x), layer.v(x)
    attn = ((q[:, None] @ k.transpose(1, 2)) / math.sqrt(D)).softmax(-1)
    assert torch.allclose(fused, layer.proj((attn @ v)[:, 0]), atol=1e-6)
    assert torch.allclose(stats.keys["audio"], k[:, 1:7].mean(1)) and torch.allclose(stats.keys["visual"], k[:, 7:].mean(1))
    assert torch.allclose(stats.shares["audio"], attn[:, 0, 1:7].sum(-1), atol=1e-6)
    # the encoders' CLS tokens are attended: change only the audio CLS and the output moves
    moved = {**tokens, "audio": tokens["audio"].clone()}
    moved["audio"][:, 0] += 1.0
    assert not torch.allclose(fusion(moved)[0], fused)
    # no residual: with the out-map zeroed the layer outputs zeros (a residual would pass x through)
    with torch.no_grad():
        layer.proj.weight.zero_(), layer.proj.bias.zero_()
    assert torch.equal(fusion(tokens)[0], torch.zeros(3, D))
    # the release's LayerNorm exists (Table 4 counts it) but is frozen and never applied
    assert not any(p.requires_grad for p in layer.unused_norm.parameters())


def test_released_layer_dropout_trains_and_not_in_eval():
    fusion = _fusion()
    tokens = _tokens()
    fusion.train()
    a, b = fusion(tokens)[0], fusion(tokens)[0]
    assert not torch.allclose(a, b)
    assert (a == 0).float().mean() > 0.1                 # output dropout 0.2 zeroes about a fifth
    fusion.eval()
    assert torch.equal(fusion(tokens)[0], fusion(tokens)[0])
    assert torch.allclose(_fusion(dropout=0.0).train()(tokens)[0], fusion(tokens)[0], atol=1e-6)


def test_first_layer_query_is_input_independent_and_stacking_for_mt_star():
    fusion = _fusion(rolling=True, layers=2).eval()
    stats = fusion(_tokens())[1]
    fixed, second = fusion.fixed_queries()
    assert second is None
    assert torch.allclose(stats[0].q, fixed.expand(3, -1), atol=1e-6)    # the same query for every sample
    assert not torch.allclose(stats[1].q[0], stats[1].q[1])            # layer 2 sees mixed tokens
    # the rotation acts on the fixed query too
    r = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(3))).Q
    fusion.layers[0].rotation.copy_(r)
    assert torch.allclose(fusion.fixed_queries()[0], r @ fixed, atol=1e-5)


def test_default_and_prenorm_fusion_blocks():
    released = create_model(preset_config("tiny", C, "rollingq", fusion_block="released", frames=2, spec_bins=64,
                                          spec_frames=96))
    assert isinstance(released.fusion_layers[0], ReleasedFusionLayer) and released.fusion.encoder_cls
    assert isinstance(released.fusion.norm, torch.nn.Identity)
    prenorm = create_model(preset_config("ks", 31, "mt", fusion_block="prenorm"))
    assert isinstance(prenorm.fusion_layers[0], PreNormFusionLayer) and not prenorm.fusion.encoder_cls
    # rq 0.1's parameter names: its checkpoints load into `--fusion-block prenorm`
    assert {k for k in prenorm.state_dict() if k.startswith("fusion.")} == {
        "fusion.cls_token", "fusion.norm.weight", "fusion.norm.bias", *(f"fusion.layers.0.{n}" for n in (
            "norm.weight", "norm.bias", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias"))}
    assert isinstance(create_model(preset_config("ks", 31, "mt")).fusion_layers[0], ReleasedFusionLayer)


# ---- inputs and init of the official presets ----

def test_transposed_audio_patches_the_transpose():
    cfg = preset_config("tiny", C, "mt", frames=1, spec_bins=64, spec_frames=96)
    plain, transposed = create_model(cfg), create_model(replace(cfg, spec_bins=96, spec_frames=64, audio_transpose=True))
    assert transposed.encoders["audio"].grid == (4, 6) == plain.encoders["audio"].grid
    transposed.load_state_dict(plain.state_dict())
    spec = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        assert torch.allclose(transposed.encoders["audio"].forward_features(spec.transpose(-2, -1)),
                              plain.encoders["audio"].forward_features(spec))
    with pytest.raises(ValueError, match=r"1 x 96x64, patched transposed"):
        transposed.encoders["audio"].forward_features(spec)


def test_released_init_and_per_frame_positions():
    torch.manual_seed(0)
    model = create_model(preset_config("tiny", C, "rollingq", init="released", visual_positions="per-frame",
                                       fusion_block="released", frames=3, spec_bins=64, spec_frames=96))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in linears)
    qkv = model.encoders["audio"].blocks[0].attn.qkv.weight.detach()           # 192 x 64: Xavier std sqrt(2 / 256)
    assert abs(float(qkv.std()) / math.sqrt(2 / (64 + 192)) - 1) < 0.05
    assert float(model.encoders["visual"].cls_token.detach().abs().max()) < 1e-5
    visual = model.encoders["visual"]
    assert visual.temporal_embed is None and visual.pos_embed.shape == (1, 1 + 3 * 16, 64)
    out = model({"audio": torch.randn(1, 1, 64, 96), "visual": torch.randn(1, 3, 3, 64, 64)})
    assert out.logits.shape == (1, C)


# ---- the released RollingQ defaults on a real tiny run ----

@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("released") / "shards"
    write_shards(out, {"train": [8, 8], "test": [4]}, classes=C, n_frames=3, spec_shape=(64, 40), frames_per_clip=2)
    return out


def _run(shards, out, **options):
    defaults = dict(out=str(out), workers=0, batch_size=4, epochs=2, seed=0, device="cpu", fusion_block="released")
    return TrainConfig.from_options(str(shards), "tiny", **{**defaults, **options})


def _keys_and_query(cfg, model, epoch=0):
    """E[k̂_a], E[k̂_v] over the training loader of `epoch` (eval mode, augmentations on), and the query."""
    src = open_source(cfg.shards)
    ka, kv = [], []
    model.eval()
    with torch.no_grad():
        for batch in train_batches(src, data_config(cfg, workers=0, seed=cfg.seed, pin_memory=False,
                                                    shuffle_buffer=cfg.shuffle_buffer), epoch=epoch, rank=0, world=1,
                                   steps=4):
            s = model(model_inputs(to_device(batch, "cpu"))).fusion[0]
            ka.append(s.keys["audio"])
            kv.append(s.keys["visual"])
    return torch.cat(ka).mean(0), torch.cat(kv).mean(0), model.fusion.fixed_queries()[0]


def test_released_defaults_rotate_once_at_epoch_0_with_alpha_one_half(shards, tmp_path):
    cfg = _run(shards, tmp_path / "run", epochs=1)
    assert cfg.rollingq == RollingQConfig(rho=0.0, beta=0.0, max_rotations=1, stats="pass", rotation="svd",
                                          air_scope="last-batch")
    [line] = fit(cfg)["epochs"]
    [event] = line["rollingq"]
    assert event["rotated"] and event["alpha"] == 0.5 and event["rotations_done"] == 1 and event["epoch"] == 0
    # The query now sits halfway between the unit mean keys of the extra statistics pass (the epoch's
    # training stream again, model in eval mode): equal cosines to both, which it did not have before.
    state = load_checkpoint(Path(cfg.out) / "last.pt")
    cfg = TrainConfig.from_dict(state["config"])           # as run: frames from the manifest
    model = build_model(cfg, C, (64, 40))
    model.load_state_dict(state["model"])
    ka, kv, q = _keys_and_query(cfg, model)
    cos = lambda a, b: float(F.cosine_similarity(a, b, 0))   # noqa: E731
    before = model.fusion_layers[0].rotation.T @ q
    assert abs(cos(q, ka) - cos(q, kv)) < 1e-4 < abs(cos(before, ka) - cos(before, kv))
    # AIR of the last training batch: not the epoch's mean over its 4 batches
    assert event["air"] != pytest.approx(line["train"]["air"][0], abs=1e-6)


def test_epoch_air_option_and_a_second_epoch_without_rotation(shards, tmp_path):
    epochs = fit(_run(shards, tmp_path / "run", rq_air_scope="epoch"))["epochs"]
    first, second = (h["rollingq"][0] for h in epochs)
    assert first["air"] == pytest.approx(epochs[0]["train"]["air"][0], abs=1e-5)   # the epoch's AIR
    assert first["rotated"] and not second["rotated"] and second["rotations_done"] == 1


def test_running_stats_take_the_current_query_where_it_is_input_independent():
    cfg = preset_config("tiny", C, "rollingq", fusion_block="released", frames=2, spec_bins=64, spec_frames=96)
    torch.manual_seed(0)
    model = create_model(cfg).eval().double()
    gen = torch.Generator().manual_seed(0)
    batches = [{"audio": torch.randn(4, 1, 64, 96, generator=gen, dtype=torch.float64),
                "visual": torch.randn(4, 2, 3, 64, 64, generator=gen, dtype=torch.float64)} for _ in range(2)]
    ctl = RollingQ(model, RollingQConfig(stats="running", air_scope="epoch", rho=1.0))
    keys = []
    with torch.no_grad():
        for i, x in enumerate(batches):
            out = model(x)
            ctl.observe(out)
            keys.append(out.fusion[0].keys)
            model.fusion_layers[0].q.bias.add_(0.5)        # the query moves during the "epoch"
    air = ctl.air()[0]
    mean_ka, mean_kv = (torch.cat([k[m] for k in keys]).mean(0) for m in ("audio", "visual"))
    now = model.fusion.fixed_queries()[0]
    [event] = ctl.end_epoch(0)
    assert event["rotated"]
    # the current query lands on the anchor of the running key means: exactly, not the averaged query
    assert torch.allclose(model.fusion.fixed_queries()[0], balanced_anchor(now, mean_ka, mean_kv, air, 1.0), atol=1e-8)


def test_options_restore_rq_0_1(shards, tmp_path):
    old = dict(fusion_block="prenorm", rq_rho=1.0, rq_beta=0.1, rq_stats="running", rq_air_scope="epoch")
    cfg = _run(shards, tmp_path / "run", **old)
    assert cfg.rollingq == RollingQConfig(rho=1.0, beta=0.1, max_rotations=1, stats="running", rotation="svd",
                                          air_scope="epoch")
    model = build_model(cfg, C, (64, 40))
    assert isinstance(model.fusion_layers[0], PreNormFusionLayer) and not model.fusion.encoder_cls
    # a run folder written before fusion_block existed trained the pre-norm block
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "fusion_block"}
    assert TrainConfig.from_dict(legacy).fusion_block == "prenorm"
    for line in fit(replace(cfg, epochs=1))["epochs"]:
        [event] = line["rollingq"]
        assert event["air"] == pytest.approx(line["train"]["air"][0], abs=1e-5)
        assert event["alpha"] == pytest.approx(0.5 * (1 + math.tanh(-event["air"])))
        assert event["rotated"] == (abs(event["air"]) > 0.1)


def test_shards_of_another_shape_stop_the_run_in_one_line(shards, tmp_path, rq):
    with pytest.raises(ConfigError, match=r"spectrograms are 64x40, the cremad-official preset is made for 257x188"):
        fit(replace(_run(shards, tmp_path / "run"), preset="cremad-official"))
    # --image-size 48: the frames fit the crop, so the spectrogram shape is what stops the run
    result = rq("train", "--shards", shards, "--preset", "ks", "--image-size", 48, "--workers", 0, "--device", "cpu",
                "--out", tmp_path / "r")
    assert result.exit_code == 2 and "64x40" in result.output and "257x1004" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    # frames of other times still train, with a warning naming the preprocessing option
    official = replace(_run(shards, tmp_path / "run"), preset="ks-official")
    assert "--frame-times middle" in input_warnings(official, {"frames": {"frame_size": 256}})[0]
    assert input_warnings(official, {"frames": {"times": "middle"}}) == input_warnings(
        replace(official, preset="ks"), {}) == []
