"""Fusion parts: how a model joins its encoders' tokens into one vector for the classifier.

A fusion part takes {modality: tokens [B, 1 + N_m, D]} (token 0 is that encoder's CLS) in the
model's modality order and returns (fused [B, out_dim], one FusionStats per attention layer).
`AttentionFusion` runs a fusion CLS token through attention layers over the modalities' tokens;
any layer that reports FusionStats and may hold a `rotation` buffer plugs into it, and the RollingQ
controller (balance.py) works on every such layer. `ConcatFusion` is the static baseline.
"""
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class FusionStats:
    """One fusion layer's view of a batch, all detached. q is the CLS query as used (after R)."""
    q: Tensor                    # [B, D]
    keys: dict[str, Tensor]      # modality -> [B, D] mean key over the sample's tokens of that modality
    shares: dict[str, Tensor]    # modality -> [B] CLS attention mass on its tokens (mean over heads);
                                 # 1 - sum of shares is the fusion CLS attending to itself


def token_spans(tokens: dict[str, Tensor], first: int = 1) -> dict[str, slice]:
    """Where each modality's tokens sit in the fused sequence [CLS; m1 tokens; m2 tokens; ...]."""
    spans, at = {}, first
    for name, t in tokens.items():
        spans[name] = slice(at, at + t.shape[1])
        at += t.shape[1]
    return spans


class RotatableQuery(nn.Module):
    """The part of a fusion layer RollingQ acts on: an optional rotation R of the CLS query (a buffer:
    saved in the state_dict, moved with .to(), never seen by the optimiser)."""

    def __init__(self, dim: int, rolling: bool):
        super().__init__()
        if rolling:
            self.register_buffer("rotation", torch.eye(dim))
            self.register_buffer("rotations_done", torch.zeros((), dtype=torch.long))
        else:
            self.rotation = None

    def rotate(self, q_cls: Tensor) -> Tensor:
        if self.rotation is None:
            return q_cls
        # rows: (R·q)ᵀ = qᵀ·Rᵀ, in fp32 even under bf16 autocast (a bf16 R is orthogonal only to ~1e-2)
        with torch.autocast(q_cls.device.type, enabled=False):
            return (q_cls.float() @ self.rotation.float().T).to(q_cls.dtype)


def cls_stats(q_cls: Tensor, k: Tensor, attn: Tensor, spans: dict[str, slice]) -> FusionStats:
    """FusionStats from the CLS query [B, D], the keys [B, N, D] and the CLS attention [B, H, N]."""
    a = attn.detach()
    return FusionStats(q=q_cls.detach(),
                       keys={m: k[:, s].detach().mean(dim=1) for m, s in spans.items()},
                       shares={m: a[:, :, s].sum(-1).mean(1) for m, s in spans.items()})


class PreNormFusionLayer(RotatableQuery):
    """Pre-norm attention layer with a residual, no MLP (rq 0.1's fusion: `--fusion-block prenorm`).

    The rotation acts on the full D-dim CLS query, before it is split into heads. With the paper's
    single head that is exactly the paper's rotation. With several heads it is a fixed linear map on
    the query (like multiplying W_q by R), and AIR keeps its one-number-per-layer definition on the
    full query and keys, which is what the rule and the buffer shape [D, D] are defined on.
    """

    def __init__(self, dim: int, heads: int, dropout: float, rolling: bool):
        super().__init__(dim, rolling)
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        for m in (self.qkv, self.proj):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, spans: dict[str, slice], cls_only: bool) -> tuple[Tensor, FusionStats]:
        """x [B, N, D] -> (x updated, stats). With cls_only (the last layer) only the CLS row is
        computed and the returned x is [B, 1, D]: nothing reads the other tokens after it."""
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        q_cls = self.rotate(q[:, 0])
        kh = k.view(b, n, h, d // h).transpose(1, 2)
        vh = v.view(b, n, h, d // h).transpose(1, 2)
        scores = (q_cls.view(b, h, 1, d // h) @ kh.transpose(-2, -1)) * (d // h) ** -0.5
        attn = scores.softmax(dim=-1)                                     # [B, H, 1, N]
        drop = self.dropout if self.training else 0.0
        out = F.dropout(attn, drop, self.training) @ vh                   # [B, H, 1, d/h]
        if not cls_only:
            rest = F.scaled_dot_product_attention(q[:, 1:].view(b, n - 1, h, d // h).transpose(1, 2), kh, vh,
                                                  dropout_p=drop)
            out = torch.cat([out, rest], dim=2)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, -1, d)))
        return x[:, :out.shape[1]] + out, cls_stats(q_cls, k, attn[:, :, 0], spans)


class AttentionFusion(nn.Module):
    """A fusion CLS token + attention layers over [CLS; tokens of each modality], classifier input =
    the CLS position of the last layer's output (after `norm`, an nn.Identity where the design has none).

    `encoder_cls`: whether the encoders' own CLS tokens are part of the attended sequence."""

    def __init__(self, dim: int, layers: Sequence[nn.Module], norm: nn.Module, encoder_cls: bool):
        super().__init__()
        self.dim, self.out_dim, self.encoder_cls = dim, dim, encoder_cls
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    def forward(self, tokens: dict[str, Tensor]) -> tuple[Tensor, list[FusionStats]]:
        parts = {m: t if self.encoder_cls else t[:, 1:] for m, t in tokens.items()}
        spans = token_spans(parts)
        first = next(iter(parts.values()))
        x = torch.cat([self.cls_token.expand(first.shape[0], -1, -1), *parts.values()], dim=1)
        stats = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, spans, cls_only=i == len(self.layers) - 1)
            stats.append(s)
        return self.norm(x[:, 0]), stats


class ConcatFusion(nn.Module):
    """Static late fusion: the encoders' CLS vectors side by side (Table 1's "Concat")."""

    def __init__(self, dim: int, modalities: int):
        super().__init__()
        self.dim, self.out_dim = dim, dim * modalities
        self.layers = nn.ModuleList()        # no attention: nothing for RollingQ or the metrics to observe

    def forward(self, tokens: dict[str, Tensor]) -> tuple[Tensor, list[FusionStats]]:
        return torch.cat([t[:, 0] for t in tokens.values()], dim=-1), []
