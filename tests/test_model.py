"""The model (every method, every preset) and the RollingQ controller on real tiny networks."""
import dataclasses

import pytest
import torch

from rollingq import (FusionStats, ModelOutput, RollingQ, RollingQConfig, balanced_anchor, create_model, parameter_count,
                      preset_config)
from rollingq.config import METHODS
from rollingq.rotation import imbalance_terms

C = 5


def tiny(method="rollingq", **kw):
    return preset_config("tiny", C, method, frames=2, spec_bins=64, spec_frames=96, **kw)


def inputs(cfg, b=3, seed=0, dtype=torch.float32):
    """A batch of the model's inputs, keyed by modality."""
    gen = torch.Generator().manual_seed(seed)
    spec = torch.randn(b, 1, cfg.spec_bins, cfg.spec_frames, generator=gen, dtype=dtype)
    frames = torch.randn(b, cfg.frames, 3, cfg.image_size, cfg.image_size, generator=gen, dtype=dtype)
    return {"audio": spec, "visual": frames}


def build(cfg, seed=0, double=False):
    torch.manual_seed(seed)
    model = create_model(cfg).eval()
    return model.double() if double else model


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fusion_layers", [1, 2])
def test_forward_shapes_for_every_method(method, fusion_layers):
    cfg = tiny(method, fusion_layers=fusion_layers)
    model = build(cfg)
    x = inputs(cfg)
    if method.startswith("unimodal-"):              # a unimodal model needs (and reads) only its own input
        x = {m: v for m, v in x.items() if m == method.removeprefix("unimodal-")}
    out = model(x)
    assert out.logits.shape == (3, C)
    if method == "unimodal-audio":
        assert list(out.probes) == ["audio"] and torch.equal(out.probes["audio"], out.logits)
        assert not out.probes["audio"].requires_grad        # the head's loss must not count twice
    elif method == "unimodal-visual":
        assert list(out.probes) == ["visual"] and torch.equal(out.probes["visual"], out.logits)
        assert not out.probes["visual"].requires_grad
    else:
        assert out.probes["audio"].shape == out.probes["visual"].shape == (3, C)
    assert len(out.fusion) == (fusion_layers if method in ("mt", "rollingq", "mmml", "mult") else 0)
    for s in out.fusion:
        assert s.q.shape == s.keys["audio"].shape == s.keys["visual"].shape == (3, cfg.dim)
        assert s.shares["audio"].shape == s.shares["visual"].shape == (3,)
        assert not any(t.requires_grad for t in (s.q, s.keys["audio"], s.shares["audio"]))
        cls_self = 1 - s.shares["audio"] - s.shares["visual"]     # the rest is the CLS attending to itself
        assert (s.shares["audio"] > 0).all() and (s.shares["visual"] > 0).all() and (cls_self > 0).all()
    out.logits.sum().backward()        # the graph is whole: every method trains


def test_probes_read_detached_encoder_outputs():
    cfg = tiny("mt")
    model = build(cfg)
    out = model(inputs(cfg))
    (out.probes["audio"].sum() + out.probes["visual"].sum()).backward()
    assert model.probes["audio"].weight.grad is not None
    assert all(p.grad is None for p in model.encoders["audio"].parameters())   # probe loss does not reach the encoder
    out = model(inputs(cfg))
    out.logits.sum().backward()
    assert model.encoders["audio"].patch_embed.proj.weight.grad is not None


@pytest.mark.parametrize("preset,frames,spec_frames,classes", [("ks", 3, 1004, 31), ("cremad", 1, 299, 6)])
def test_paper_presets_forward(preset, frames, spec_frames, classes):
    cfg = preset_config(preset, classes, "rollingq")
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.frames, cfg.spec_frames) == (768, 4, 12, 3072, frames, spec_frames)
    model = build(cfg)
    with torch.no_grad():
        out = model(inputs(cfg, b=1))
    assert out.logits.shape == out.probes["audio"].shape == (1, classes)
    # Audio grid 16 x (T // 16) tokens and k x 196 visual tokens, both seen by the fusion layer.
    assert cfg.audio_grid == (16, spec_frames // 16)
    assert out.fusion[0].q.shape == (1, 768)


def test_rollingq_adds_exactly_the_rotation():
    counts = {}
    for preset, classes in (("ks", 31), ("cremad", 6)):
        for method in ("mt", "rollingq"):
            with torch.device("meta"):                # counting needs no memory
                model = create_model(preset_config(preset, classes, method))
            counts[preset, method] = (parameter_count(model), parameter_count(model, buffers=True))
    for preset in ("ks", "cremad"):
        (mt, mt_all), (rq, rq_all) = counts[preset, "mt"], counts[preset, "rollingq"]
        assert rq == mt and mt_all == mt                 # same network, same trainable parameters
        assert rq_all - mt_all == 768 * 768              # RollingQ adds exactly the rotation
    # Table 4's counts (leaf modules, as thop counts): tests/test_released.py


def test_rotation_changes_the_query_used_but_not_the_parameters():
    model = build(tiny())
    layer = model.fusion_layers[0]
    assert "fusion.layers.0.rotation" not in dict(model.named_parameters())
    assert {"fusion.layers.0.rotation", "fusion.layers.0.rotations_done"} <= set(model.state_dict())
    assert "fusion.layers.0.rotation" not in build(tiny("mt")).state_dict()
    x = inputs(tiny())
    before = model(x)
    params = {k: v.clone() for k, v in model.named_parameters()}
    r = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(7))).Q
    layer.rotation.copy_(r)
    after = model(x)
    assert torch.allclose(after.fusion[0].q, before.fusion[0].q @ r.T, atol=1e-5)
    assert torch.allclose(after.fusion[0].keys["audio"], before.fusion[0].keys["audio"])      # keys untouched
    assert not torch.allclose(after.fusion[0].shares["audio"], before.fusion[0].shares["audio"])
    assert not torch.allclose(after.logits, before.logits)
    # Training leaves the rotation alone: no gradient, not among the optimiser's parameters.
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).logits.square().sum().backward()
    opt.step()
    assert layer.rotation.grad is None and torch.equal(layer.rotation, r)
    assert any(not torch.equal(params[k], v) for k, v in model.named_parameters())   # while the weights moved
    # The rotation travels with the state_dict.
    clone = build(tiny(), seed=1)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.fusion_layers[0].rotation, r)


