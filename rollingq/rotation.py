"""RollingQ's math as plain tensor functions: AIR, the balanced anchor and the rotation onto it.

Everything is computed in float64: the rotation is built once per epoch from means over a whole
dataset and then multiplies every query, so its error must not depend on the training dtype.
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor

_TINY = 1e-12   # below this a sine or a norm counts as zero


def imbalance_terms(q: Tensor, k_audio: Tensor, k_visual: Tensor) -> Tensor:
    """Per-sample AIR terms cos(q, k̂_a) − cos(q, k̂_v), shape [B], float64."""
    q, k_audio, k_visual = (t.double() for t in (q, k_audio, k_visual))
    return F.cosine_similarity(q, k_audio, dim=-1) - F.cosine_similarity(q, k_visual, dim=-1)


def attention_imbalance_rate(q: Tensor, k_audio: Tensor, k_visual: Tensor) -> Tensor:
    """AIR = mean over the batch of cos(q, k̂_a) − cos(q, k̂_v), in [-2, 2]; > 0 means audio is favoured.

    q, k_audio, k_visual: [B, D] (the query and each modality's per-sample mean key).
    """
    return imbalance_terms(q, k_audio, k_visual).mean()


def imbalance_alpha(air: float, rho: float) -> float:
    """α = ½(1 + tanh(−ρ·AIR)): the audio weight of the anchor, < ½ when audio is favoured."""
    return 0.5 * (1.0 + math.tanh(-rho * float(air)))


def balanced_anchor(mean_q: Tensor, mean_k_audio: Tensor, mean_k_visual: Tensor, air: float, rho: float) -> Tensor:
    """The anchor q_b: the direction α·E[k̂_a]/‖E[k̂_a]‖ + (1−α)·E[k̂_v]/‖E[k̂_v]‖, with length ‖E[q]‖.

    The paper's formula multiplies the mixed direction by ‖E[q]‖ without normalising it first; its
    length is then below ‖E[q]‖ (unless α is 0 or 1) and no rotation could reach it. The released
    code normalises the mix (since its 21 Jun 2025 commit, of the unit keys, as here), so R·E[q] = q_b
    holds exactly.
    """
    q = mean_q.double()
    alpha = imbalance_alpha(air, rho)
    mix = alpha * _unit(mean_k_audio.double()) + (1.0 - alpha) * _unit(mean_k_visual.double())
    if mix.norm() < _TINY:   # α = ½ with opposite keys: no preferred direction, keep the query
        return mean_q.clone()
    return (_unit(mix) * q.norm()).to(mean_q.dtype)


def rotation_matrix(src: Tensor, dst: Tensor, method: str = "svd") -> Tensor:
    """An orthogonal [D, D] matrix R with det +1 and R·src/‖src‖ = dst/‖dst‖ (column vectors).

    "svd": the paper's construction, the orthogonal Procrustes solution from the SVD of the outer
    product dst̂·srĉᵀ, with the sign of the last singular direction fixed so det = +1. It also turns
    the orthogonal complement by whatever basis the SVD happens to return.
    "minimal": the rotation in the plane span(src, dst) by the angle between them; it leaves every
    direction orthogonal to that plane where it is.
    Returned in the promoted dtype of src and dst; computed in float64.
    """
    a, b = _unit(src.double()), _unit(dst.double())
    if a.numel() < 2:
        raise ValueError("a rotation needs at least 2 dimensions")
    if method == "svd":
        r = _procrustes(a, b)
    elif method == "minimal":
        r = _plane_rotation(a, b)
    else:
        raise ValueError(f"rotation method must be 'svd' or 'minimal', got {method!r}")
    return r.to(torch.promote_types(src.dtype, dst.dtype))


def rotation_angle_deg(src: Tensor, dst: Tensor) -> float:
    """The angle between two vectors in degrees (what a rotation from one onto the other turns)."""
    a, b = _unit(src.double()), _unit(dst.double())
    return math.degrees(math.atan2(float(torch.linalg.vector_norm(b - (a @ b) * a)), float(a @ b)))


def _procrustes(a: Tensor, b: Tensor) -> Tensor:
    eye = torch.eye(a.numel(), dtype=torch.float64, device=a.device)
    if torch.linalg.vector_norm(a - b) < _TINY:
        # Same direction: the SVD of a·aᵀ returns an arbitrary complement basis for U and V
        # independently, which would turn the complement for no reason. Identity is the answer.
        return eye
    u, _, vh = torch.linalg.svd(torch.outer(b, a))
    # R = U·Vᵀ maps a onto b (first singular pair); the other singular values are 0, so flipping
    # the last column of U changes nothing else that matters and makes det(R) = +1.
    u[:, -1] *= torch.sign(torch.linalg.det(u @ vh))
    return u @ vh


def _plane_rotation(a: Tensor, b: Tensor) -> Tensor:
    eye = torch.eye(a.numel(), dtype=torch.float64, device=a.device)
    c = a @ b
    w = b - c * a
    w = w - (w @ a) * a   # second Gram-Schmidt step: w stays orthogonal to a even when tiny
    s = torch.linalg.vector_norm(w)
    if s < _TINY:
        if c > 0:
            return eye
        # Antiparallel: every plane through a works. Take the coordinate axis least aligned with a
        # (a deterministic choice) and turn by π there: two reflections, so det = +1.
        e = torch.zeros_like(a)
        e[torch.argmin(a.abs())] = 1.0
        u = _unit(e - (e @ a) * a)
        return eye - 2.0 * torch.outer(a, a) - 2.0 * torch.outer(u, u)
    u = w / s
    # In the orthonormal basis (a, u) this is [[c, -s], [s, c]]; identity on the complement.
    return (eye + s * (torch.outer(u, a) - torch.outer(a, u))
            + (c - 1.0) * (torch.outer(a, a) + torch.outer(u, u)))


def _unit(v: Tensor) -> Tensor:
    n = torch.linalg.vector_norm(v)
    if n < _TINY:
        raise ValueError("cannot take the direction of a zero vector")
    return v / n
