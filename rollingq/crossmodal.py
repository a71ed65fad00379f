"""Cross-attention parts: one modality's tokens query another's. MulT's crossmodal stage lives here;
MMML's cross-modal encoder (mmml.py) and JMT (joint.py) build on `CrossAttention` too.

`StagedFusion` composes a token stage (tokens -> tokens of the same modalities, e.g. MulT's
crossmodal blocks) with a readout fusion part (the `mt` attention fusion: a fusion CLS attending
over both modalities' tokens). The readout's attention layers are the fusion's `layers`, so the
RollingQ controller observes and, with `--rollingq`, rotates them exactly as on Vanilla MT.

MulT (Tsai et al. 2019) on two modalities, as built here:
- for each target modality t with source s: `layers` crossmodal blocks, pre-norm,
      z <- z + CA(LN(z) -> LN(x_s)),   z <- z + FFN(LN(z)),
  starting from t's encoder tokens z = x_t; the queries come from t, keys and values from s, and
  the source stays s's encoder output x_s at every layer, as in MulT ("low-level" source features).
  So Z_{s->t} has t's token count and position order, and depends on s only through attention.
- MulT's own readout (a self-attention Transformer over Z_{s->t}, its last element, concatenated over
  targets, an MLP) is replaced by the readout part: a fusion CLS over [Z_{v->a}; Z_{a->v}]. That is
  where the paper's "MuT + RollingQ" can rotate a query (the paper does not say how it combined
  them); MulT's sinusoidal position encodings are left out (the encoders add learned ones) and its
  FFN uses the encoders' GELU MLP.
"""
from collections.abc import Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .fusion import FusionStats
from .vit import Mlp, init_linears


class CrossAttention(nn.Module):
    """Multi-head attention of `x`'s tokens (queries) over `context`'s tokens (keys and values):
    q, k, v and output maps, as nn.MultiheadAttention has them."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, keep: Tensor | None = None) -> Tensor:
        """`keep` [B, N_context] bool: the context tokens that may be attended to (padded steps False)."""
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        mask = keep[:, None, None, :] if keep is not None else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

    def matmul_macs(self, x: Tensor, context: Tensor, keep: Tensor | None = None) -> int:
        """Multiply-accumulates of QKᵀ and AV (`rq model`; the Linear maps count on their own)."""
        b, n, d = x.shape
        return 2 * b * n * context.shape[1] * d


class CrossmodalBlock(nn.Module):
    """One MulT crossmodal layer: the target's tokens attend to the source's, then an FFN."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.norm_target = nn.LayerNorm(dim, eps=1e-6)
        self.norm_source = nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim, dropout)

    def forward(self, target: Tensor, source: Tensor, keep: Tensor | None = None) -> Tensor:
        target = target + self.attn(self.norm_target(target), self.norm_source(source), keep)
        return target + self.mlp(self.norm2(target))


class CrossmodalStage(nn.Module):
    """MulT's crossmodal Transformers for two modalities: `blocks[t]` maps t's tokens, attending to
    the other modality's encoder tokens, to Z_{other->t}."""

    def __init__(self, modalities: Sequence[str], dim: int, heads: int, mlp_dim: int, dropout: float, layers: int):
        super().__init__()
        if len(modalities) != 2:
            raise ValueError("MulT's crossmodal stage is built for two modalities")
        self.blocks = nn.ModuleDict({m: nn.ModuleList(CrossmodalBlock(dim, heads, mlp_dim, dropout)
                                                      for _ in range(layers)) for m in modalities})
        init_linears(self)

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """`masks`: modality -> [B, N_m] bool, its real tokens (none: all are); a target attends to its
        source's real tokens only, and keeps its own token count (so its own mask)."""
        (a, xa), (b, xb) = tokens.items()
        source = {a: xb, b: xa}
        out = {}
        for m, z in tokens.items():
            for block in self.blocks[m]:
                z = block(z, source[m], mask_of(masks, b if m == a else a))
            out[m] = z
        return out


class StagedFusion(nn.Module):
    """A token stage followed by a readout fusion part (see the module docstring)."""

    def __init__(self, stage: nn.Module, readout: nn.Module):
        super().__init__()
        self.stage, self.readout = stage, readout
        self.dim, self.out_dim = readout.dim, readout.out_dim

    @property
    def layers(self) -> nn.ModuleList:
        """The readout's attention layers: what RollingQ observes and rotates."""
        return self.readout.layers

    def fixed_queries(self) -> list[Tensor | None]:
        """The readout's input-independent CLS queries (its first layer reads the constant fusion CLS)."""
        return self.readout.fixed_queries()

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor] | None = None
                ) -> tuple[Tensor, list[FusionStats]]:
        """The stage keeps each modality's token count, so the readout leaves out the same padded steps."""
        return self.readout(self.stage(tokens, masks), masks)


def mask_of(masks: dict[str, Tensor] | None, modality: str) -> Tensor | None:
    """A modality's real tokens [B, N] (sequence features with padding), None when all are real."""
    return masks.get(modality) if masks else None
