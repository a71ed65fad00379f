"""Checkpoints: everything needed to continue a run bit for bit, written atomically and loadable
with `torch.load(weights_only=True)` (so non-tensor state is kept as plain python values)."""
from pathlib import Path
import random

import numpy as np
import torch

from rollingq import upgrade_state_dict
from rq.pipeline.atomic import atomic_file
from rq.train.trainer.config import ConfigError

REQUIRED = ("model", "config", "classes", "spec_shape")


def rng_state() -> dict:
    """The state of every random generator a training step may draw from."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: Path) -> None:
    """Whole or not at all (rq.pipeline.atomic); a full disk is a one-line WriteError."""
    with atomic_file(path) as f:
        torch.save(state, f)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's contents on the CPU; tensors and plain python values only."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def read_run_checkpoint(path: Path) -> dict:
    """A checkpoint written by `rq train`, or a one-line ConfigError saying why the file is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint")
    try:
        state = load_checkpoint(path)
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        reason = " ".join(str(e).split())[:80]
        raise ConfigError(f"{path}: not a checkpoint of rq train ({type(e).__name__}: {reason}...)") from None
    missing = [key for key in REQUIRED if not isinstance(state, dict) or key not in state]
    if missing:
        raise ConfigError(f"{path}: not a checkpoint of rq train (no {missing[0]!r})")
    return _upgraded(state)


def _upgraded(state: dict) -> dict:
    """A checkpoint of rq 0.1 in today's layout: parameter names of the model built from parts, and the
    optimiser's parameter order recorded by name (it followed the old module order)."""
    model = upgrade_state_dict(state["model"])
    if model is not state["model"]:
        old_params = [k for k in state["model"] if not k.endswith((".rotation", ".rotations_done"))]
        state = {**state, "model": model, "param_names": list(upgrade_state_dict(dict.fromkeys(old_params)))}
    return state


def optimizer_state_for(state: dict, model: torch.nn.Module) -> dict:
    """The checkpoint's optimiser state with its per-parameter entries in `model`'s parameter order
    (matched by name; a checkpoint without names is taken in the order it was saved)."""
    opt = state["optimizer"]
    names = state.get("param_names")
    order = [name for name, _ in model.named_parameters()]
    if not names or names == order:
        return opt
    if sorted(names) != sorted(order):
        raise ConfigError("the checkpoint's optimiser state is for other parameters than this model's")
    index = {name: i for i, name in enumerate(names)}
    old = [index[name] for name in order]          # new position i <- old position old[i]
    groups = [{**g, "params": list(range(len(order)))} for g in opt["param_groups"]]
    if len(groups) != 1:
        raise ConfigError("cannot reorder an optimiser state with several parameter groups")
    return {"state": {i: opt["state"][o] for i, o in enumerate(old) if o in opt["state"]}, "param_groups": groups}


def check_fits(state: dict, path: Path, classes, spec_shape, shards: str, features: dict | None = None) -> None:
    """The model in `state` can read these shards: same classes, same spectrogram shape, same sequence
    features (modality -> (steps, size); none for audio-visual shards)."""
    if list(classes) != list(state["classes"]):
        raise ConfigError(f"{shards}: its classes differ from those {path} was trained on")
    trained = {m: tuple(shape) for m, shape in (state.get("features") or {}).items()}
    if trained != {m: tuple(shape) for m, shape in (features or {}).items()}:
        raise ConfigError(f"{shards}: its sequence features {dict(features or {}) or 'none'} differ from those "
                          f"{path} was trained on ({trained or 'none'})")
    if tuple(spec_shape) != tuple(state["spec_shape"]):
        raise ConfigError(f"{shards}: spectrograms are {spec_shape[0]}x{spec_shape[1]}, {path} was trained on "
                          f"{state['spec_shape'][0]}x{state['spec_shape'][1]}")
