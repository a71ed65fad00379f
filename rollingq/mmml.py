"""MMML's cross-modal encoder (Wu et al. 2024, "Multimodal Multi-loss Fusion Network for Sentiment
Analysis"; the paper's text and its authors' code, utils/cross_attn_encoder.py CMELayer, read for
facts). One layer, for each modality m with the other modality o, three post-norm (BERT-style)
sublayers:
    x_m <- LN(x_m + CA(x_m -> x_o))      cross-attention: m's tokens query o's (both from the layer's input)
    x_m <- LN(x_m + SA(x_m))             self-attention
    x_m <- LN(x_m + FFN(x_m))            ReLU feed-forward network
The multi-loss half of MMML is in the model, not here: its unimodal heads (the probes) train their
encoders (`probe_grad`), each with the same weight as the fused loss (MMML's loss_weights M = T = A = 1).

What rq chose where MMML's setting (text + audio features, regression) differs from this one, and
where the RollingQ paper (Table 1: "MMML, 2 fusion layers", "MMML + RollingQ") is silent:
- the readout: MMML concatenates the two CLS outputs into an MLP; here the `mt` attention fusion reads
  the cross-modal encoder's tokens (a fusion CLS over both modalities: the query "MMML + RollingQ"
  rotates), so MMML's 2 fusion layers are 1 cross-modal encoder layer (`cross_layers`, MMML's own
  default num_hidden_layers = 1) + 1 fusion attention layer (`fusion_layers`);
- dropout: the model's `dropout` (MMML's 0.3 is not the paper's setting here), 12 heads (MMML's BERT
  config), FFN width `mlp_dim`; LayerNorm eps 1e-6 like the encoders (BERT's 1e-12).
"""
from collections.abc import Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .crossmodal import CrossAttention, mask_of
from .vit import init_linears


class _PostNorm(nn.Module):
    """x <- LN(x + dropout(attention(x, context)))."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attn = CrossAttention(dim, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor, context: Tensor, keep: Tensor | None = None) -> Tensor:
        return self.norm(x + self.drop(self.attn(x, context, keep)))


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.drop(self.fc2(F.relu(self.fc1(x)))))


class CrossModalEncoderLayer(nn.Module):
    def __init__(self, modalities: Sequence[str], dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        if len(modalities) != 2:
            raise ValueError("MMML's cross-modal encoder is built for two modalities")
        self.cross = nn.ModuleDict({m: _PostNorm(dim, heads, dropout) for m in modalities})
        self.self_attn = nn.ModuleDict({m: _PostNorm(dim, heads, dropout) for m in modalities})
        self.ffn = nn.ModuleDict({m: _FeedForward(dim, mlp_dim, dropout) for m in modalities})

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """`masks`: modality -> [B, N_m] bool, its real tokens: padded ones are never attended to."""
        (a, xa), (b, xb) = tokens.items()
        other = {a: (b, xb), b: (a, xa)}
        out = {}
        for m, x in tokens.items():
            o, xo = other[m]
            x = self.cross[m](x, xo, mask_of(masks, o))
            x = self.self_attn[m](x, x, mask_of(masks, m))
            out[m] = self.ffn[m](x)
        return out


class CrossModalEncoder(nn.Module):
    """`layers` cross-modal encoder layers, tokens -> tokens (a stage of `StagedFusion`)."""

    def __init__(self, modalities: Sequence[str], dim: int, heads: int, mlp_dim: int, dropout: float, layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(CrossModalEncoderLayer(modalities, dim, heads, mlp_dim, dropout)
                                    for _ in range(layers))
        init_linears(self)

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        for block in self.blocks:
            tokens = block(tokens, masks)
        return tokens
