"""Fusion parts: how a model joins its encoders' tokens into one vector for the classifier.

A fusion part takes {modality: tokens [B, 1 + N_m, D]} (token 0 is that encoder's CLS) in the
model's modality order and returns (fused [B, out_dim], one FusionStats per attention layer).
`AttentionFusion` runs a fusion CLS token through attention layers over the modalities' tokens;
any layer that reports FusionStats and may hold a `rotation` buffer plugs into it, and the RollingQ
controller (balance.py) works on every such layer. `ConcatFusion` is the static baseline.
"""
from collections.abc import Sequence
from contextlib import nullcontext
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
        # rows: (R·q)ᵀ = qᵀ·Rᵀ, in fp32 even under bf16 autocast (a bf16 R is orthogonal only to ~1e-2).
        # The meta device (`rq model` counts there) has no autocast to switch off.
        off = torch.autocast(q_cls.device.type, enabled=False) if q_cls.device.type != "meta" else nullcontext()
        with off:
            return (q_cls.float() @ self.rotation.float().T).to(q_cls.dtype)

    def rotation_macs(self) -> int:
        """Multiply-accumulates of the rotation per sample: one D x D product on the CLS query."""
        return 0 if self.rotation is None else self.rotation.numel()


def cls_stats(q_cls: Tensor, k: Tensor, attn: Tensor, spans: dict[str, slice],
              keep: Tensor | None = None) -> FusionStats:
    """FusionStats from the CLS query [B, D], the keys [B, N, D] and the CLS attention [B, H, N];
    `keep` [B, N]: the real tokens (padding is left out of the mean keys)."""
    a, k = attn.detach(), k.detach()
    if keep is None:
        keys = {m: k[:, s].mean(dim=1) for m, s in spans.items()}
    else:
        w = keep.to(k.dtype).unsqueeze(-1)
        keys = {m: (k[:, s] * w[:, s]).sum(1) / w[:, s].sum(1).clamp(min=1) for m, s in spans.items()}
    return FusionStats(q=q_cls.detach(), keys=keys, shares={m: a[:, :, s].sum(-1).mean(1) for m, s in spans.items()})


