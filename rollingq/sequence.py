"""The encoder of sequence features (CMU-MOSEI's FACET rows and GloVe word vectors): a linear projection
of each step, a CLS token and learned positions, pre-norm Transformer blocks (vit.Block) and a final
norm, trained from scratch, as the paper's 4-layer Transformer for MOSEI (MultiBench's setting).

Input [B, S, D_in] plus a mask [B, S] of the real steps: padded steps are never attended to, here or
(through the model) in the fusion. Output tokens [B, 1 + S, dim], token 0 the CLS, like every encoder.
`final_norm=False` leaves them un-normalised, as ViTEncoder does for MBT."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .vit import Block


class SequenceEncoder(nn.Module):
    def __init__(self, in_dim: int, steps: int, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float,
                 final_norm: bool = True):
        super().__init__()
        self.in_dim, self.steps = in_dim, steps
        self.proj = nn.Linear(in_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + steps, dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6) if final_norm else nn.Identity()   # False: MBT's blocks continue
        for p in (self.cls_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """[B, S, D_in] (and mask [B, S], True = a real step) -> tokens [B, 1 + S, dim] after the final norm."""
        if x.dim() != 3 or x.shape[1:] != (self.steps, self.in_dim):
            raise ValueError(f"input {tuple(x.shape[1:])} does not fit this encoder "
                             f"({self.steps} steps x {self.in_dim})")
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat([cls, self.proj(x)], dim=1) + self.pos_embed)
        keep = F.pad(mask.bool(), (1, 0), value=True) if mask is not None else None   # the CLS is always kept
        for block in self.blocks:
            x = block(x, keep)
        return self.norm(x)