def _observe(ctl, model, batches):
    with torch.no_grad():
        for x in batches:
            ctl.observe(model(x))


def _means(model, batches):
    """E[q used], E[k̂_a], E[k̂_v] of the first fusion layer over the batches, and AIR."""
    with torch.no_grad():
        stats = [model(x).fusion[0] for x in batches]
    q, ka, kv = (torch.cat([s.q for s in stats]), *(torch.cat([s.keys[m] for s in stats]) for m in ("audio", "visual")))
    return q.mean(0), ka.mean(0), kv.mean(0)


@pytest.mark.parametrize("rotation", ["svd", "minimal"])
def test_controller_rotates_once_onto_the_anchor(rotation):
    cfg, rq = tiny(), RollingQConfig(beta=0.0, max_rotations=1, rotation=rotation)
    model = build(cfg, double=True)
    batches = [inputs(cfg, b=4, seed=s, dtype=torch.float64) for s in range(3)]
    ctl = RollingQ(model, rq)
    _observe(ctl, model, batches)
    air = ctl.air()[0]
    mean_q, mean_ka, mean_kv = _means(model, batches)
    anchor = balanced_anchor(mean_q, mean_ka, mean_kv, air, rq.rho)
    [event] = ctl.end_epoch(epoch=0)
    assert event["rotated"] and event["rotations_done"] == 1 and event["epoch"] == 0
    assert event["air"] == pytest.approx(air) and event["angle_deg"] > 0
    r = model.fusion_layers[0].rotation
    assert torch.allclose(r @ r.T, torch.eye(64, dtype=r.dtype), atol=1e-10)
    # After the rotation the mean query used in attention IS the anchor ...
    new_q, new_ka, new_kv = _means(model, batches)
    assert torch.allclose(new_q, anchor, atol=1e-5)
    # ... which favours the other modality: the imbalance of the means changes sign.
    cos = torch.nn.functional.cosine_similarity
    assert (cos(new_q, new_ka, 0) - cos(new_q, new_kv, 0)).sign() == -torch.tensor(air).sign()
    # max_rotations = 1: never again.
    _observe(ctl, model, batches)
    [event] = ctl.end_epoch(epoch=1)
    assert not event["rotated"] and event["rotations_done"] == 1
    assert torch.equal(model.fusion_layers[0].rotation, r)


def test_rotations_compose():
    cfg, rq = tiny(), RollingQConfig(beta=0.0, max_rotations=2, rotation="minimal")
    model = build(cfg, double=True)
    batches = [inputs(cfg, b=4, seed=s, dtype=torch.float64) for s in range(2)]
    ctl = RollingQ(model, rq)
    for epoch in range(2):
        _observe(ctl, model, batches)
        air = ctl.air()[0]
        mean_q, mean_ka, mean_kv = _means(model, batches)
        anchor = balanced_anchor(mean_q, mean_ka, mean_kv, air, rq.rho)
        assert ctl.end_epoch(epoch)[0]["rotations_done"] == epoch + 1
        assert torch.allclose(_means(model, batches)[0], anchor, atol=1e-5)


def test_beta_threshold():
    cfg = tiny()
    batches = [inputs(cfg, b=4, seed=s) for s in range(2)]
    model = build(cfg)
    probe = RollingQ(model, RollingQConfig())
    _observe(probe, model, batches)
    air = abs(probe.air()[0])
    for beta, expected in ((air + 1e-4, False), (air - 1e-4, True)):
        ctl = RollingQ(model, dataclasses.replace(RollingQConfig(), beta=beta))
        _observe(ctl, model, batches)
        assert ctl.end_epoch(0)[0]["rotated"] is expected
    assert int(model.fusion_layers[0].rotations_done) == 1


