"""Stage `probe`: what a clip holds (duration, streams, displayed size, rates), read from ffmpeg's
own description of the input (rq.pipeline.header). When the frames or the audio of the file are
decoded in the same run (the usual case, rq.pipeline.stages.decode_together) it costs no ffmpeg run
of its own; alone (e.g. `--force probe`) it runs `ffmpeg -i`."""
import json
from collections.abc import Mapping
from pathlib import Path

from rq.pipeline.errors import ClipError
from rq.pipeline.ffmpeg import read_header
from rq.pipeline.header import parse_header

STAGE = "probe"
VERSION = 2   # 2: the audio facts are those of the stream ffmpeg picks by default, not the first


def probe_stage(path: Path, inputs: Mapping[str, Mapping[str, bytes]], settings=None,
                timeout: float = 60.0) -> dict[str, bytes]:
    return from_info(parse_header(read_header(path, stage=STAGE, timeout=timeout)))


def from_info(info: dict) -> dict[str, bytes]:
    if not info["has_video"] and not info["has_audio"]:
        raise ClipError(STAGE, "no audio or video stream")
    return {"probe.json": json.dumps(info, sort_keys=True).encode()}
