"""Initialise both encoders from a LOCAL timm-format ViT (e.g. ImageNet-21k ViT-B/16). Never downloads.

Accepted files: `.safetensors` and `.pth`/`.pt` holding timm's state_dict names, and `.npz` in the
original google-research / big_vision layout (`Transformer/encoderblock_N/...`), converted to timm
names first. The MIIL ImageNet-21K-P weights the paper cites (Ridnik et al. 2021; timm's
`vit_base_patch16_224_miil_in21k`) are timm names too, with two differences: the attention's qkv
map has no bias, and the head has 11,221 classes (no pre-logits layer). One filter then adapts the
weights to each encoder:
- only blocks 0..depth-1 are used (the paper keeps the first 4 of 12);
- a checkpoint without qkv biases (MIIL) gives zero qkv biases: the encoder then computes what the
  checkpoint's bias-free attention computes, whatever its own initialisation was;
- the audio patch embedding is the RGB kernel summed over its 3 input channels (a gray image
  through the RGB filter gives the same response);
- position embeddings are resampled bilinearly from the checkpoint's square grid (14x14 for
  224/16) to each encoder's grid, which for audio is not square (16 x 62 for 257 x 1004); with one
  position per (frame, patch) (the released visual encoder) every frame starts from the same table.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .vit import ViTEncoder


@dataclass
class LoadReport:
    loaded: int                # tensors copied into the model (both encoders)
    missing: list[str]         # encoder parameters the checkpoint did not provide
    unexpected: list[str]      # checkpoint tensors not used (later blocks, classifier head, ...)
    path: Path | None = None
    layout: str = "timm"       # timm | big_vision | miil

    def lines(self) -> list[str]:
        """What a person should see: what was loaded, left out and left at random init."""
        text = [f"pretrained {self.path} ({self.layout} layout): {self.loaded} tensors loaded into the encoders"]
        if self.layout == "miil":
            text.append("  qkv biases: none in the checkpoint (MIIL ImageNet-21K-P), set to 0; its weights were "
                        "trained on [0, 1] pixels without mean/std, rq feeds ImageNet-normalised frames as the "
                        "released code does")
        # Blocks beyond the model's depth are dropped on purpose: summarise them in one line.
        later = [k for k in self.unexpected if k.startswith("blocks.")]
        if later:
            text.append(f"  not used: {len(later)} tensors of blocks beyond the model's depth")
        text += [f"  not used: {k}" for k in self.unexpected if not k.startswith("blocks.")]
        text += [f"  missing (random init): {k}" for k in self.missing]
        return text


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy a timm ViT checkpoint into every ViT encoder of the model; the report says what was left out.

    Raises ValueError (one line, naming the file) for an unreadable file or mismatched shapes."""
    path = Path(path)
    weights = read_checkpoint(path)
    encoders = {name: enc for name, enc in getattr(model, "encoders", {}).items() if isinstance(enc, ViTEncoder)}
    if not encoders:
        raise ValueError(f"{path}: the model has no ViT encoder to initialise")
    used: set[str] = set()
    loaded, missing = 0, []
    for name, enc in encoders.items():
        own = enc.state_dict()
        target = _adapt(weights, enc, path)
        foreign = [k for k in target if k not in own and k.startswith("blocks.")]
        if foreign:   # e.g. LayerScale's ls1.gamma: these blocks compute something else than this model's
            raise ValueError(f"{path}: {foreign[0]} is not a parameter of this model's ViT blocks (another block "
                             "design, e.g. LayerScale); use a plain timm ViT-B/16 checkpoint")
        # an encoder without a final norm (MBT's) leaves the checkpoint's norm unused
        target = {k: v for k, v in target.items() if k in own}
        used.update(target)
        for key, value in target.items():
            if value.shape != own[key].shape:
                raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, the {name} encoder needs "
                                 f"{tuple(own[key].shape)} (dim, heads or patch size differ)")
        enc.load_state_dict(target, strict=False)
        loaded += len(target)
        missing += [f"{name}.{k}" for k in own if k not in target]
    unexpected = sorted(k for k in weights if k not in used)
    layout = "big_vision" if path.suffix.lower() == ".npz" else "miil" if _without_qkv_bias(weights) else "timm"
    return LoadReport(loaded, missing, unexpected, path, layout)


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """The checkpoint as timm state_dict names -> float32 tensors."""
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file
            weights = load_file(str(path))
        elif suffix in (".pth", ".pt", ".bin"):
            weights = torch.load(path, map_location="cpu", weights_only=True)
            for wrapper in ("model", "state_dict"):     # training checkpoints nest the weights
                if isinstance(weights, dict) and isinstance(weights.get(wrapper), dict):
                    weights = weights[wrapper]
            weights = {k.removeprefix("module."): v for k, v in weights.items() if isinstance(v, Tensor)}
        elif suffix == ".npz":
            with np.load(path) as npz:
                weights = _from_big_vision({k: npz[k] for k in npz.files})
        else:
            raise ValueError("unknown checkpoint type (expected .safetensors, .npz or .pth)")
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    except Exception as e:   # corrupt zip/pickle/safetensors header: one line, not a traceback
        raise ValueError(f"{path}: cannot read checkpoint ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if "pos_embed" not in weights or "patch_embed.proj.weight" not in weights:
        raise ValueError(f"{path}: not a timm ViT checkpoint (no pos_embed / patch_embed.proj.weight)")
    weights = {k: v.float() for k, v in weights.items()}
    bad = [k for k, v in weights.items() if not torch.isfinite(v).all()]
    if bad:   # one NaN here would make every activation, and then every weight, NaN
        raise ValueError(f"{path}: {bad[0]} holds NaN or infinite values ({len(bad)} tensors in all); "
                         "refusing these weights")
    return weights


def _adapt(weights: dict[str, Tensor], enc: ViTEncoder, path: Path) -> dict[str, Tensor]:
    """The subset of `weights` this encoder takes, transformed to its shapes."""
    depth = len(enc.blocks)
    target = {}
    for key, value in weights.items():
        if key.startswith("blocks."):
            index = key.split(".")[1]
            if not index.isdigit():
                raise ValueError(f"{path}: {key} is not a ViT block parameter (blocks.N.<name>)")
            if int(index) < depth:
                target[key] = value
        elif key in ("cls_token", "patch_embed.proj.bias", "norm.weight", "norm.bias"):
            target[key] = value
    kernel = weights["patch_embed.proj.weight"]
    in_chans = enc.patch_embed.proj.in_channels
    if in_chans != kernel.shape[1]:
        if in_chans != 1:
            raise ValueError(f"{path}: cannot adapt a {kernel.shape[1]}-channel patch kernel to {in_chans} channels")
        kernel = kernel.sum(dim=1, keepdim=True)
    target["patch_embed.proj.weight"] = kernel
    pos = resample_pos_embed(weights["pos_embed"], enc.grid, path)
    tables = (enc.pos_embed.shape[1] - 1) // (enc.grid[0] * enc.grid[1])   # > 1: one table per frame
    target["pos_embed"] = torch.cat([pos[:, :1], pos[:, 1:].repeat(1, tables, 1)], dim=1)
    if _without_qkv_bias(weights):
        for i in range(depth):
            if f"blocks.{i}.attn.qkv.weight" in weights:
                target[f"blocks.{i}.attn.qkv.bias"] = torch.zeros(enc.blocks[i].attn.qkv.out_features)
    return target


def _without_qkv_bias(weights: dict[str, Tensor]) -> bool:
    """The MIIL layout: timm names, attention qkv weights without biases."""
    return "blocks.0.attn.qkv.weight" in weights and "blocks.0.attn.qkv.bias" not in weights


def resample_pos_embed(pos: Tensor, grid: tuple[int, int], path: Path | str = "checkpoint") -> Tensor:
    """[1, 1 + g·g, D] (CLS first, square source grid g x g) -> [1, 1 + rows·cols, D], bilinear.

    The source grid is read from the checkpoint itself (g = √(tokens − 1)), never assumed from the
    target, which is what goes wrong when a square source meets a non-square spectrogram grid."""
    n = pos.shape[1] - 1
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"{path}: pos_embed has {n} patch positions, not a square grid")
    cls, patches = pos[:, :1], pos[:, 1:]
    if (g, g) == tuple(grid):
        return pos
    patches = patches.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=tuple(grid), mode="bilinear", align_corners=False)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], dim=1)


