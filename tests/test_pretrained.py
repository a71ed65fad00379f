"""Pretrained init from a small synthetic timm-format ViT written in all three file formats."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from helpers import write_shards
from rollingq import create_model, load_pretrained, preset_config

D, HEADS, MLP, BLOCKS, GRID = 64, 4, 128, 3, 4       # checkpoint: 3 blocks, 4x4 grid (64 px / 16)


def timm_weights(seed=0, dim=D):
    """A ViT in timm's vit_base_patch16_224 names, small dims, random values."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=gen)   # noqa: E731
    # Position embeddings that vary only along the row: resampling to more columns must keep each row.
    rows = r(GRID, 1, dim).expand(GRID, GRID, dim).reshape(1, GRID * GRID, dim)
    w = {"cls_token": r(1, 1, dim), "pos_embed": torch.cat([r(1, 1, dim), rows], 1),
         "patch_embed.proj.weight": r(dim, 3, 16, 16), "patch_embed.proj.bias": r(dim),
         "norm.weight": r(dim), "norm.bias": r(dim), "head.weight": r(1000, dim), "head.bias": r(1000)}
    for i in range(BLOCKS):
        b = f"blocks.{i}."
        w |= {b + "norm1.weight": r(dim), b + "norm1.bias": r(dim),
              b + "attn.qkv.weight": r(3 * dim, dim), b + "attn.qkv.bias": r(3 * dim),
              b + "attn.proj.weight": r(dim, dim), b + "attn.proj.bias": r(dim),
              b + "norm2.weight": r(dim), b + "norm2.bias": r(dim),
              b + "mlp.fc1.weight": r(MLP, dim), b + "mlp.fc1.bias": r(MLP),
              b + "mlp.fc2.weight": r(dim, MLP), b + "mlp.fc2.bias": r(dim)}
    return w


def big_vision_npz(w, path):
    """The same weights in the google-research/vision_transformer .npz layout (the inverse transforms)."""
    hd = D // HEADS
    out = {"embedding/kernel": w["patch_embed.proj.weight"].permute(2, 3, 1, 0),   # OIHW -> HWIO
           "embedding/bias": w["patch_embed.proj.bias"], "cls": w["cls_token"],
           "Transformer/posembed_input/pos_embedding": w["pos_embed"],
           "Transformer/encoder_norm/scale": w["norm.weight"], "Transformer/encoder_norm/bias": w["norm.bias"],
           "head/kernel": w["head.weight"].T, "head/bias": w["head.bias"]}
    for i in range(BLOCKS):
        b, s = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        mha = s + "MultiHeadDotProductAttention_1/"
        for j, n in enumerate(("query", "key", "value")):
            out[f"{mha}{n}/kernel"] = w[b + "attn.qkv.weight"][j * D:(j + 1) * D].T.reshape(D, HEADS, hd)
            out[f"{mha}{n}/bias"] = w[b + "attn.qkv.bias"][j * D:(j + 1) * D].reshape(HEADS, hd)
        out[mha + "out/kernel"] = w[b + "attn.proj.weight"].T.reshape(HEADS, hd, D)
        out[mha + "out/bias"] = w[b + "attn.proj.bias"]
        for norm, ln in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            out[f"{s}{ln}/scale"], out[f"{s}{ln}/bias"] = w[f"{b}{norm}.weight"], w[f"{b}{norm}.bias"]
        for k in (0, 1):
            out[f"{s}MlpBlock_3/Dense_{k}/kernel"] = w[f"{b}mlp.fc{k + 1}.weight"].T
            out[f"{s}MlpBlock_3/Dense_{k}/bias"] = w[f"{b}mlp.fc{k + 1}.bias"]
    np.savez(path, **{k: v.numpy() for k, v in out.items()})


def model():
    # tiny: dim 64, depth 2, 64x64 frames (4x4 grid, like the checkpoint); audio 64 x 160 -> 4 x 10 grid.
    torch.manual_seed(0)
    return create_model(preset_config("tiny", 3, "rollingq", frames=2, spec_bins=64, spec_frames=160))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    w = timm_weights()
    save_file(w, str(d / "vit.safetensors"))
    torch.save({"model": w, "epoch": 3}, d / "vit.pth")     # a training checkpoint wrapping the weights
    big_vision_npz(w, d / "vit.npz")
    return w, d


def test_weights_arrive_after_the_documented_transforms(checkpoints):
    w, d = checkpoints
    m = model()
    fusion_before = {k: v.clone() for k, v in m.fusion.state_dict().items()}
    report = load_pretrained(m, d / "vit.safetensors")
    for enc in m.encoders.values():
        for i in range(2):                                  # the first `depth` blocks, both encoders
            for k, v in enc.blocks[i].state_dict().items():
                assert torch.equal(v, w[f"blocks.{i}.{k}"]), k
        assert torch.equal(enc.cls_token, w["cls_token"]) and torch.equal(enc.norm.weight, w["norm.weight"])
        assert torch.equal(enc.patch_embed.proj.bias, w["patch_embed.proj.bias"])
        assert torch.equal(enc.pos_embed[:, 0], w["pos_embed"][:, 0])             # CLS position kept
    assert torch.equal(m.encoders['visual'].patch_embed.proj.weight, w["patch_embed.proj.weight"])
    assert torch.allclose(m.encoders['audio'].patch_embed.proj.weight, w["patch_embed.proj.weight"].sum(1, keepdim=True))
    # Visual grid = checkpoint grid: copied. Audio 4 x 10 from 4 x 4: every row keeps its value.
    assert torch.equal(m.encoders['visual'].pos_embed, w["pos_embed"])
    src_rows = w["pos_embed"][0, 1:].view(GRID, GRID, D)[:, 0]
    assert torch.allclose(m.encoders['audio'].pos_embed[0, 1:].view(4, 10, D), src_rows[:, None].expand(4, 10, D), atol=1e-6)
    assert all(torch.equal(v, m.fusion.state_dict()[k]) for k, v in fusion_before.items())
    assert "blocks.2.attn.qkv.weight" in report.unexpected and "head.weight" in report.unexpected
    assert report.missing == ["visual.temporal_embed"]
    printed = "\n".join(report.lines())
    assert "missing (random init): visual.temporal_embed" in printed and "not used: head.weight" in printed
    assert "12 tensors of blocks beyond the model's depth" in printed


