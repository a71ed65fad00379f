"""JMT, the Joint Multimodal Transformer (Waligora et al. 2024, "Joint Multimodal Transformer for
Emotion Recognition in the Wild"), as a fusion part. The paper's text and its authors' code
(models/mm_multi_transformers.py, MultimodalTransformer_w_JR) read for facts.

JMT adds a third branch, the joint representation J of both modalities, and fuses with key-based
cross-attention between every pair of branches: each branch queries each of the two others, six
cross-attentions in all, by one attention module per query branch (the authors' code shares the
module of a query branch between its two key branches). Their outputs are concatenated for the head.

What rq chose where JMT's setting (per-frame aligned feature sequences, regression) does not carry
over to ViT token sequences of different lengths, or where the RollingQ paper is silent:
- J: JMT concatenates the two modalities' features per time step and projects them; audio and visual
  tokens here are not aligned, so J is the token sequence [joint token; audio tokens; visual tokens];
- one summary query per branch: each modality's CLS, and for J a learned joint token (like MT's fusion
  CLS). Only these rows are needed for the head, so each cross-attention computes one row;
- no per-branch Transformer encoders after J (JMT has one per branch): the ViT encoders are the
  modalities' encoders, and J gets none;
- the head reads the six outputs side by side (JMT's "FC" output), [B, 6·D].
With no query over both modalities at once there is nothing for RollingQ to rotate.
"""
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor

from .crossmodal import CrossAttention, mask_of
from .fusion import FusionStats
from .vit import init_linears

JOINT = "joint"


class JointCrossAttentionFusion(nn.Module):
    def __init__(self, modalities: Sequence[str], dim: int, heads: int, dropout: float):
        super().__init__()
        if len(modalities) != 2 or JOINT in modalities:
            raise ValueError("JMT is built for two modalities")
        self.branches = (*modalities, JOINT)
        self.dim, self.out_dim = dim, dim * 6
        self.joint_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.joint_token, std=0.02)
        self.attn = nn.ModuleDict({b: CrossAttention(dim, heads, dropout) for b in self.branches})
        self.layers = nn.ModuleList()   # no query over both modalities: nothing for RollingQ to observe
        init_linears(self)

    def pairs(self) -> list[tuple[str, str]]:
        """(query branch, key branch) of each output segment, in the order they are concatenated."""
        return [(q, k) for q in self.branches for k in self.branches if k != q]

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor] | None = None
                ) -> tuple[Tensor, list[FusionStats]]:
        """`masks`: modality -> [B, N_m] bool, its real tokens: padded ones are no branch's keys."""
        first = next(iter(tokens.values()))
        joint = torch.cat([self.joint_token.expand(first.shape[0], -1, -1), *tokens.values()], dim=1)
        branch = {**tokens, JOINT: joint}
        keep = {m: mask_of(masks, m) for m in tokens} | {JOINT: None}
        if masks:
            real = [k if k is not None else t.new_ones(t.shape[:2], dtype=torch.bool) for k, t in
                    zip(keep.values(), tokens.values())]
            keep[JOINT] = torch.cat([real[0][:, :1], *real], dim=1)   # the joint token is real
        out = [self.attn[q](branch[q][:, :1], branch[k], keep[k])[:, 0] for q, k in self.pairs()]
        return torch.cat(out, dim=-1), []