def _from_big_vision(w: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """google-research/vision_transformer .npz names and layouts -> timm names and layouts."""
    prefix = next((p for p in ("", "opt/target/", "params/") if f"{p}embedding/kernel" in w), None)
    if prefix is None:
        raise ValueError("not a ViT .npz (no embedding/kernel)")
    t = lambda name: torch.from_numpy(np.ascontiguousarray(w[prefix + name]))   # noqa: E731
    out = {
        "patch_embed.proj.weight": t("embedding/kernel").permute(3, 2, 0, 1),    # HWIO -> OIHW
        "patch_embed.proj.bias": t("embedding/bias"),
        "cls_token": t("cls").reshape(1, 1, -1),
        "pos_embed": t("Transformer/posembed_input/pos_embedding"),
        "norm.weight": t("Transformer/encoder_norm/scale"),
        "norm.bias": t("Transformer/encoder_norm/bias"),
    }
    i = 0
    while f"{prefix}Transformer/encoderblock_{i}/LayerNorm_0/scale" in w:
        src, dst = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        mha = src + "MultiHeadDotProductAttention_1/"
        # query/key/value kernels are [D, heads, head_dim]: flatten to [D, D] (in, out), transpose.
        out[dst + "attn.qkv.weight"] = torch.cat([t(f"{mha}{n}/kernel").flatten(1).T for n in ("query", "key", "value")])
        out[dst + "attn.qkv.bias"] = torch.cat([t(f"{mha}{n}/bias").reshape(-1) for n in ("query", "key", "value")])
        out[dst + "attn.proj.weight"] = t(f"{mha}out/kernel").flatten(0, 1).T   # [heads, head_dim, D]
        out[dst + "attn.proj.bias"] = t(f"{mha}out/bias")
        for norm, ln in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            out[f"{dst}{norm}.weight"] = t(f"{src}{ln}/scale")
            out[f"{dst}{norm}.bias"] = t(f"{src}{ln}/bias")
        for r in (0, 1):
            out[f"{dst}mlp.fc{r + 1}.weight"] = t(f"{src}MlpBlock_3/Dense_{r}/kernel").T
            out[f"{dst}mlp.fc{r + 1}.bias"] = t(f"{src}MlpBlock_3/Dense_{r}/bias")
        i += 1
    return out
