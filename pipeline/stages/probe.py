"""Stage `probe`: what a clip holds (duration, streams, displayed size, rates), read from ffmpeg's
own description of the input (rq.pipeline.header). When the frames or the audio of the file are
decoded in the same run (the usual case, rq.pipeline.stages.decode_together) it costs no ffmpeg run
of its own; alone (e.g. `--force probe`) it runs `ffmpeg -i`.

Its output is meta only (no members): the facts live in the cache entry's header, which a no-change
rerun reads anyway, so settling a cached clip reads no entry's bytes."""
from collections.abc import Mapping
from pathlib import Path

from rq.pipeline.errors import ClipError
from rq.pipeline.ffmpeg import read_header
from rq.pipeline.header import parse_header

STAGE = "probe"
VERSION = 2   # 2: the audio facts of the stream ffmpeg picks by default (not the first), as meta


def probe_stage(path: Path, inputs: Mapping[str, Mapping[str, bytes]], settings=None,
                timeout: float = 60.0) -> tuple[dict[str, bytes], dict]:
    return from_info(parse_header(read_header(path, stage=STAGE, timeout=timeout)))


def from_info(info: dict) -> tuple[dict[str, bytes], dict]:
    """(no members, the facts as meta)."""
    if not info["has_video"] and not info["has_audio"]:
        raise ClipError(STAGE, "no audio or video stream")
    return {}, info
