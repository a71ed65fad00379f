"""The multimodal Transformer: two ViT encoders, fusion, classifier and the two linear probes.

Every method is built from the same parts: `mt` and `rollingq` are the same network (rollingq
adds only the rotation buffers), `concat` replaces the fusion attention by a linear layer on the
two encoder CLS vectors, `unimodal-*` drop the other encoder.

Size (parameter_count): ks Vanilla MT 60,849,501, cremad 60,249,618; rollingq adds the 768x768
rotation buffer (589,824). The paper's Table 4 (CREMA-D) says 59.87M -> 60.46M: the same +0.59M,
and a base 0.6% smaller; the paper does not list the fusion layer's parts (ours: norm, qkv, output
projection, no MLP) or its audio position-embedding size, which is where such a gap can come from.
"""
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch import Tensor

from .config import ModelConfig
from .fusion import FusionAttention, FusionStats
from .vit import ViTEncoder


@dataclass
class ModelOutput:
    logits: Tensor                   # [B, C] the model's prediction
    audio_logits: Tensor | None      # [B, C] audio probe; None when the model has no audio encoder
    visual_logits: Tensor | None     # [B, C] visual probe; None when the model has no visual encoder
    fusion: list[FusionStats] = field(default_factory=list)   # one per fusion layer (mt, rollingq)


class MultimodalTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, c = cfg.dim, cfg.num_classes
        common = dict(dim=d, depth=cfg.depth, heads=cfg.heads, mlp_dim=cfg.mlp_dim, patch=cfg.patch,
                      dropout=cfg.dropout)
        self.audio = (ViTEncoder(1, cfg.audio_grid, **common)
                      if cfg.method != "unimodal-visual" else None)
        self.visual = (ViTEncoder(3, cfg.image_grid, frames=cfg.frames, **common)
                       if cfg.method != "unimodal-audio" else None)
        self.fusion = nn.ModuleList()
        if cfg.method in ("mt", "rollingq"):
            self.fusion_cls = nn.Parameter(torch.zeros(1, 1, d))
            nn.init.trunc_normal_(self.fusion_cls, std=0.02)
            self.fusion.extend(FusionAttention(d, cfg.fusion_heads, cfg.dropout, rolling=cfg.method == "rollingq")
                               for _ in range(cfg.fusion_layers))
            self.fusion_norm = nn.LayerNorm(d, eps=1e-6)
        in_head = 2 * d if cfg.method == "concat" else d
        self.head = nn.Linear(in_head, c)
        # Probes read the encoders' CLS detached: they measure each encoder, they do not train it.
        # A unimodal model's head already is its encoder's probe.
        multimodal = self.audio is not None and self.visual is not None
        self.audio_probe = nn.Linear(d, c) if multimodal else None
        self.visual_probe = nn.Linear(d, c) if multimodal else None

    def forward(self, spec: Tensor | None, frames: Tensor | None) -> ModelOutput:
        """spec [B, 1, F, T] log spectrogram, frames [B, k, 3, H, W] normalised.
        A unimodal model ignores (and accepts None for) the modality it does not use."""
        a = self.audio.forward_features(spec) if self.audio is not None else None
        v = self.visual.forward_features(frames) if self.visual is not None else None
        # Unimodal: the head is the probe. Its probe logits are detached like every probe's, so a
        # trainer adding the probes' loss does not count the head's gradient twice.
        if v is None:
            logits = self.head(a[:, 0])
            return ModelOutput(logits, logits.detach(), None)
        if a is None:
            logits = self.head(v[:, 0])
            return ModelOutput(logits, None, logits.detach())
        audio_logits = self.audio_probe(a[:, 0].detach())
        visual_logits = self.visual_probe(v[:, 0].detach())
        if self.cfg.method == "concat":
            return ModelOutput(self.head(torch.cat([a[:, 0], v[:, 0]], dim=-1)), audio_logits, visual_logits)
        x = torch.cat([self.fusion_cls.expand(a.shape[0], -1, -1), a[:, 1:], v[:, 1:]], dim=1)
        stats = []
        for i, layer in enumerate(self.fusion):
            x, s = layer(x, n_audio=a.shape[1] - 1, cls_only=i == len(self.fusion) - 1)
            stats.append(s)
        return ModelOutput(self.head(self.fusion_norm(x[:, 0])), audio_logits, visual_logits, stats)


def parameter_count(model: nn.Module, buffers: bool = False) -> int:
    """Number of parameters; with buffers=True also the floating-point buffers (the RollingQ
    rotation), the way the paper's Table 4 counts RollingQ's extra 768x768. Integer counters
    (rotations_done) are bookkeeping, not weights, and never counted."""
    n = sum(p.numel() for p in model.parameters())
    if buffers:
        n += sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return n