def attend(q_cls: Tensor, q_rest: Tensor | None, k: Tensor, v: Tensor, heads: int, dropout: float,
           training: bool, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention of the CLS query [B, D] (and, unless q_rest is None, the other
    queries [B, N-1, D]) over keys and values [B, N, D], split into `heads`, scale 1/√(D/heads),
    dropout on the attention weights. Returns (outputs [B, 1 or N, D] with heads merged, the CLS
    row's attention before dropout [B, H, N]). The CLS row is computed explicitly because its
    weights are what the metrics and RollingQ read; the other rows go through the fused kernel.
    `keep` [B, N] bool: the keys that may be attended to (padded steps of sequence features False)."""
    b, n, d = k.shape
    kh, vh = (t.view(b, n, heads, d // heads).transpose(1, 2) for t in (k, v))
    scores = (q_cls.view(b, heads, 1, d // heads) @ kh.transpose(-2, -1)) * (d // heads) ** -0.5
    mask = keep[:, None, None, :] if keep is not None else None
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    attn = scores.softmax(dim=-1)                                         # [B, H, 1, N]
    drop = dropout if training else 0.0
    out = F.dropout(attn, drop, training) @ vh                            # [B, H, 1, d/h]
    if q_rest is not None:
        rest = F.scaled_dot_product_attention(q_rest.view(b, n - 1, heads, d // heads).transpose(1, 2), kh, vh,
                                              attn_mask=mask, dropout_p=drop)
        out = torch.cat([out, rest], dim=2)
    return out.transpose(1, 2).reshape(b, -1, d), attn[:, :, 0]


def attention_macs(x: Tensor, cls_only: bool) -> int:
    """Multiply-accumulates of the attention products (QKᵀ and AV) of one fusion layer call on x [B, N, D]."""
    b, n, d = x.shape
    return 2 * b * (1 if cls_only else n) * n * d


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

    def forward(self, x: Tensor, spans: dict[str, slice], cls_only: bool,
                keep: Tensor | None = None) -> tuple[Tensor, FusionStats]:
        """x [B, N, D] -> (x updated, stats). With cls_only (the last layer) only the CLS row is
        computed and the returned x is [B, 1, D]: nothing reads the other tokens after it.
        `keep` [B, N] bool: the tokens that may be attended to (padded steps False)."""
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        q_cls = self.rotate(q[:, 0])
        out, attn = attend(q_cls, None if cls_only else q[:, 1:], k, v, self.heads, self.dropout, self.training,
                           keep)
        out = self.proj_drop(self.proj(out))
        return x[:, :out.shape[1]] + out, cls_stats(q_cls, k, attn, spans, keep)

    def cls_query(self, cls: Tensor) -> Tensor:
        """The query [D] used for a CLS input vector [D] (rotation included)."""
        return self.rotate(self.qkv(self.norm(cls[None]))[:, :cls.shape[-1]])[0]

    def matmul_macs(self, x: Tensor, spans: dict[str, slice], cls_only: bool,
                    keep: Tensor | None = None) -> int:
        return attention_macs(x, cls_only) + x.shape[0] * self.rotation_macs()


class ReleasedFusionLayer(RotatableQuery):
    """The fusion layer of the authors' code: attention with separate q, k, v maps (D -> D, bias),
    scale 1/√(D/heads), dropout on the attention weights, an output map, dropout again. No residual,
    no LayerNorm applied, no MLP: the layer's output IS the attention's output, so the classifier
    reads the fusion CLS row of the mixed values directly. With its input a constant CLS token, the
    first layer's CLS query is a function of the parameters only (see `cls_query`).

    The release creates a LayerNorm here and never applies it. It is kept (frozen: no gradient, so
    DDP and the optimiser skip it; it changes no output) so the parameter count equals Table 4's.
    """

    def __init__(self, dim: int, heads: int, dropout: float, rolling: bool):
        super().__init__(dim, rolling)
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        self.proj_drop = nn.Dropout(dropout)
        self.unused_norm = nn.LayerNorm(dim, eps=1e-6).requires_grad_(False)
        for m in (self.q, self.k, self.v, self.proj):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, spans: dict[str, slice], cls_only: bool,
                keep: Tensor | None = None) -> tuple[Tensor, FusionStats]:
        """x [B, N, D] -> (the attention output [B, N, D], or [B, 1, D] with cls_only, and stats).
        `keep` [B, N] bool: the tokens that may be attended to (padded steps False)."""
        q_cls = self.rotate(self.q(x[:, 0]))
        k, v = self.k(x), self.v(x)
        out, attn = attend(q_cls, None if cls_only else self.q(x[:, 1:]), k, v, self.heads, self.dropout,
                           self.training, keep)
        return self.proj_drop(self.proj(out)), cls_stats(q_cls, k, attn, spans, keep)

    def cls_query(self, cls: Tensor) -> Tensor:
        """The query [D] used for a CLS input vector [D] (rotation included)."""
        return self.rotate(self.q(cls[None]))[0]

    def matmul_macs(self, x: Tensor, spans: dict[str, slice], cls_only: bool,
                    keep: Tensor | None = None) -> int:
        return attention_macs(x, cls_only) + x.shape[0] * self.rotation_macs()


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

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor] | None = None
                ) -> tuple[Tensor, list[FusionStats]]:
        """`masks`: modality -> [B, 1 + N_m] bool, its real tokens (sequence features with padding)."""
        parts = {m: t if self.encoder_cls else t[:, 1:] for m, t in tokens.items()}
        spans = token_spans(parts)
        first = next(iter(parts.values()))
        x = torch.cat([self.cls_token.expand(first.shape[0], -1, -1), *parts.values()], dim=1)
        padding = {}
        if masks:   # the fusion CLS and every token of a modality without a mask are kept
            start = 0 if self.encoder_cls else 1
            kept = [masks[m][:, start:] if m in masks else torch.ones(t.shape[:2], dtype=torch.bool, device=t.device)
                    for m, t in parts.items()]
            padding = {"keep": torch.cat([torch.ones_like(kept[0][:, :1]), *kept], dim=1)}
        stats = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, spans, cls_only=i == len(self.layers) - 1, **padding)
            stats.append(s)
        return self.norm(x[:, 0]), stats

    @torch.no_grad()
    def fixed_queries(self) -> list[Tensor | None]:
        """Per layer, the CLS query as used [D] when it does not depend on the input, else None. The
        first layer's CLS input is the constant fusion CLS token, so a layer that can say which query
        a CLS vector gets (`cls_query`) has an input-independent query there; later layers see mixed
        tokens. RollingQ's running statistics take E[q] from here."""
        first = getattr(self.layers[0], "cls_query", None) if len(self.layers) else None
        return [first(self.cls_token[0, 0]) if i == 0 and first is not None else None for i in range(len(self.layers))]


class ConcatFusion(nn.Module):
    """Static late fusion: the encoders' CLS vectors side by side (Table 1's "Concat")."""

    def __init__(self, dim: int, modalities: int):
        super().__init__()
        self.dim, self.out_dim = dim, dim * modalities
        self.layers = nn.ModuleList()        # no attention: nothing for RollingQ or the metrics to observe

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor] | None = None
                ) -> tuple[Tensor, list[FusionStats]]:
        return torch.cat([t[:, 0] for t in tokens.values()], dim=-1), []

    @staticmethod
    def modality_logits(head: nn.Linear, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's part of a linear head's logits on the concatenation: its CLS times its block
        of the head's columns plus an equal share of the bias (OGM-GE's unimodal outputs of a concat
        head); they sum to the head's logits."""
        out, at = {}, 0
        for m, f in features.items():
            # in the head's precision: under bf16 autocast the features are bf16, the weights fp32
            out[m] = f.to(head.weight.dtype) @ head.weight[:, at:at + f.shape[-1]].T + head.bias / len(features)
            at += f.shape[-1]
        return out
