"""Balancing methods that change how a concat-fusion model is trained, not how it is built: OGM-GE
(Peng et al. 2022) and PMR (Fan et al. 2023), behind one small interface the trainer calls:

    balancer.start_epoch(epoch)
    per step:  loss = per_sample_loss(out, labels) + balancer.loss(out, labels)   # [B] or a scalar 0
               loss.mean().backward(); balancer.after_backward(); optimizer.step()
    balancer.end_epoch() -> the metrics line's "balance": the per-step coefficients of the epoch
    balancer.state_dict() / load_state_dict(): in every checkpoint, so a resumed run ends the same

Both read the encoders' CLS features (ModelOutput.features) and follow BalanceBenchmark's trainers
(balancemm/trainer/OGM_trainer.py, PMR_trainer.py), read for facts; defaults in BalanceConfig.
Where rq differs, it says so below. Both compare the model's first two modalities (audio, visual; on
CMU-MOSEI visual, text), and log the coefficients under their names (coeff_audio, coeff_visual, ...).
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollingq.fusion import ConcatFusion
from rq.train.trainer.config import BalanceConfig, TrainConfig
from rq.train.trainer.distributed import DistEnv, all_reduce_sum


def true_class_score(logits: Tensor, labels: Tensor) -> Tensor:
    """Σ_i softmax(logits_i)[y_i]: how much probability a modality puts on the right classes."""
    return logits.float().softmax(dim=1).gather(1, labels[:, None]).sum()


class Balancer:
    """The interface, and the per-step log both methods keep (tensors on the device: no sync per step)."""
    name = ""

    def __init__(self, model: nn.Module, env: DistEnv):
        for attr in ("module", "_orig_mod"):      # through DDP / torch.compile wrappers to the network
            model = getattr(model, attr, model)
        self.model, self.env = model, env
        self.pair = model.modalities[:2]
        self.logged = ("ratio", *(f"coeff_{m}" for m in self.pair))
        self.epoch, self.active = 0, False
        self._log: dict[str, list[Tensor]] = {}

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.active = epoch, self.in_range(epoch)
        self._log = {k: [] for k in self.logged}

    def in_range(self, epoch: int) -> bool:
        raise NotImplementedError

    def loss(self, out, labels: Tensor) -> Tensor:
        """What this method adds to the per-sample loss (a scalar 0 when nothing)."""
        return out.logits.new_zeros(())

    def after_backward(self) -> None:
        """Change the gradients before the optimiser steps."""

    def record(self, **values: Tensor) -> None:
        for k, v in values.items():
            self._log[k].append(torch.as_tensor(v, dtype=torch.float32).detach().reshape(()))

    def record_coefficients(self, ratio: Tensor, coeffs) -> None:
        """The step's ratio and each modality's coefficient (coeffs in the order of `pair`)."""
        self.record(ratio=ratio, **{f"coeff_{m}": k for m, k in zip(self.pair, coeffs)})

    def end_epoch(self) -> dict:
        """The epoch's per-step coefficients and their means, for the metrics line."""
        steps = {k: [round(x, 6) for x in torch.stack(v).tolist()] if v else [] for k, v in self._log.items()}
        return {"method": self.name, "active": self.active, "steps": steps,
                "mean": {k: round(sum(v) / len(v), 6) if v else None for k, v in steps.items()}}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def epoch_state(self) -> dict:
        """What this process has gathered in the epoch so far (a mid-epoch checkpoint; plain values)."""
        return {"log": {k: [float(x) for x in v] for k, v in self._log.items()}}

    def load_epoch_state(self, state: dict) -> None:
        """After start_epoch: continue the epoch that `epoch_state()` saved."""
        device = next(self.model.parameters()).device
        self._log = {k: [torch.tensor(x, dtype=torch.float32, device=device) for x in state["log"].get(k, [])]
                     for k in self.logged}


