"""Method name -> the parts of its model. Each method is one entry of METHOD_FUSION: a function
that builds the fusion part for a ModelConfig (None for a unimodal model), plus which encoders it
uses. Adding a fusion method (MBT, MulT, ...) is adding an entry, not a branch in the model."""
from collections.abc import Callable

import torch.nn as nn

from .config import ModelConfig
from .fusion import AttentionFusion, ConcatFusion, PreNormFusionLayer
from .model import MultimodalTransformer
from .vit import ViTEncoder


def _attention(cfg: ModelConfig, rolling: bool) -> nn.Module:
    layers = [PreNormFusionLayer(cfg.dim, cfg.fusion_heads, cfg.dropout, rolling) for _ in range(cfg.fusion_layers)]
    return AttentionFusion(cfg.dim, layers, nn.LayerNorm(cfg.dim, eps=1e-6), encoder_cls=False)


METHOD_FUSION: dict[str, Callable[[ModelConfig], nn.Module | None]] = {
    "mt": lambda cfg: _attention(cfg, rolling=False),
    "rollingq": lambda cfg: _attention(cfg, rolling=True),
    "concat": lambda cfg: ConcatFusion(cfg.dim, 2),
    "unimodal-audio": lambda cfg: None,
    "unimodal-visual": lambda cfg: None,
}
METHOD_MODALITIES = {"unimodal-audio": ("audio",), "unimodal-visual": ("visual",)}
DEFAULT_MODALITIES = ("audio", "visual")


def _vit(cfg: ModelConfig, in_chans: int, grid: tuple[int, int], frames: int = 0) -> nn.Module:
    return ViTEncoder(in_chans, grid, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, mlp_dim=cfg.mlp_dim,
                      patch=cfg.patch, dropout=cfg.dropout, frames=frames)


# Modality -> its encoder: a ViT over the spectrogram as a 1-channel image, or over k RGB frames.
ENCODERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "audio": lambda cfg: _vit(cfg, 1, cfg.audio_grid),
    "visual": lambda cfg: _vit(cfg, 3, cfg.image_grid, frames=cfg.frames),
}


def create_model(cfg: ModelConfig) -> MultimodalTransformer:
    """The model a ModelConfig describes."""
    modalities = METHOD_MODALITIES.get(cfg.method, DEFAULT_MODALITIES)
    return MultimodalTransformer({m: ENCODERS[m](cfg) for m in modalities}, METHOD_FUSION[cfg.method](cfg),
                                 cfg.num_classes, cfg.dim)
