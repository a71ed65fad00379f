"""The RollingQ controller: watches the fusion layers, decides at epoch end, rotates the query.

Usage by a trainer, per epoch:
    ctl.observe(out)                      # every training step (cheap: a few reductions on device)
    t = ctl.stats_tensor(); all_reduce(t, SUM); ctl.load_stats_tensor(t)     # with DDP
    if ctl.needs_stats_pass():            # only with stats="pass" and a rotation due
        ctl.start_pass(); <no-grad forward over the training set, ctl.observe(out)>; all-reduce again
    events = ctl.end_epoch(epoch)         # rotates where the rule says, then resets
Reducing twice is fine: the second all-reduce multiplies the already-global AIR sums and their
counts alike, so AIR is unchanged, while the pass's means are summed once as they should be.
With several fusion layers all rotate together, each from statistics of the un-rotated model.
With running statistics, a layer whose CLS query does not depend on the input (the first layer:
fusion.AttentionFusion.fixed_queries) takes E[q] = its current query, the keys' running means.

The controller is model-agnostic: it works on any model whose `fusion_layers` report FusionStats
(the query, each modality's mean key, the attention shares) and, to rotate, hold a `rotation`
buffer (fusion.RotatableQuery). AIR compares the model's first two modalities, in its order
(audio vs visual: positive = audio favoured). It only rotates a rotating model (an `mt` model still
gets its AIR measured and reported).
"""
import math

import torch
from torch import Tensor, nn

from .config import RollingQConfig
from .model import ModelOutput
from .rotation import balanced_anchor, imbalance_alpha, imbalance_terms, rotation_angle_deg, rotation_matrix

# Per fusion layer one float64 row: the AIR sums of the epoch and of the last batch, the number of
# samples behind the means, then Σq, Σk̂_a, Σk̂_v. Sums (not means) so DDP ranks add up by all-reduce.
AIR_SUM, AIR_N, LAST_SUM, LAST_N, MEAN_N, _SCALARS = 0, 1, 2, 3, 4, 5