def test_audio_position_embeddings_are_resampled_bilinearly_from_the_square_grid(checkpoints):
    w, d = checkpoints
    m = model()
    load_pretrained(m, d / "vit.safetensors")
    grid = w["pos_embed"][:, 1:].reshape(1, GRID, GRID, D).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(4, 10), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    assert torch.allclose(m.encoders['audio'].pos_embed[:, 1:], expected.reshape(1, 40, D))


@pytest.mark.parametrize("name", ["vit.pth", "vit.npz"])
def test_every_format_loads_the_same_weights(checkpoints, name):
    _, d = checkpoints
    reference, other = model(), model()
    load_pretrained(reference, d / "vit.safetensors")
    load_pretrained(other, d / name)
    for (k, a), b in zip(reference.state_dict().items(), other.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    x = {"audio": torch.randn(2, 1, 64, 160), "visual": torch.randn(2, 2, 3, 64, 64)}
    with torch.no_grad():
        assert torch.allclose(reference(x).logits, other(x).logits, atol=1e-5)


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    garbage = tmp_path / "broken.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    for path, reason in ((garbage, "cannot read checkpoint"), (tmp_path / "absent.safetensors", "no such"),
                         (tmp_path / "weights.ckpt", "no such")):
        with pytest.raises(ValueError, match=reason) as e:
            load_pretrained(model(), path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "weights.ckpt").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown checkpoint type"):
        load_pretrained(model(), tmp_path / "weights.ckpt")
    narrow = tmp_path / "dim32.safetensors"
    save_file(timm_weights(dim=32), str(narrow))
    with pytest.raises(ValueError, match=r"dim32.safetensors: .* has shape"):
        load_pretrained(model(), narrow)


def test_miil_imagenet_21k_p_layout(tmp_path):
    """timm's vit_base_patch16_224_miil_in21k layout: timm names, no qkv biases, an 11,221-class head."""
    w = {k: v for k, v in timm_weights(seed=1).items() if not k.endswith("attn.qkv.bias")}
    gen = torch.Generator().manual_seed(2)
    w["head.weight"], w["head.bias"] = torch.randn(11221, D, generator=gen), torch.randn(11221, generator=gen)
    path = tmp_path / "vit_base_patch16_224_miil_in21k.pth"
    torch.save(w, path)
    m = model()
    for enc in m.encoders.values():                     # a non-zero init the checkpoint must override
        torch.nn.init.normal_(enc.blocks[0].attn.qkv.bias)
    report = load_pretrained(m, path)
    assert report.layout == "miil" and report.missing == ["visual.temporal_embed"]
    for enc in m.encoders.values():
        for i in range(2):
            assert torch.equal(enc.blocks[i].attn.qkv.weight, w[f"blocks.{i}.attn.qkv.weight"])
            assert torch.equal(enc.blocks[i].attn.qkv.bias, torch.zeros(3 * D))     # = the bias-free attention
    assert {"head.weight", "head.bias"} <= set(report.unexpected)
    printed = "\n".join(report.lines())
    assert "(miil layout)" in printed and "qkv biases: none in the checkpoint" in printed


def test_per_frame_positions_start_from_the_same_table_for_every_frame(checkpoints):
    w, d = checkpoints
    torch.manual_seed(0)
    m = create_model(preset_config("tiny", 3, "mt", frames=2, spec_bins=64, spec_frames=160,
                                   visual_positions="per-frame"))
    report = load_pretrained(m, d / "vit.safetensors")
    pos = m.encoders["visual"].pos_embed
    assert pos.shape == (1, 1 + 2 * GRID * GRID, D) and report.missing == []
    assert torch.equal(pos[:, 1:1 + 16], w["pos_embed"][:, 1:]) and torch.equal(pos[:, 17:], w["pos_embed"][:, 1:])
def test_foreign_block_keys_and_non_finite_weights_are_refused(tmp_path, rq):
    """A LayerScale ViT (an extra per-block `ls1.gamma`) is another model; one NaN would spread to every
    weight. Each is one line naming the file and the tensor; `rq train --pretrained` exits 2."""
    layerscale = tmp_path / "layerscale.safetensors"
    save_file({**timm_weights(), "blocks.0.ls1.gamma": torch.ones(D)}, str(layerscale))
    nan = tmp_path / "nan.pth"
    w = timm_weights()
    w["blocks.1.attn.qkv.weight"][3, 5] = float("nan")
    torch.save(w, nan)
    for path, reason in ((layerscale, "blocks.0.ls1.gamma is not a parameter of this model's ViT blocks"),
                         (nan, "blocks.1.attn.qkv.weight holds NaN or infinite values")):
        with pytest.raises(ValueError, match=reason) as e:
            load_pretrained(model(), path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    shards = tmp_path / "shards"
    write_shards(shards, {"train": [4]}, classes=2, n_frames=2, spec_shape=(257, 20))
    result = rq("train", "--shards", shards, "--preset", "tiny", "--workers", "0", "--pretrained", layerscale,
                "--out", tmp_path / "run", "--device", "cpu")
    assert result.exit_code == 2 and "ls1.gamma" in result.stderr and len(result.stderr.strip().splitlines()) == 1
