"""Stage `frames`: the frames shown at t = 0, 1/fps, 2/fps, ... as JPEGs, short side `frame_size`
(with times "middle": at t = 1/2, 3/2, ... over fps, the released code's frames).

"Shown at t" = the last frame whose presentation time is <= t. ffmpeg's `fps` filter gives exactly
that with `round=up` (a frame at 0.96 s maps to output slot 1, and of several frames mapping to a
slot the filter keeps the last one, i.e. the one at 1.00 s); `start_time=0` anchors the slots at the
file's start, so a stream that starts late repeats its first frame instead of shifting every slot.
tests/test_stages.py checks this on clips whose pixels encode their own timestamps."""
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from rq.pipeline.stages import probe
from rq.pipeline.errors import ClipError
from rq.pipeline.ffmpeg import input_file, stream_ffmpeg
from rq.pipeline.stages.settings import FrameSettings

STAGE = "frames"
VERSION = 1


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side `short_side` (0 keeps the size), aspect kept, at least 1 pixel."""
    if short_side <= 0:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def frames_stage(path: Path, inputs: Mapping[str, Mapping[str, bytes]], settings: FrameSettings,
                 timeout: float = 60.0) -> dict[str, bytes]:
    info = probe.load(inputs)
    if not info["has_video"]:
        raise ClipError(STAGE, "no video stream")
    w, h = output_size(info["width"], info["height"], settings.frame_size)
    # round=up: slot i collects the frames of ((i-1)/fps, i/fps] and keeps the last, the one shown at
    # i/fps; round=near (ffmpeg's default): [(i-1/2)/fps, (i+1/2)/fps), the last before (i+1/2)/fps.
    picture = (input_file(path)["V:0"]  # V: a real video stream, never an attached cover picture
               .filter("fps", fps=settings.fps, round="up" if settings.times == "start" else "near", start_time=0)
               .filter("scale", w, h, flags="area"))
    frame_bytes = w * h * 3
    params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
    jpegs = [_jpeg(np.frombuffer(raw, np.uint8).reshape(h, w, 3), params)
             for raw in stream_ffmpeg(picture.output("pipe:", format="rawvideo", pix_fmt="bgr24"), stage=STAGE,
                                      path=path, timeout=timeout, record_size=frame_bytes)]
    if not jpegs:
        raise ClipError(STAGE, "ffmpeg decoded no video frame")
    digits = max(4, len(str(len(jpegs) - 1)))  # zero-padded: names sort in time order
    return {f"f{i:0{digits}d}.jpg": jpg for i, jpg in enumerate(jpegs)}


def _jpeg(frame: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame, params)
    if not ok:
        raise ClipError(STAGE, "JPEG encoding failed")
    return buf.tobytes()