class OGMGE(Balancer):
    """On-the-fly gradient modulation with generalisation enhancement, per step:
    - each modality's part of the concat head's logits (ConcatFusion.modality_logits), its score
      s_m = Σ softmax[y] over the batch, and ratio_m = s_m / (s_other + 1e-5);
    - coefficient k_m = max(1 - tanh(alpha · ratio_m), 0) when ratio_m > 1 (the dominant modality), else 1;
    - in epochs ogm_start..ogm_end, every weight gradient (not biases: tensors of 2+ dims) of encoder m
      becomes g · k_m + N(0, std(g) + 1e-8) — the noise scale is the gradient's own spread, before scaling.
    The loss is BalanceBenchmark's (the fused cross-entropy; rq's detached probes only train themselves).
    Under DDP the scores are summed over processes and the noise drawn from one generator seeded by
    (seed, step), so every process changes its (already averaged) gradients the same way."""
    name = "ogm-ge"

    def __init__(self, model: nn.Module, env: DistEnv, cfg: BalanceConfig, seed: int):
        super().__init__(model, env)
        if not isinstance(self.model.fusion, ConcatFusion):
            raise ValueError("OGM-GE needs the concat fusion (per-modality parts of its head)")
        self.cfg, self.seed, self.step = cfg, seed, 0
        self.weights = {m: [p for p in self.model.encoders[m].parameters() if p.ndim > 1] for m in self.pair}
        self.coeffs: dict[str, Tensor] = {}

    def in_range(self, epoch: int) -> bool:
        return self.cfg.ogm_start <= epoch <= self.cfg.ogm_end

    def loss(self, out, labels: Tensor) -> Tensor:
        """Adds nothing: it measures the step's scores and sets the coefficients after_backward applies."""
        with torch.no_grad():
            parts = ConcatFusion.modality_logits(self.model.head, {m: out.features[m] for m in self.pair})
            scores = all_reduce_sum(torch.stack([true_class_score(parts[m], labels) for m in self.pair]), self.env)
            ratio, coeffs = ogm_coefficients(scores, self.cfg.ogm_alpha)
        self.coeffs = dict(zip(self.pair, coeffs))
        self.record_coefficients(ratio, coeffs)
        return super().loss(out, labels)

    def after_backward(self) -> None:
        if self.active:
            gen = None
            for m in self.pair:
                for p in self.weights[m]:
                    if p.grad is None:
                        continue
                    if gen is None:
                        gen = torch.Generator(p.grad.device).manual_seed(self.seed * 1_000_003 + self.step)
                    modulate_(p.grad, self.coeffs[m], gen)
        self.step += 1

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def ogm_coefficients(scores: Tensor, alpha: float) -> tuple[Tensor, list[Tensor]]:
    """From the two modalities' scores [2]: (ratio s_0 / s_1, [k_0, k_1]) — OGM-GE's rule."""
    ratios = [scores[0] / (scores[1] + 1e-5), scores[1] / (scores[0] + 1e-5)]
    coeffs = [torch.where(r > 1, (1 - torch.tanh(alpha * r.clamp(min=0))).clamp(min=0), torch.ones_like(r))
              for r in ratios]
    return ratios[0], coeffs


def modulate_(grad: Tensor, coeff: Tensor, gen: torch.Generator) -> None:
    """grad <- grad · coeff + N(0, std(grad) + 1e-8), in place (the std of the unscaled gradient)."""
    std = grad.float().std() + 1e-8
    noise = torch.randn(grad.shape, generator=gen, device=grad.device, dtype=torch.float32) * std
    grad.mul_(coeff.to(grad.dtype)).add_(noise.to(grad.dtype))