def _stats(q, ka, kv):
    b = q.shape[0]
    return ModelOutput(torch.zeros(b, C), {"audio": torch.zeros(b, C), "visual": torch.zeros(b, C)},
                       [FusionStats(q, {"audio": ka, "visual": kv}, {"audio": torch.zeros(b), "visual": torch.zeros(b)})])


E = torch.eye(64)


def _batch(n, toward):
    """n samples whose query is the audio (toward=0) or visual (toward=1) key: AIR terms +1 / -1."""
    return _stats(E[toward].expand(n, 64), E[0].expand(n, 64), E[1].expand(n, 64))


@pytest.mark.parametrize("scope,expected", [("epoch", (2 * 1 + 3 * -1) / 5), ("last-batch", -1.0)])
def test_air_scope(scope, expected):
    ctl = RollingQ(build(tiny()), RollingQConfig(air_scope=scope))
    ctl.observe(_batch(2, toward=0))
    ctl.observe(_batch(3, toward=1))
    assert ctl.air() == [pytest.approx(expected)]
    assert ctl.end_epoch(3)[0]["air"] == pytest.approx(expected)
    assert torch.isnan(torch.tensor(ctl.air())).all()            # end_epoch reset the accumulators


def test_stats_pass_takes_means_from_the_pass_and_air_from_the_epoch():
    model = build(tiny())
    ctl = RollingQ(model, RollingQConfig(stats="pass", beta=0.5, rotation="minimal", rho=1.0, air_scope="epoch"))
    ctl.observe(_batch(4, toward=0))                 # training epoch: audio favoured, AIR = 1
    assert ctl.needs_stats_pass()
    ctl.start_pass()
    q = E[0] + E[2]                                  # the pass sees a different mean query
    ctl.observe(_stats(q.expand(2, 64), (2 * E[0]).expand(2, 64), (3 * E[1]).expand(2, 64)))
    [event] = ctl.end_epoch(0)
    assert event["air"] == pytest.approx(1.0) and event["rotated"]
    anchor = balanced_anchor(q, E[0], E[1], 1.0, 1.0)
    assert torch.allclose(model.fusion_layers[0].rotation @ q, anchor, atol=1e-6)
    # A balanced epoch needs no pass; running stats never do.
    ctl.observe(_stats(E[2].expand(2, 64), E[0].expand(2, 64), E[1].expand(2, 64)))
    assert not ctl.needs_stats_pass()
    running = RollingQ(model, RollingQConfig(stats="running"))
    running.observe(_batch(4, toward=0))
    assert not running.needs_stats_pass()


def test_stats_tensor_sums_across_ranks():
    model = build(tiny())
    whole, rank0, rank1, merged = (RollingQ(model, RollingQConfig(air_scope="epoch")) for _ in range(4))
    gen = torch.Generator().manual_seed(0)
    parts = [_stats(*(torch.randn(3, 64, generator=gen) for _ in range(3))) for _ in range(4)]
    for i, out in enumerate(parts):
        whole.observe(out)
        (rank0 if i % 2 else rank1).observe(out)
    merged.load_stats_tensor(rank0.stats_tensor() + rank1.stats_tensor())   # what all_reduce(SUM) does
    assert merged.air() == [pytest.approx(whole.air()[0])]
    # Means: as if one process had seen everything.
    assert torch.allclose(merged.stats_tensor()[:, 4:], whole.stats_tensor()[:, 4:])
    # Last-batch scope: the last batch of every rank together.
    merged.cfg = RollingQConfig(air_scope="last-batch")
    last = torch.cat([imbalance_terms(p.fusion[0].q, p.fusion[0].keys["audio"], p.fusion[0].keys["visual"]) for p in parts[2:]])
    assert merged.air() == [pytest.approx(last.mean().item())]
    restored = RollingQ(model, RollingQConfig())
    restored.load_state_dict(merged.state_dict())
    assert torch.equal(restored.stats_tensor(), merged.stats_tensor())
    with pytest.raises(ValueError, match="shape"):
        merged.load_stats_tensor(torch.zeros(2, 3))


def test_controller_measures_but_never_rotates_vanilla_mt():
    model = build(tiny("mt"))
    ctl = RollingQ(model, RollingQConfig(beta=0.0))
    _observe(ctl, model, [inputs(tiny("mt"))])
    [event] = ctl.end_epoch(0)
    assert not event["rotated"] and event["rotations_done"] == 0 and -2 <= event["air"] <= 2
    with pytest.raises(ValueError, match="fusion layers"):
        ctl.observe(ModelOutput(torch.zeros(1, C), {}, []))


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="method"):
        preset_config("tiny", C, "late-fusion")
    with pytest.raises(ValueError, match="preset"):
        preset_config("imagenet", C)
    with pytest.raises(ValueError, match="rq stats"):
        RollingQConfig(stats="ema")
    with pytest.raises(ValueError, match="unknown model setting"):
        preset_config("tiny", C, depht=3)
    model = build(tiny())
    with pytest.raises(ValueError, match="does not fit"):
        model({"audio": torch.zeros(1, 1, 64, 96), "visual": torch.zeros(1, 3, 3, 64, 64)})   # 3 frames, built for 2
