"""The unimodal encoders: a timm-style pre-norm ViT. Parameter names follow timm's
`vit_base_patch16_224` (cls_token, pos_embed, patch_embed.proj, blocks.N.*, norm) so pretrained
checkpoints load by name (rollingq/pretrained.py)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def init_linears(module: nn.Module) -> None:
    """timm's ViT initialisation of every Linear inside `module`: truncated normal (std 0.02), zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Attention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention (fused kernels on GPU)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """x [B, N, D]; `keep` [B, N] bool: the tokens that may be attended to (padding False)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = keep[:, None, None, :] if keep is not None else None
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))

    def matmul_macs(self, x: Tensor, keep: Tensor | None = None) -> int:
        """Multiply-accumulates of QKᵀ and AV for x [B, N, D] (the Linear maps count on their own)."""
        b, n, d = x.shape
        return 2 * b * n * n * d


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim, dropout)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:   # [N, C, H, W] -> [N, tokens, D]
        return self.proj(x).flatten(2).transpose(1, 2)


class ViTEncoder(nn.Module):
    """CLS + learned absolute position embeddings + pre-norm blocks + final norm.

    Input [B, C, H, W], or [B, k, C, H, W] for k frames: every frame goes through the same patch
    embedding and the k·N tokens share one CLS. `per_frame_positions` False: every frame gets the
    same spatial position embeddings plus its own learned temporal embedding; True: one learned
    position per (frame, patch), as the released code (pos_embed then has 1 + k·N rows). `grid` is
    the token grid (rows, cols) and need not be square (spectrograms). `transpose`: the input's
    last two axes are swapped before patching (the released code patches its spectrograms so).
    `final_norm=False` leaves the tokens un-normalised, for a model whose later blocks continue
    after this encoder and normalise at their end (MBT's bottleneck blocks).
    """

    def __init__(self, in_chans: int, grid: tuple[int, int], dim: int, depth: int, heads: int,
                 mlp_dim: int, patch: int, dropout: float, frames: int = 0, per_frame_positions: bool = False,
                 transpose: bool = False, final_norm: bool = True):
        super().__init__()
        self.grid, self.patch, self.frames, self.transpose = grid, patch, frames, transpose
        self.patch_embed = PatchEmbed(in_chans, dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        tables = frames if frames and per_frame_positions else 1
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + tables * grid[0] * grid[1], dim))
        # frames = 0: a single image (the spectrogram), no temporal embedding; nor with per-frame positions.
        self.temporal_embed = nn.Parameter(torch.zeros(1, frames, 1, dim)) if frames and tables == 1 else None
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6) if final_norm else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for p in (self.cls_token, self.pos_embed, self.temporal_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        init_linears(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """[B, (k,) C, H, W] -> tokens [B, 1 + k·N, D] after the final norm (if any); token 0 is the CLS."""
        b = x.shape[0]
        k = x.shape[1] if self.frames else 1
        image = x.transpose(-2, -1) if self.transpose else x
        if (image.shape[-2] // self.patch, image.shape[-1] // self.patch) != self.grid or (self.frames and k != self.frames):
            want = (self.grid[0] * self.patch, self.grid[1] * self.patch)[::-1 if self.transpose else 1]
            raise ValueError(f"input {tuple(x.shape[1:])} does not fit this encoder ({self.frames or 1} x "
                             f"{want[0]}x{want[1]}{', patched transposed' if self.transpose else ''}, "
                             "after cropping to patches)")
        tokens = self.patch_embed(image.reshape(b * k, *image.shape[-3:])).view(b, k, -1, self.pos_embed.shape[-1])
        if self.temporal_embed is not None:   # one spatial table for every frame, plus the frame's own embedding
            tokens = (tokens + self.pos_embed[:, None, 1:] + self.temporal_embed).flatten(1, 2)
        else:                                 # one position per (frame, patch), or a single image
            tokens = tokens.flatten(1, 2) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = self.pos_drop(torch.cat([cls, tokens], dim=1))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