class PMR(Balancer):
    """Prototypical modal rebalance, per step (in epochs pmr_start..pmr_end, once prototypes exist):
    - each modality's prototype logits: minus the Euclidean distance of its CLS feature to each class
      prototype, [B, C]; its score s_m = Σ softmax[y]; ratio = s_audio / s_visual;
    - the weaker modality (ratio > 1: visual; < 1: audio) gets pmr_alpha × the cross-entropy of its
      prototype logits added to the loss (BalanceBenchmark's and the authors' rule: a constant weight
      for the modality the ratio names weaker, 0 for the other).
    Prototypes: per class, the mean feature of each modality, blended with the previous epoch's as
    (1 - m) · new + m · old (momentum m = 0.5). rq gathers the means from the training steps of the
    previous epoch (summed over processes) instead of an extra no-grad pass over a tenth of the
    training set at the epoch's start, so PMR starts in epoch 1 (epoch 0 builds the first prototypes)."""
    name = "pmr"

    def __init__(self, model: nn.Module, env: DistEnv, cfg: BalanceConfig, num_classes: int):
        super().__init__(model, env)
        self.cfg, self.num_classes = cfg, num_classes
        self.prototypes: dict[str, Tensor] | None = None
        self._sums: dict[str, Tensor] = {}
        self._counts: Tensor | None = None

    def in_range(self, epoch: int) -> bool:
        return self.cfg.pmr_start <= epoch <= self.cfg.pmr_end and self.prototypes is not None

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        self._sums, self._counts = {}, None

    def loss(self, out, labels: Tensor) -> Tensor:
        feats = {m: out.features[m].float() for m in self.pair}
        self._accumulate(feats, labels)
        if self.prototypes is None:
            return super().loss(out, labels)
        logits = {m: prototype_logits(feats[m], self.prototypes[m].to(feats[m].device)) for m in self.pair}
        with torch.no_grad():
            ratio = true_class_score(logits[self.pair[0]], labels) / true_class_score(logits[self.pair[1]], labels)
        coeffs = pmr_coefficients(ratio, self.cfg.pmr_alpha)
        self.record_coefficients(ratio, coeffs)
        if not self.active:
            return super().loss(out, labels)
        (a, v), (k_a, k_v) = self.pair, coeffs
        return (k_a * F.cross_entropy(logits[a], labels, reduction="none")
                + k_v * F.cross_entropy(logits[v], labels, reduction="none"))

    def _accumulate(self, feats: dict[str, Tensor], labels: Tensor) -> None:
        onehot = F.one_hot(labels, self.num_classes).float()                     # [B, C]
        for m, f in feats.items():
            add = onehot.T @ f.detach()                                          # [C, D] per-class sums
            self._sums[m] = self._sums[m] + add if m in self._sums else add
        counts = onehot.sum(0)
        self._counts = counts if self._counts is None else self._counts + counts

    def end_epoch(self) -> dict:
        line = super().end_epoch()
        if self._counts is not None:
            counts = all_reduce_sum(self._counts, self.env)
            new = {m: all_reduce_sum(self._sums[m], self.env) for m in self.pair}
            self.prototypes = update_prototypes(self.prototypes, new, counts, self.cfg.pmr_momentum)
        return line

    def state_dict(self) -> dict:
        return {"prototypes": None if self.prototypes is None else {m: p.cpu() for m, p in self.prototypes.items()}}

    def epoch_state(self) -> dict:
        return {**super().epoch_state(), "sums": {m: t.cpu() for m, t in self._sums.items()},
                "counts": None if self._counts is None else self._counts.cpu()}

    def load_epoch_state(self, state: dict) -> None:
        super().load_epoch_state(state)
        device = next(self.model.parameters()).device
        self._sums = {m: torch.as_tensor(t).to(device) for m, t in state["sums"].items()}
        self._counts = None if state["counts"] is None else torch.as_tensor(state["counts"]).to(device)

    def load_state_dict(self, state: dict) -> None:
        protos = state.get("prototypes")
        self.prototypes = None if protos is None else {m: torch.as_tensor(protos[m]).float() for m in self.pair}


def prototype_logits(features: Tensor, prototypes: Tensor) -> Tensor:
    """Minus the Euclidean distance of each feature [B, D] to each class prototype [C, D]: [B, C]."""
    return -torch.cdist(features, prototypes)


def pmr_coefficients(ratio: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """(audio weight, visual weight) of the prototype losses for ratio = s_audio / s_visual."""
    zero = torch.zeros_like(ratio)
    return torch.where(ratio < 1, zero + alpha, zero), torch.where(ratio > 1, zero + alpha, zero)


def update_prototypes(old: dict[str, Tensor] | None, sums: dict[str, Tensor], counts: Tensor,
                      momentum: float) -> dict[str, Tensor]:
    """Class means (sums / counts) blended with the previous prototypes; a class with no sample this
    epoch keeps its previous prototype (zeros before it has one)."""
    out = {}
    for m, s in sums.items():
        seen = counts[:, None] > 0
        mean = s / counts.clamp(min=1)[:, None]
        prev = old[m].to(mean.device) if old is not None else torch.zeros_like(mean)
        mean = torch.where(seen, mean, prev)
        out[m] = (1 - momentum) * mean + momentum * prev if old is not None else mean
    return out


# Method -> its balancer, built from (config, model, process group, number of classes).
BALANCERS = {
    "ogm-ge": lambda cfg, model, env, num_classes: OGMGE(model, env, cfg.balance, cfg.seed),
    "pmr": lambda cfg, model, env, num_classes: PMR(model, env, cfg.balance, num_classes),
}


def make_balancer(cfg: TrainConfig, model: nn.Module, env: DistEnv, num_classes: int) -> Balancer | None:
    """The balancer a method trains with (None for the methods that train plainly)."""
    build = BALANCERS.get(cfg.method)
    return build(cfg, model, env, num_classes) if build is not None else None
