"""The fusion attention over [fusion CLS; audio tokens; visual tokens], with its weights observable.

The CLS row is computed explicitly (scores, softmax, weighted sum) so the layer can report the
query, the per-modality mean keys and the attention shares RollingQ and the metrics need. In a
RollingQ model the layer holds the rotation R as a buffer and uses R·q as the CLS query.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class FusionStats:
    """One fusion layer's view of a batch, all detached. q is the CLS query as used (after R)."""
    q: Tensor             # [B, D]
    k_audio: Tensor       # [B, D] mean key over the sample's audio tokens
    k_visual: Tensor      # [B, D] mean key over the sample's visual tokens
    audio_share: Tensor   # [B] CLS attention mass on audio tokens, mean over heads
    visual_share: Tensor  # [B] on visual tokens; 1 - audio - visual is the CLS's attention to itself


class FusionAttention(nn.Module):
    """Pre-norm attention layer with a residual. No MLP: the paper's fusion is one attention layer.

    The rotation acts on the full D-dim CLS query, before it is split into heads. With the paper's
    single head that is exactly the paper's rotation. With several heads it is a fixed linear map on
    the query (like multiplying W_q by R), and AIR keeps its one-number-per-layer definition on the
    full query and keys, which is what the rule and the buffer shape [D, D] are defined on.
    """

    def __init__(self, dim: int, heads: int, dropout: float, rolling: bool):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        if rolling:
            # Buffers: saved in the state_dict, moved with .to(), never seen by the optimiser.
            self.register_buffer("rotation", torch.eye(dim))
            self.register_buffer("rotations_done", torch.zeros((), dtype=torch.long))
        else:
            self.rotation = None
        for m in (self.qkv, self.proj):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, n_audio: int, cls_only: bool) -> tuple[Tensor, FusionStats]:
        """x [B, 1 + Na + Nv, D] -> (x updated, stats). With cls_only (the last layer) only the CLS
        row is computed and the returned x is [B, 1, D]: nothing reads the other tokens after it."""
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        q_cls = q[:, 0]
        if self.rotation is not None:
            # rows: (R·q)ᵀ = qᵀ·Rᵀ, in fp32 even under bf16 autocast (a bf16 R is orthogonal only to ~1e-2)
            with torch.autocast(q_cls.device.type, enabled=False):
                q_cls = (q_cls.float() @ self.rotation.float().T).to(q_cls.dtype)
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
        x = x[:, :out.shape[1]] + out
        a = attn.detach()[:, :, 0]                                        # [B, H, N]
        stats = FusionStats(
            q=q_cls.detach(),
            k_audio=k[:, 1:1 + n_audio].detach().mean(dim=1),
            k_visual=k[:, 1 + n_audio:].detach().mean(dim=1),
            audio_share=a[:, :, 1:1 + n_audio].sum(-1).mean(1),
            visual_share=a[:, :, 1 + n_audio:].sum(-1).mean(1),
        )
        return x, stats
