"""Samples of sequence-feature shards (CMU-MOSEI, `rq preprocess mosei`): per modality `<m>.npy` float32
[steps, size] and `<m>_mask.npy` bool [steps] (True = a real step), decoded and batched as
    {"features": {m: float32 [B, steps, size]}, "masks": {m: bool [B, steps]}, "label", "key"}.
Nothing is augmented: the features are the model's input as they are."""
import numpy as np
import torch

from rq.train.data.sample import npy_view


def decode_features(sample: dict, *, shapes: dict[str, tuple[int, int]], n_classes: int) -> tuple:
    """(features {m: [steps, size]}, masks {m: [steps]}, label, key); ValueError naming the bad member."""
    if "cls" not in sample:
        raise ValueError("no cls member")
    label = int(sample["cls"])
    if not 0 <= label < n_classes:
        raise ValueError(f"label {label} outside 0..{n_classes - 1}")
    features, masks = {}, {}
    for m, shape in shapes.items():
        for name in (f"{m}.npy", f"{m}_mask.npy"):
            if name not in sample:
                raise ValueError(f"no {name} member")
        x, mask = npy_view(sample[f"{m}.npy"]), npy_view(sample[f"{m}_mask.npy"])
        if x.shape != shape or x.dtype != np.float32:
            raise ValueError(f"{m}.npy is {x.dtype} {x.shape}, expected float32 {shape}")
        if mask.shape != shape[:1] or mask.dtype != bool:
            raise ValueError(f"{m}_mask.npy is {mask.dtype} {mask.shape}, expected bool ({shape[0]},)")
        features[m], masks[m] = x, mask
    return features, masks, label, sample["__key__"]


def collate_features(group: list[tuple], empty) -> dict:
    """A batch of decoded samples; `empty(shape, dtype)` makes the tensors (shared memory in a worker)."""
    batch = {"features": {}, "masks": {}}
    for m, x in group[0][0].items():
        batch["features"][m] = _stacked([g[0][m] for g in group], empty((len(group), *x.shape), torch.float32))
        batch["masks"][m] = _stacked([g[1][m] for g in group], empty((len(group), x.shape[0]), torch.bool))
    return batch | {"label": torch.tensor([g[2] for g in group], dtype=torch.int64), "key": [g[3] for g in group]}


def _stacked(arrays: list[np.ndarray], out: torch.Tensor) -> torch.Tensor:
    np.stack(arrays, out=out.numpy())
    return out


def features_to_device(batch: dict, device, non_blocking: bool = True) -> dict:
    return {"features": {m: x.to(device, non_blocking=non_blocking) for m, x in batch["features"].items()},
            "masks": {m: x.to(device, non_blocking=non_blocking) for m, x in batch["masks"].items()},
            "label": batch["label"].to(device, non_blocking=non_blocking), "key": batch["key"]}
