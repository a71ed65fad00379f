"""MBT (Nagrani et al. 2021, "Attention Bottlenecks for Multimodal Fusion") as a fusion part, built
the way the released RollingQ code builds it (models/mbt_backbone.py, CREMA-D: 4 + 4 blocks):

- the encoders run their own blocks (`depth`, 4) and stop before their final norm (the factory builds
  them with `final_norm=False`): MBT's later blocks continue on the same tokens;
- then `layers` (4) bottleneck blocks per modality: each modality's tokens, with the shared
  bottleneck tokens prepended, pass that modality's block; the bottleneck tokens that come out of
  the blocks are averaged over the modalities and carried to the next layer. The modalities meet
  only there: no token of one modality attends to a token of the other;
- a final LayerNorm per modality; the classifier reads the two CLS tokens side by side.

The bottleneck blocks are ViT blocks with a single head (the released `bot_num_heads = 1`), and the
bottleneck tokens a learned [1, n, D] parameter, normal(std 0.02) at init. With no CLS query over
both modalities there is nothing for RollingQ to rotate: `layers` of the part (the attention layers
the controller watches) is empty.
"""
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .fusion import FusionStats
from .vit import Block, init_linears


class BottleneckFusion(nn.Module):
    def __init__(self, modalities: Sequence[str], dim: int, mlp_dim: int, dropout: float, layers: int,
                 tokens: int, heads: int = 1):
        super().__init__()
        self.dim, self.out_dim = dim, dim * len(modalities)
        self.bottleneck = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.normal_(self.bottleneck, std=0.02)
        self.blocks = nn.ModuleDict({m: nn.ModuleList(Block(dim, heads, mlp_dim, dropout) for _ in range(layers))
                                     for m in modalities})
        self.norms = nn.ModuleDict({m: nn.LayerNorm(dim, eps=1e-6) for m in modalities})
        self.layers = nn.ModuleList()   # no attention over both modalities: nothing for RollingQ to observe
        init_linears(self)

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor] | None = None
                ) -> tuple[Tensor, list[FusionStats]]:
        """`masks`: modality -> [B, N_m] bool, its real tokens: padded ones are never attended to
        (the bottleneck tokens always are)."""
        shared = self.bottleneck.expand(next(iter(tokens.values())).shape[0], -1, -1)
        n = shared.shape[1]
        keep = {m: F.pad(masks[m], (n, 0), value=True) if masks and m in masks else None for m in tokens}
        for i in range(len(next(iter(self.blocks.values())))):
            out = {m: self.blocks[m][i](torch.cat([shared, x], dim=1), keep[m]) for m, x in tokens.items()}
            shared = torch.stack([o[:, :n] for o in out.values()]).mean(dim=0)
            tokens = {m: o[:, n:] for m, o in out.items()}
        # LayerNorm acts per token: normalising the CLS alone is the released norm-then-read-CLS
        return torch.cat([self.norms[m](x[:, 0]) for m, x in tokens.items()], dim=-1), []
