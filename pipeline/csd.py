"""CMU-MultimodalSDK computational sequences (`.csd`), read only, with h5py.

A computational sequence is an HDF5 file with one root group named after the sequence ("FACET 4.2",
"glove_vectors", "All Labels", ...) holding `data/<video id>/features` [T, D] and
`data/<video id>/intervals` [T, 2] (start, end in seconds, one row per feature row), and
`metadata/<key>` (strings). A file that is not HDF5, is truncated, or lacks that layout is a CsdError
with one line naming the file; nothing in it is ever executed (h5py reads plain arrays).

h5py is imported when a file is opened, not with this module: the stage registry imports this module
for every recipe, and the video recipes need not load the HDF5 library."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class CsdError(Exception):
    """A computational sequence that cannot be read: one line naming the file and why."""


@dataclass(frozen=True)
class Video:
    """One video's rows of a sequence: intervals [T, 2] (float64 seconds) and features [T, D]."""
    intervals: np.ndarray
    features: np.ndarray


class Sequence:
    """An open computational sequence (use `open_csd`)."""

    def __init__(self, path: Path, name: str, data: h5py.Group):
        self.path, self.name, self._data = path, name, data

    def videos(self) -> list[str]:
        return sorted(self._data)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._data

    def video(self, video_id: str) -> Video:
        """The video's rows; CsdError when they are missing or their shapes do not fit together."""
        try:
            group = self._data[video_id]
            intervals = np.asarray(group["intervals"][()], dtype=np.float64)
            features = np.asarray(group["features"][()])
        except KeyError as e:
            raise CsdError(f"{self.path.name}: video {video_id} has no {e.args[0] if e.args else 'data'}") from None
        except (OSError, TypeError, ValueError) as e:   # a damaged dataset inside a readable file
            raise CsdError(f"{self.path.name}: video {video_id} cannot be read ({_one_line(e)})") from None
        if intervals.ndim != 2 or intervals.shape[1] != 2 or features.ndim != 2 or len(features) != len(intervals):
            raise CsdError(f"{self.path.name}: video {video_id} has intervals {intervals.shape} and features "
                           f"{features.shape}; expected [T, 2] and [T, D]")
        if not np.issubdtype(features.dtype, np.number):
            raise CsdError(f"{self.path.name}: video {video_id} features are {features.dtype}, not numbers")
        return Video(intervals, features)


@contextmanager
def open_csd(path: Path) -> Iterator[Sequence]:
    """The sequence in `path`, open read-only for the `with` block."""
    import h5py
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:   # not HDF5, truncated, missing, unreadable
        raise CsdError(f"{path}: not a readable HDF5 computational sequence ({_one_line(e)})") from None
    try:
        roots = [key for key in f if isinstance(f[key], h5py.Group)]
        if len(roots) != 1 or not isinstance(f[roots[0]].get("data"), h5py.Group):
            raise CsdError(f"{path}: not a computational sequence (expected one root group holding data/, "
                           f"found {', '.join(roots) or 'no group'})")
        yield Sequence(path, roots[0], f[roots[0]]["data"])
    finally:
        f.close()


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__