class RollingQ:
    def __init__(self, model: nn.Module, cfg: RollingQConfig):
        # Reach through DDP (.module) and torch.compile (._orig_mod) wrappers to the network.
        for attr in ("module", "_orig_mod"):
            model = getattr(model, attr, model)
        self.cfg = cfg
        self.fusion = model.fusion
        self.layers = model.fusion_layers
        if self.layers and len(model.modalities) < 2:
            raise ValueError("AIR needs two modalities")
        self.pair = model.modalities[:2]
        self.rotates = bool(self.layers) and all(getattr(layer, "rotation", None) is not None for layer in self.layers)
        dim = model.fusion.dim if self.layers else 0
        self._q, self._ka, self._kv = (slice(_SCALARS + i * dim, _SCALARS + (i + 1) * dim) for i in range(3))
        self._stats = torch.zeros(len(self.layers), _SCALARS + 3 * dim, dtype=torch.float64)
        self._pass = False

    def observe(self, out: ModelOutput) -> None:
        """Accumulate one batch's fusion stats. During a stats pass only the means are gathered."""
        if len(out.fusion) != len(self.layers):
            raise ValueError(f"output has {len(out.fusion)} fusion layers, the model {len(self.layers)}")
        for row, s in zip(self._rows(out.fusion[0].q.device), out.fusion):
            q, ka, kv = (t.double() for t in (s.q, s.keys[self.pair[0]], s.keys[self.pair[1]]))
            n = q.shape[0]
            if not self._pass:
                air = imbalance_terms(q, ka, kv).sum()
                row[AIR_SUM] += air
                row[AIR_N] += n
                row[LAST_SUM] = air
                row[LAST_N] = n
            row[MEAN_N] += n
            row[self._q] += q.sum(0)
            row[self._ka] += ka.sum(0)
            row[self._kv] += kv.sum(0)

    def air(self) -> list[float]:
        """AIR per fusion layer in the configured scope (nan before anything was observed)."""
        sum_col, n_col = (AIR_SUM, AIR_N) if self.cfg.air_scope == "epoch" else (LAST_SUM, LAST_N)
        return [float(r[sum_col] / r[n_col]) if r[n_col] > 0 else math.nan for r in self._stats.cpu()]

    def needs_stats_pass(self) -> bool:
        """True when stats="pass" and some layer is due a rotation: run the extra pass then."""
        return self.cfg.stats == "pass" and any(self._due(i, air) for i, air in enumerate(self.air()))

    def start_pass(self) -> None:
        """Forget the gathered means (keep the epoch's AIR); observe() then only feeds the means."""
        for col in (self._q, self._ka, self._kv, MEAN_N):
            self._stats[:, col] = 0
        self._pass = True

    def end_epoch(self, epoch: int) -> list[dict]:
        """Apply the rule to every fusion layer, return one event per layer, reset the accumulators."""
        events = []
        stats = self._stats.cpu()
        fixed = self._fixed_queries()
        for i, (layer, air) in enumerate(zip(self.layers, self.air())):
            alpha = imbalance_alpha(air, self.cfg.rho) if not math.isnan(air) else math.nan
            angle = 0.0
            rotated = self._due(i, air) and stats[i, MEAN_N] > 0
            if rotated:
                mean_q, mean_ka, mean_kv = (stats[i, col] / stats[i, MEAN_N] for col in (self._q, self._ka, self._kv))
                if fixed[i] is not None:
                    # The running mean of an input-independent query averages the queries of an epoch
                    # in which it moved; the query now is the one the rotation must take to the anchor.
                    mean_q = fixed[i].double().cpu()
                anchor = balanced_anchor(mean_q, mean_ka, mean_kv, air, self.cfg.rho)
                # mean_q is the query as used, i.e. already rotated by R: R_new·R maps the
                # un-rotated mean onto the anchor, so after this E[q used] = anchor.
                r_new = rotation_matrix(mean_q, anchor, self.cfg.rotation).to(layer.rotation.device)
                layer.rotation.copy_(r_new @ layer.rotation.double())
                layer.rotations_done += 1
                angle = rotation_angle_deg(mean_q, anchor)
            events.append(dict(layer=i, epoch=epoch, air=air, alpha=alpha, rotated=bool(rotated),
                               angle_deg=angle, rotations_done=self._done(i)))
        self.reset()
        return events

    def reset(self) -> None:
        self._stats.zero_()
        self._pass = False

    def stats_tensor(self) -> Tensor:
        """All accumulators as one float64 tensor [layers, 5 + 3D]; sum it across ranks."""
        return self._stats.clone()

    def load_stats_tensor(self, t: Tensor) -> None:
        if t.shape != self._stats.shape:
            raise ValueError(f"stats tensor has shape {tuple(t.shape)}, expected {tuple(self._stats.shape)}")
        self._stats = t.to(self._stats.device, torch.float64).clone()

    def state_dict(self) -> dict:
        """The accumulators (the rotations themselves live in the model's state_dict)."""
        return {"stats": self._stats.cpu().clone(), "pass": self._pass}

    def load_state_dict(self, state: dict) -> None:
        self.load_stats_tensor(state["stats"])
        self._pass = bool(state["pass"])

    def _fixed_queries(self) -> list:
        """Per layer, the current query where it is input-independent, for running statistics only
        (a statistics pass measures the current model anyway); None elsewhere."""
        fixed = getattr(self.fusion, "fixed_queries", None)
        if self.cfg.stats != "running" or fixed is None:
            return [None] * len(self.layers)
        return fixed()

    def _due(self, i: int, air: float) -> bool:
        return (self.rotates and self._done(i) < self.cfg.max_rotations
                and not math.isnan(air) and abs(air) > self.cfg.beta)

    def _done(self, i: int) -> int:
        return int(self.layers[i].rotations_done) if self.rotates else 0

    def _rows(self, device: torch.device) -> Tensor:
        # Accumulate where the stats are (no per-step host sync); moved once, on the first batch.
        if self._stats.device != device:
            self._stats = self._stats.to(device)
        return self._stats
