"""The baselines of Table 1, each by its defining mechanism on constructed inputs and real tiny parts:
OGM-GE's coefficients and gradient noise, PMR's prototypes and weighting, MBT's bottleneck tokens,
MulT's crossmodal direction, JMT's joint branch, MMML's cross-modal encoder and multi-loss, the
--rollingq switch, and the parameter counts of the paper's Table 4 (CREMA-D, on the meta device)."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import write_shards
from rollingq import ModelOutput, create_model, preset_config
from rollingq.bottleneck import BottleneckFusion
from rollingq.crossmodal import CrossmodalStage
from rollingq.fusion import ConcatFusion
from rollingq.joint import JointCrossAttentionFusion
from rollingq.mmml import CrossModalEncoder
from rollingq.summary import summarize
from rq.train.trainer.balancing import (OGMGE, PMR, modulate_, ogm_coefficients, pmr_coefficients, prototype_logits,
                                        true_class_score, update_prototypes)
from rq.train.trainer.config import BalanceConfig
from rq.train.trainer.distributed import DistEnv

CPU = DistEnv(0, 1, 0, torch.device("cpu"))
C, D = 3, 64


def tiny(method, **kw):
    return preset_config("tiny", C, method, frames=1, spec_bins=32, spec_frames=48, **kw)


def batch(cfg, b=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(b, 1, cfg.spec_bins, cfg.spec_frames, generator=gen),
            "visual": torch.randn(b, cfg.frames, 3, cfg.image_size, cfg.image_size, generator=gen)}


def tokens(n_audio=5, n_visual=7, b=2, dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(b, n_audio, dim, generator=gen), "visual": torch.randn(b, n_visual, dim, generator=gen)}


# ---- OGM-GE ----

def test_ogm_coefficient_from_given_logits():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 2])
    p = math.exp(2) / (math.exp(2) + 2)
    assert true_class_score(logits, labels).item() == pytest.approx(2 * p)
    ratio, (k_audio, k_visual) = ogm_coefficients(torch.tensor([3.0, 1.0]), alpha=0.3)
    assert ratio.item() == pytest.approx(3 / (1 + 1e-5))
    assert k_audio.item() == pytest.approx(1 - math.tanh(0.3 * 3 / (1 + 1e-5)))     # dominant audio slowed
    assert k_visual.item() == 1.0                                                  # the weaker one is not
    _, coeffs = ogm_coefficients(torch.tensor([1.0, 1.0]), alpha=0.3)            # balanced: no modulation
    assert [k.item() for k in coeffs] == [1.0, 1.0]
    _, coeffs = ogm_coefficients(torch.tensor([100.0, 1.0]), alpha=5.0)           # clamped at 0, never negative
    assert coeffs[0].item() == 0.0


def test_ogm_noise_has_the_gradients_own_scale():
    gen = torch.Generator().manual_seed(1)
    grad = torch.randn(200, 300, generator=gen) * 0.05 + 0.01
    before = grad.clone()
    modulate_(grad, torch.tensor(0.25), torch.Generator().manual_seed(2))
    noise = grad - 0.25 * before
    assert noise.mean().abs().item() < 0.01 * before.std().item() * 10
    assert noise.std().item() == pytest.approx(before.std().item(), rel=0.02)   # std of the UNscaled gradient
    again = before.clone()
    modulate_(again, torch.tensor(0.25), torch.Generator().manual_seed(2))
    assert torch.equal(again, grad)                                              # seeded: the same on every rank


def test_ogm_balancer_splits_the_concat_head_and_modulates_encoder_weights_only():
    torch.manual_seed(0)
    cfg = tiny("ogm-ge")
    model = create_model(cfg)
    out = model(batch(cfg))
    parts = ConcatFusion.modality_logits(model.head, out.features)
    assert torch.allclose(parts["audio"] + parts["visual"], out.logits, atol=1e-5)   # the head, split per modality
    bf16 = ConcatFusion.modality_logits(model.head, {m: f.bfloat16() for m, f in out.features.items()})
    assert bf16["audio"].dtype == torch.float32          # bf16 autocast features, fp32 head: the head's precision
    labels = torch.tensor([0, 1, 2, 0])
    ogm = OGMGE(model, CPU, BalanceConfig(ogm_alpha=0.3, ogm_start=1, ogm_end=2), seed=0)
    for epoch, active in ((0, False), (1, True)):
        ogm.start_epoch(epoch)
        model.zero_grad()
        extra = ogm.loss(out, labels)
        assert extra.shape == () and extra.item() == 0.0            # OGM-GE changes gradients, not the loss
        F.cross_entropy(out.logits, labels).backward(retain_graph=True)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        ogm.after_backward()
        scores = torch.stack([true_class_score(parts[m], labels) for m in ("audio", "visual")])
        _, expected = ogm_coefficients(scores, 0.3)
        assert [ogm.coeffs[m].item() for m in ("audio", "visual")] == pytest.approx([k.item() for k in expected])
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            encoder_weight = name.startswith("encoders.") and p.ndim > 1
            if active and encoder_weight:
                k = ogm.coeffs[name.split(".")[1]]
                assert not torch.equal(p.grad, grads[name])
                if p.numel() > 10_000:                               # enough elements for the noise's std
                    assert (p.grad - k * grads[name]).std().item() == pytest.approx(grads[name].std().item(), rel=0.1)
            else:                                                    # biases, head, probes, inactive epochs
                assert torch.equal(p.grad, grads[name]), name
    line = ogm.end_epoch()
    assert line["method"] == "ogm-ge" and line["active"] and len(line["steps"]["coeff_audio"]) == 1
    assert ogm.state_dict() == {"step": 2}


# ---- PMR ----

def test_pmr_prototype_logits_weighting_and_momentum():
    feats = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    protos = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])
    assert torch.allclose(prototype_logits(feats, protos), torch.tensor([[0.0, -5.0, -4.0], [-5.0, 0.0, -3.0]]))
    # ratio = audio score / visual score: the weaker modality alone gets alpha
    assert [k.item() for k in pmr_coefficients(torch.tensor(2.0), 0.6)] == pytest.approx([0.0, 0.6])
    assert [k.item() for k in pmr_coefficients(torch.tensor(0.5), 0.6)] == pytest.approx([0.6, 0.0])
    assert [k.item() for k in pmr_coefficients(torch.tensor(1.0), 0.6)] == [0.0, 0.0]
    sums = {"audio": torch.tensor([[2.0, 4.0], [9.0, 3.0], [0.0, 0.0]])}
    counts = torch.tensor([2.0, 3.0, 0.0])
    first = update_prototypes(None, sums, counts, momentum=0.5)
    assert torch.allclose(first["audio"], torch.tensor([[1.0, 2.0], [3.0, 1.0], [0.0, 0.0]]))
    old = {"audio": torch.tensor([[3.0, 0.0], [1.0, 1.0], [7.0, 7.0]])}
    second = update_prototypes(old, sums, counts, momentum=0.5)
    # (1 - m) * class mean + m * old; a class without samples keeps its old prototype
    assert torch.allclose(second["audio"], torch.tensor([[2.0, 1.0], [2.0, 1.0], [7.0, 7.0]]))


def test_pmr_balancer_builds_prototypes_then_adds_the_weaker_modalitys_loss():
    torch.manual_seed(0)
    model = create_model(tiny("pmr"))
    pmr = PMR(model, CPU, BalanceConfig(pmr_alpha=0.6, pmr_momentum=0.5, pmr_start=0), num_classes=C)
    labels = torch.tensor([0, 1, 2, 0])
    # features where audio sits on its class means and visual does not: visual is the weaker modality
    audio = torch.eye(C, D)[labels] * 5
    visual = torch.randn(4, D)

    def output(a, v):
        return ModelOutput(torch.zeros(4, C), {}, [], {"audio": a, "visual": v})

    pmr.start_epoch(0)
    assert not pmr.active                                        # no prototypes yet: epoch 0 gathers them
    assert pmr.loss(output(audio, visual), labels).item() == 0.0
    assert pmr.end_epoch()["steps"]["ratio"] == []
    assert torch.allclose(pmr.prototypes["audio"], torch.eye(C, D) * 5)
    means = torch.stack([visual[labels == c].mean(0) for c in range(C)])
    assert torch.allclose(pmr.prototypes["visual"], means)
    pmr.start_epoch(1)
    assert pmr.active
    visual_grad = visual.clone().requires_grad_()
    extra = pmr.loss(output(audio, visual_grad), labels)
    logits_v = prototype_logits(visual, means)
    assert torch.allclose(extra, 0.6 * F.cross_entropy(logits_v, labels, reduction="none"), atol=1e-5)
    extra.sum().backward()
    assert visual_grad.grad.abs().sum() > 0                      # the prototype loss trains the visual features
    line = pmr.end_epoch()
    assert line["steps"]["coeff_audio"] == [0.0] and line["steps"]["coeff_visual"] == [0.6]
    assert line["steps"]["ratio"][0] > 1
    # the second epoch's prototypes: (1 - 0.5) * its class means + 0.5 * the first's
    assert torch.allclose(pmr.prototypes["visual"], means)
    restored = PMR(model, CPU, BalanceConfig(), num_classes=C)
    restored.load_state_dict(pmr.state_dict())
    assert torch.equal(restored.prototypes["audio"], pmr.prototypes["audio"])


# ---- MBT ----

def test_mbt_bottleneck_blocks_see_the_shared_tokens_and_average_them():
    torch.manual_seed(0)
    fusion = BottleneckFusion(("audio", "visual"), dim=8, mlp_dim=16, dropout=0.0, layers=2, tokens=3).eval()
    x = tokens()
    seen = {}
    for m in ("audio", "visual"):
        for i, block in enumerate(fusion.blocks[m]):
            block.register_forward_hook(lambda mod, inp, out, key=(m, i): seen.__setitem__(key, (inp[0], out)))
    fused, stats = fusion(x)
    assert fused.shape == (2, 16) and stats == [] and len(fusion.layers) == 0
    assert seen["audio", 0][0].shape == (2, 3 + 5, 8) and seen["visual", 0][0].shape == (2, 3 + 7, 8)
    start = fusion.bottleneck.expand(2, -1, -1)
    assert torch.equal(seen["audio", 0][0][:, :3], start) and torch.equal(seen["visual", 0][0][:, :3], start)
    averaged = (seen["audio", 0][1][:, :3] + seen["visual", 0][1][:, :3]) / 2
    assert torch.allclose(seen["audio", 1][0][:, :3], averaged) and torch.allclose(seen["visual", 1][0][:, :3], averaged)
    assert torch.equal(seen["audio", 1][0][:, 3:], seen["audio", 0][1][:, 3:])   # its own tokens go on


def test_mbt_modalities_meet_only_through_the_bottleneck():
    torch.manual_seed(0)
    x = tokens(seed=0)
    y = {"audio": x["audio"], "visual": tokens(seed=1)["visual"]}   # another picture, the same sound
    one = BottleneckFusion(("audio", "visual"), dim=8, mlp_dim=16, dropout=0.0, layers=1, tokens=2).eval()
    # one bottleneck layer: the averaged tokens are never read again, so audio's CLS ignores the picture
    assert torch.allclose(one(x)[0][:, :8], one(y)[0][:, :8])
    two = BottleneckFusion(("audio", "visual"), dim=8, mlp_dim=16, dropout=0.0, layers=2, tokens=2).eval()
    assert not torch.allclose(two(x)[0][:, :8], two(y)[0][:, :8])


def test_mbt_model_token_counts_and_plain_encoders_without_final_norm():
    cfg = tiny("mbt", bottleneck_tokens=4, bottleneck_layers=2)
    model = create_model(cfg)
    assert all(isinstance(enc.norm, torch.nn.Identity) for enc in model.encoders.values())
    seen = {}
    model.fusion.blocks["audio"][0].register_forward_hook(lambda m, inp, out: seen.__setitem__("in", inp[0].shape))
    out = model(batch(cfg))
    n_audio = 1 + cfg.audio_grid[0] * cfg.audio_grid[1]
    assert seen["in"] == (4, 4 + n_audio, D) and out.logits.shape == (4, C) and out.fusion == []


# ---- MulT ----

def test_mult_crossmodal_attention_runs_from_source_to_target():
    torch.manual_seed(0)
    stage = CrossmodalStage(("audio", "visual"), dim=8, heads=2, mlp_dim=16, dropout=0.0, layers=2).eval()
    x = tokens()
    out = stage(x)
    assert out["audio"].shape == x["audio"].shape and out["visual"].shape == x["visual"].shape
    perm = torch.randperm(7)
    shuffled = stage({"audio": x["audio"], "visual": x["visual"][:, perm]})
    # Z_{v->a}: the audio tokens query the visual ones, so the order of the visual keys does not matter...
    assert torch.allclose(shuffled["audio"], out["audio"], atol=1e-6)
    # ...while Z_{a->v} follows its own (visual) tokens
    assert torch.allclose(shuffled["visual"], out["visual"][:, perm], atol=1e-6)
    other = stage({"audio": x["audio"], "visual": tokens(seed=1)["visual"]})
    assert not torch.allclose(other["audio"], out["audio"])                       # the source does reach it


# ---- JMT ----

def test_jmt_six_key_based_cross_attentions_with_a_joint_branch():
    torch.manual_seed(0)
    fusion = JointCrossAttentionFusion(("audio", "visual"), dim=8, heads=1, dropout=0.0).eval()
    assert fusion.pairs() == [("audio", "visual"), ("audio", "joint"), ("visual", "audio"), ("visual", "joint"),
                              ("joint", "audio"), ("joint", "visual")]
    x = tokens()
    fused, stats = fusion(x)
    assert fused.shape == (2, 6 * 8) and stats == []
    seg = dict(zip(fusion.pairs(), fused.split(8, dim=-1)))
    changed = {"audio": x["audio"].clone(), "visual": x["visual"]}
    changed["audio"][:, 1:] = tokens(seed=1)["audio"][:, 1:]      # audio's tokens but not its CLS
    seg2 = dict(zip(fusion.pairs(), fusion(changed)[0].split(8, dim=-1)))
    assert torch.allclose(seg2["audio", "visual"], seg["audio", "visual"])   # audio's CLS queries the picture
    for pair in (("audio", "joint"), ("visual", "audio"), ("joint", "audio")):
        assert not torch.allclose(seg2[pair], seg[pair]), pair    # the joint branch holds audio's tokens too
    assert torch.allclose(seg2["joint", "visual"], seg["joint", "visual"])   # the joint token over the picture


# ---- MMML ----

def test_mmml_cross_modal_encoder_and_multi_loss():
    torch.manual_seed(0)
    encoder = CrossModalEncoder(("audio", "visual"), dim=8, heads=2, mlp_dim=16, dropout=0.0, layers=1).eval()
    x = tokens()
    out = encoder(x)
    other = encoder({"audio": x["audio"], "visual": tokens(seed=1)["visual"]})
    assert out["audio"].shape == (2, 5, 8) and not torch.allclose(other["audio"], out["audio"])   # cross-attention
    torch.manual_seed(0)
    cfg = tiny("mmml")
    model = create_model(cfg)
    res = model(batch(cfg))
    assert len(res.fusion) == cfg.fusion_layers                   # the readout: a fusion CLS over both modalities
    res.probes["audio"].sum().backward()                          # MMML's unimodal loss reaches its encoder
    assert model.encoders["audio"].patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.encoders["visual"].patch_embed.proj.weight.grad is None


# ---- RollingQ as a switch ----

@pytest.mark.parametrize("method", ["mt", "mmml", "mult"])
def test_rollingq_switch_adds_rotation_buffers(method):
    model = create_model(tiny(method, rolling=True))
    assert model.fusion_layers and all(layer.rotation is not None for layer in model.fusion_layers)
    assert all(layer.rotation is None for layer in create_model(tiny(method)).fusion_layers)


def test_method_rollingq_is_mt_with_the_switch():
    torch.manual_seed(0)
    a = create_model(tiny("rollingq")).state_dict()
    torch.manual_seed(0)
    b = create_model(tiny("mt", rolling=True)).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["concat", "ogm-ge", "pmr", "mbt", "jmt", "unimodal-audio"])
def test_rollingq_switch_on_a_method_without_a_cls_query_is_one_line(rq, tmp_path, method):
    with pytest.raises(ValueError, match=f"--rollingq does not apply to --method {method}: "):
        tiny(method, rolling=True)
    write_shards(tmp_path, {"train": [2], "test": [1]}, n_frames=1, spec_shape=(257, 16), frames_per_clip=1)
    result = rq("train", "--shards", tmp_path, "--method", method, "--rollingq", "--preset", "tiny",
                "--image-size", 32, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "does not apply" in result.stderr


# ---- Table 4 (CREMA-D, 6 classes): leaf-module parameter counts (rq model's, rollingq.summary) ----

L, N = 768 * 768 + 768, 2 * 768                  # a 768x768 linear map with bias; a LayerNorm
FFN = 768 * 3072 + 3072 + 3072 * 768 + 768


def cremad(method):
    """`rq model --preset cremad --method M`: built and run on the meta device (no memory)."""
    return summarize(preset_config("cremad", 6, method))


def test_table4_mbt_matches_the_released_construction():
    n = cremad("mbt").table4
    # 16 ViT-B blocks (4 + 4 per modality), the two patch convolutions, two final norms, the head on the
    # two CLS tokens (1536 -> 6) and the two probes: the released MBT, counted by leaf modules
    assert n == 16 * 7_087_872 + 197_376 + 590_592 + 2 * N + (1536 * 6 + 6) + 2 * (768 * 6 + 6) == 114_215_442
    # Table 4's 114.21M is this count cut to two decimals (rounded it would be 114.22M; a count without the
    # probes, 114,206,214, would round to 114.21M too: the paper does not say which it printed)
    assert math.floor(n / 1e4) / 100 == 114.21


def test_table4_jmt_and_mmml_counts_of_rqs_construction():
    mt = cremad("mt")
    base = sum(n for part, n in mt.parts.items() if part.startswith(("encoders.", "probes.")))
    jmt, mmml = cremad("jmt").table4, cremad("mmml").table4
    assert jmt == base + 3 * 4 * L + (6 * 768 * 6 + 6)           # 3 cross-attention modules, head on 6 x 768
    cme = 2 * (2 * (4 * L + N) + FFN + N)                          # per modality: cross-, self-attention, FFN
    assert mmml - mt.table4 == cme == 18_903_552                   # MT + one cross-modal encoder layer
    print(f"\nTable 4 (CREMA-D): JMT rq {jmt / 1e6:.2f}M vs paper 62.23M ({(jmt - 62.23e6) / 1e6:+.2f}M); "
          f"MMML rq {mmml / 1e6:.2f}M vs paper 77.88M ({(mmml - 77.88e6) / 1e6:+.2f}M)")
    # the paper's JMT is the MT encoders and probes + 8 768x768 maps (two attention modules) exactly
    assert round((base + 8 * L + (768 * 6 + 6)) / 1e4) == 6223


def test_table4_rollingq_switch_adds_the_rotation():
    for method in ("mmml", "mult"):
        plain, rolling = cremad(method), summarize(preset_config("cremad", 6, method, rolling=True))
        assert rolling.table4 - plain.table4 == 768 * 768 and rolling.leaf_parameters == plain.leaf_parameters
