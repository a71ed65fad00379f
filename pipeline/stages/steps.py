"""Stage `steps`: every modality's rows (features.py) cut or zero-padded to `steps` time steps, with
the padding recorded as a mask: `<modality>.npy` float32 [steps, D] and `<modality>_mask.npy` bool
[steps] (True = a real step). The first `steps` rows are kept (a longer segment loses its end);
padding goes after them. The only stage that reads --steps, so changing it recomputes nothing else."""
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rq.pipeline.stages.audio import to_npy
from rq.pipeline.stages.features import ROWS, load_npy
from rq.pipeline.stages.settings import StepsSettings

VERSION = 1


def steps_stage(path: Path | None, inputs: Mapping[str, Mapping[str, bytes]], settings: StepsSettings,
                timeout: float) -> dict[str, bytes]:
    out = {}
    for members in inputs.values():
        for name, data in members.items():
            if name.endswith(ROWS):
                modality = name[: -len(ROWS)]
                values, mask = fit_steps(load_npy(data), settings.steps)
                out[f"{modality}.npy"], out[f"{modality}_mask.npy"] = to_npy(values), to_npy(mask)
    return out


def fit_steps(rows: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows cut or zero-padded to `steps`, mask of the real steps)."""
    n = min(len(rows), steps)
    values = np.zeros((steps, rows.shape[1]), np.float32)
    values[:n] = rows[:n]
    mask = np.zeros(steps, bool)
    mask[:n] = True
    return values, mask
