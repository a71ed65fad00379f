"""Checks on what a stage produces before it can reach a shard. A NaN in one clip's audio (a float WAV
can hold them; ffmpeg passes them through) gives a NaN spectrogram, then a NaN loss, then NaN weights:
such a clip is recorded as failed with the reason instead. Frames need no check: ffmpeg writes them
as 8-bit integers, which cannot be NaN or infinite."""
import numpy as np

from rq.pipeline.errors import ClipError


def require_finite(values: np.ndarray, stage: str, what: str, rate: float | None = None) -> None:
    """ClipError when `values` hold a NaN or an infinity, saying how many and (with a sample `rate`)
    where the first one is."""
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argmax(bad.ravel()))
        where = f", the first at {first / rate:.3f} s" if rate else ""
        raise ClipError(stage, f"{what} holds {int(bad.sum())} non-finite values (NaN or inf){where}")
