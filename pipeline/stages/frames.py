"""Stage `frames`: one frame per 1/fps seconds as JPEGs, short side `frame_size`, and the real time
of each (the entry's meta, which the shard writer puts in the sample's json).

exact (default): the frame shown at t = 0, 1/fps, 2/fps, ..., i.e. the last frame whose presentation
time is <= t; a stream that starts late repeats its first frame instead of shifting every slot. With
times "middle": the last frame before t = 1/2, 3/2, ... over fps (the released code's frames).
fast: only reference frames are decoded (B-frames skipped), and the one nearest to t is kept: for a
codec with B-frames its time is within half the largest distance between reference frames of t (x264's
defaults, at most 3 B-frames in a row: 2 frame intervals, 0.08 s at 25 fps), and never more than 0.2 s
(a clip whose reference frames are sparser is decoded exactly). Both in rq.pipeline.decode;
tests/test_stages.py checks them on clips whose pixels encode their own timestamps.

The frames a clip yields are bounded by the video really decoded (count x typical spacing): a clip
with one frame stamped an hour late gives its own ~10 frames, not 3,600 copies; the entry says so."""
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from rq.pipeline.decode import Decoded, decode
from rq.pipeline.errors import ClipError
from rq.pipeline.stages.settings import FrameSettings

STAGE = "frames"
VERSION = 2   # 2: frame times in the entry's meta, frames capped by the decoded duration
MODES = ("exact", "fast")


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side `short_side` (0 keeps the size), aspect kept, at least 1 pixel.
    rq.pipeline.decode has ffmpeg compute the same numbers (its `_size_exprs`)."""
    if short_side <= 0:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def frames_stage(path: Path, inputs: Mapping[str, Mapping[str, bytes]], settings: FrameSettings,
                 timeout: float = 60.0) -> tuple[dict[str, bytes], dict]:
    return from_decoded(decode(path, frames=settings, on_frame=jpeg_encoder(settings), timeout=timeout))


def jpeg_encoder(settings: FrameSettings):
    """The per-frame callback of `decode`: a bgr24 frame -> JPEG bytes (while ffmpeg decodes the next)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]

    def encode(frame: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", frame, params)
        if not ok:
            raise ClipError(STAGE, "JPEG encoding failed")
        return buf.tobytes()
    return encode


def from_decoded(decoded: Decoded) -> tuple[dict[str, bytes], dict]:
    """(members f0000.jpg ..., meta {"times": [...], "decode": "exact"|"fast", "note": ...}) of a decode
    that asked for frames ("decode": how they were decoded: fast falls back to exact on sparse GOPs)."""
    if not decoded.info["has_video"]:
        raise ClipError(STAGE, "no video stream")
    jpegs = decoded.frames
    digits = max(4, len(str(len(jpegs) - 1)))  # zero-padded: names sort in time order
    meta = {"times": decoded.frame_times, "decode": decoded.frame_decode}
    if decoded.frames_note:
        meta["note"] = decoded.frames_note
    return {f"f{i:0{digits}d}.jpg": jpg for i, jpg in enumerate(jpegs)}, meta
