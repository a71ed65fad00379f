"""RollingQ's math on constructed tensors: AIR, α, the anchor, both rotation constructors."""
import math

import pytest
import torch

from rollingq import attention_imbalance_rate, balanced_anchor, rotation_matrix
from rollingq.rotation import imbalance_alpha, rotation_angle_deg

METHODS = ("svd", "minimal")


def _unit(v):
    return v / v.norm()


def _check_rotation(r, src, dst, tol=1e-10):
    eye = torch.eye(r.shape[0], dtype=r.dtype)
    assert torch.allclose(r @ r.T, eye, atol=tol)
    assert torch.linalg.det(r).item() == pytest.approx(1.0, abs=tol)
    assert torch.allclose(r @ _unit(src), _unit(dst), atol=tol)


def _pair(kind, d, gen):
    src = torch.randn(d, dtype=torch.float64, generator=gen)
    other = torch.randn(d, dtype=torch.float64, generator=gen)
    return src, {"random": other, "parallel": 3.0 * src, "antiparallel": -2.0 * src,
                 "nearly-parallel": src + 1e-9 * other, "nearly-antiparallel": -src + 1e-9 * other}[kind]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["random", "parallel", "antiparallel", "nearly-parallel", "nearly-antiparallel"])
@pytest.mark.parametrize("d", [2, 3, 64])
def test_rotation_is_proper_and_maps_src_onto_dst(method, kind, d):
    gen = torch.Generator().manual_seed(d)
    src, dst = _pair(kind, d, gen)
    r = rotation_matrix(src, dst, method)
    assert r.dtype == torch.float64 and not torch.isnan(r).any()
    _check_rotation(r, src, dst, tol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_same_direction_gives_identity(method):
    src = torch.tensor([1.0, 2.0, -3.0, 0.5], dtype=torch.float64)
    assert torch.allclose(rotation_matrix(src, 5 * src, method), torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_minimal_rotation_fixes_the_orthogonal_complement_and_turns_by_the_angle():
    gen = torch.Generator().manual_seed(1)
    src, dst = torch.randn(16, dtype=torch.float64, generator=gen), torch.randn(16, dtype=torch.float64, generator=gen)
    r = rotation_matrix(src, dst, "minimal")
    basis = torch.linalg.qr(torch.stack([src, dst], 1), mode="complete").Q[:, 2:]   # ⟂ span(src, dst)
    assert torch.allclose(r @ basis, basis, atol=1e-12)
    # trace of a plane rotation = (D - 2) + 2 cos θ
    cos = torch.dot(_unit(src), _unit(dst))
    assert torch.trace(r).item() == pytest.approx(14 + 2 * cos.item(), abs=1e-10)
    assert rotation_angle_deg(src, dst) == pytest.approx(math.degrees(math.acos(cos.item())), abs=1e-8)


def test_float32_inputs_get_a_float32_rotation_computed_in_float64():
    gen = torch.Generator().manual_seed(3)
    src, dst = torch.randn(768, generator=gen), torch.randn(768, generator=gen)
    for method in METHODS:
        r = rotation_matrix(src, dst, method)
        assert r.dtype == torch.float32
        _check_rotation(r.double(), src.double(), dst.double(), tol=1e-5)


def test_bad_rotation_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="zero vector"):
        rotation_matrix(torch.zeros(4), torch.ones(4))
    with pytest.raises(ValueError, match="svd"):
        rotation_matrix(torch.ones(4), torch.arange(4.0), "householder")


def test_air_is_the_mean_cosine_gap():
    e = torch.eye(3, dtype=torch.float64)
    ka, kv = e[0].expand(4, 3), e[1].expand(4, 3)
    assert attention_imbalance_rate(ka * 2.5, ka, kv).item() == pytest.approx(1.0)     # q aligned with audio
    assert attention_imbalance_rate(kv, ka, kv).item() == pytest.approx(-1.0)          # q aligned with visual
    assert attention_imbalance_rate(-ka, ka, -ka).item() == pytest.approx(-2.0)        # the bound
    mixed = torch.stack([e[0], e[0], e[0], e[1]])
    assert attention_imbalance_rate(mixed, ka, kv).item() == pytest.approx((3 - 1) / 4)


def test_alpha_and_anchor_lean_away_from_the_favoured_modality():
    assert imbalance_alpha(0.0, 1.0) == 0.5 and imbalance_alpha(1.5, 0.0) == 0.5
    assert imbalance_alpha(0.5, 1.0) == pytest.approx(0.5 * (1 + math.tanh(-0.5)))
    ka = torch.tensor([3.0, 0.0, 1.0], dtype=torch.float64)
    kv = torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64)
    q = ka.clone()                                   # audio favoured ...
    air = attention_imbalance_rate(q[None], ka[None], kv[None]).item()
    assert air > 0 and imbalance_alpha(air, 1.0) < 0.5          # ... so alpha < 1/2 ...
    anchor = balanced_anchor(q, ka, kv, air, rho=1.0)
    cos = lambda a, b: torch.dot(_unit(a), _unit(b)).item()      # noqa: E731
    assert cos(anchor, kv) > cos(anchor, ka)                     # ... and the anchor leans visual
    assert anchor.norm().item() == pytest.approx(q.norm().item())
    # Its direction is the paper's mix of the unit mean keys.
    alpha = imbalance_alpha(air, 1.0)
    assert torch.allclose(_unit(anchor), _unit(alpha * _unit(ka) + (1 - alpha) * _unit(kv)), atol=1e-12)
    # Symmetric case: no imbalance, the anchor bisects the two keys.
    assert torch.allclose(_unit(balanced_anchor(q, ka, kv, 0.0, 1.0)), _unit(_unit(ka) + _unit(kv)), atol=1e-12)
    # Very strong audio bias and large rho: the anchor is (almost) the visual key direction.
    assert cos(balanced_anchor(q, ka, kv, 2.0, 50.0), kv) == pytest.approx(1.0, abs=1e-12)


def test_anchor_without_a_direction_keeps_the_query():
    q = torch.tensor([1.0, 2.0, 3.0])
    ka = torch.tensor([1.0, 0.0, 0.0])
    assert torch.equal(balanced_anchor(q, ka, -ka, 0.0, 1.0), q)


@pytest.mark.parametrize("method", METHODS)
def test_rotation_maps_the_mean_query_onto_the_anchor(method):
    gen = torch.Generator().manual_seed(4)
    q, ka, kv = (torch.randn(256, 768, generator=gen) + 0.3 * i for i in range(3))
    air = attention_imbalance_rate(q, ka, kv).item()
    mean_q = q.mean(0)
    anchor = balanced_anchor(mean_q, ka.mean(0), kv.mean(0), air, rho=1.0)
    r = rotation_matrix(mean_q, anchor, method)
    assert torch.allclose(r @ mean_q, anchor, atol=1e-5)
