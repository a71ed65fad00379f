"""One ffmpeg run per file for every stage that decodes it: ffmpeg's description of the input (the
probe stage's facts), the frames and the audio, in any combination.

Why one run: on short clips starting a process costs more than decoding them (2 s at 96x64: ~25 ms
per ffmpeg start on a busy 2-core machine against ~5 ms of decoding), and rq used to start three per
clip (probe, frames, audio). Now the runner asks for every missing stage of a file at once.

How the run is read:
- stderr at `-loglevel level+info`: every line tagged with its level. The `Input #0` lines are the
  header the probe parses; `showinfo` prints every decoded frame's pts before the frame-picking
  filters; error-level lines after the header are damage reported while decoding.
- stdout: the picked frames as BMP images (`-c:v bmp`, bgr24). The BMP header carries the size, so
  the frames' size need not be known before the run: ffmpeg computes it from the displayed size with
  the same arithmetic as `frames.output_size` (round half to even included).
- a second output on an inherited file descriptor: the audio stream ffmpeg picks by default (its
  `default` disposition first, then the most channels), mono float32 at the asked rate.

Which frame is kept for second t ("slot" t*fps): `fps=round=up:start_time=0` keeps the last frame
whose pts <= t (exact mode). In fast mode the decoder skips B-frames (`-skip_frame bidir`, and the
loop filter) and `setpts` first moves each frame to the midpoint between it and the previous one, so
the same filter then keeps the decoded frame nearest to t. Python repeats that rule on the pts list
from `showinfo` to tell each kept frame's real time. A clip whose reference frames come out more than
2 x FAST_MAX_ERROR apart (HEVC from x265, whose P-frames are B-slices) is decoded exactly instead."""
from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rq.pipeline.errors import ClipError, ClipTimeout, TransientClipError
from rq.pipeline.ffmpeg import FfmpegMissing, environmental, ffmpeg_binary, raise_if_killed, reason_of
from rq.pipeline.header import parse_header

if TYPE_CHECKING:  # not imported at run time: the stage modules import this one
    from rq.pipeline.stages.settings import AudioDecodeSettings, FrameSettings

GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info", "-filter_complex_threads", "1")
FAST_INPUT_ARGS = ("-skip_frame:v", "bidir", "-skip_loop_filter:v", "all")
_BMP_HEADER = 54
_LONGEST_GAP = 10   # a gap between decoded frames counts as at most this many typical gaps (the frame cap)
FAST_MAX_ERROR = 0.2   # s: fast mode's kept frames are at most this far from their second, else decoded exactly
# "[tag @ 0x..] [tag2 @ 0x..] [level] message": tags are optional, the level always there.
_LINE = re.compile(r"^(?P<tags>(?:\[[^\]]* @ (?:0x)?[0-9a-f]+\] )*)\[(?P<level>[a-z]+)\] (?P<msg>.*)$")
_SHOWINFO = re.compile(r"\bn:\s*\d+ pts:\s*(?P<pts>-?\d+|NOPTS) pts_time:")
_TIME_BASE = re.compile(r"config in time_base: (\d+)/(\d+)")
_ERRORS = ("error", "fatal", "panic")
# What H.264's decoder says when the B-frames it skips in fast mode were references of later B-frames
# (x264's b-pyramid): a consequence of skipping them, not damage.
_SKIPPING_SAYS = ("mmco: unref short failure",)


@dataclass
class Decoded:
    """What one run gave. `frames` holds what `on_frame` made of each kept frame (JPEG bytes)."""
    info: dict                                   # parse_header of the Input #0 lines
    frames: list = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)   # real pts (s) of each kept frame
    frames_note: str | None = None               # why frames were dropped (the cap), if they were
    frame_decode: str | None = None              # how the frames were decoded: exact, or fast
    wave: np.ndarray | None = None               # mono float32; None when no audio was asked or there is none


def decode(path: Path, *, frames: FrameSettings | None = None, audio: AudioDecodeSettings | None = None,
           on_frame: Callable[[np.ndarray], object] = lambda f: f, timeout: float = 60.0,
           header_stage: str | None = None) -> Decoded:
    """Decode what is asked in one ffmpeg run. A file without the asked stream comes back without it
    (info says which streams exist); then the rest is decoded in a second run. ClipError(stage) when
    the file cannot be read: `header_stage` (default: the first asked stage) when ffmpeg could not
    even describe it, else "frames" (or "audio" when only audio was asked)."""
    stage = "frames" if frames is not None else "audio"
    _check_readable(path, header_stage or stage)

    def run(frames: FrameSettings | None, audio: AudioDecodeSettings | None) -> _Run:
        return _run(path, frames, audio, on_frame, timeout, header_stage or stage, stage)
    done = run(frames, audio)
    if done.failed is not None and done.info is not None:
        missing_video = frames is not None and not done.info["has_video"]
        missing_audio = audio is not None and not done.info["has_audio"]
        if missing_video or missing_audio:
            frames, audio = (None if missing_video else frames), (None if missing_audio else audio)
            if frames is None and audio is None:
                return Decoded(done.info)
            done = run(frames, audio)
    if frames is not None and frames.frame_decode == "fast" and (done.sparse or done.failed and done.info):
        # Skipping B-frames left too few frames (x265's HEVC codes its P-frames as B-slices: only
        # keyframes remain) or made the decoder complain (missing references): this clip is decoded
        # exactly instead, so fast never means far off, and damage is judged on a full decode.
        done = run(replace(frames, frame_decode="exact"), audio)
    if done.failed is not None:
        raise done.failed
    return done.result


def _check_readable(path: Path, stage: str) -> None:
    """A file rq cannot open now (permissions, a vanished mount, an I/O error) is the machine's
    problem, not the file's: transient, so it is not cached and the next run tries again."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as e:
        raise TransientClipError(stage, f"cannot read the file: {e.strerror}") from None


@dataclass
class _Run:
    info: dict | None        # None: ffmpeg printed no description of the input
    result: Decoded | None = None
    failed: ClipError | None = None
    sparse: bool = False     # the decoded frames are further apart than fast mode allows


def _run(path: Path, frames: FrameSettings | None, audio: AudioDecodeSettings | None, on_frame, timeout: float,
         header_stage: str, stage: str) -> _Run:
    with tempfile.TemporaryFile() as stderr, tempfile.TemporaryFile() as wave_file:
        argv = command(path, frames, audio, wave_fd=wave_file.fileno())
        kept: list = []
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                    pass_fds=(wave_file.fileno(),))
        except OSError as e:
            raise FfmpegMissing(f"cannot run {argv[0]}: {e.strerror}") from None
        expired = threading.Event()
        deadline = threading.Timer(timeout, lambda: (expired.set(), proc.kill()))
        deadline.start()
        try:
            for image in _bmp_frames(proc.stdout, stage):
                kept.append(on_frame(image))
            proc.wait()
        finally:
            deadline.cancel()
            proc.kill()  # no-op when it has exited; stops it when reading failed
            proc.wait()
            proc.stdout.close()
        if expired.is_set():
            raise ClipTimeout(stage, f"ffmpeg timed out after {timeout:g} s")
        raise_if_killed(proc.returncode, stage)
        stderr.seek(0)
        log = _Log(stderr.read().decode("utf-8", "replace"),
                   ignore=_SKIPPING_SAYS if frames is not None and frames.frame_decode == "fast" else ())
        if "Input #0" not in log.header:
            return _Run(None, failed=_error(header_stage, log.reason(path)))
        info = parse_header(log.header)
        if proc.returncode != 0:
            return _Run(info, failed=_error(stage, log.reason(path)))
        if log.errors:
            return _Run(info, failed=ClipError(stage, _damage(log, path, info)))
        result = Decoded(info)
        sparse = False
        if frames is not None:
            result.frames, result.frame_times, result.frames_note = _kept_frames(kept, log, frames)
            result.frame_decode = frames.frame_decode
            sparse = frames.frame_decode == "fast" and too_sparse(log.pts, log.time_base, info.get("fps"))
        if audio is not None:
            wave_file.seek(0)
            result.wave = np.frombuffer(wave_file.read(), "<f4")
        return _Run(info, result, sparse=sparse)


def _error(stage: str, reason: str) -> ClipError:
    return (TransientClipError if environmental(reason) else ClipError)(stage, reason)


def command(path: Path, frames: FrameSettings | None, audio: AudioDecodeSettings | None, wave_fd: int) -> list[str]:
    """The ffmpeg argv: frames to stdout as BMP, audio to `wave_fd`."""
    argv = [ffmpeg_binary(), *GLOBAL_ARGS, "-threads", "1"]
    if frames is not None and frames.frame_decode == "fast":
        argv += FAST_INPUT_ARGS
    argv += ["-i", f"file:{os.path.abspath(path)}"]
    if frames is not None:
        argv += ["-filter_complex", f"[0:V:0]{frame_graph(frames)}[frames]", "-map", "[frames]",
                 "-c:v", "bmp", "-pix_fmt", "bgr24", "-f", "image2pipe", "pipe:1"]
    if audio is not None:
        # No -map: ffmpeg picks the audio stream itself (default disposition, then most channels).
        argv += ["-vn", "-sn", "-dn", "-ac", "1", "-ar", str(audio.sample_rate), "-f", "f32le", f"pipe:{wave_fd}"]
    return argv


def frame_graph(settings: FrameSettings) -> str:
    """showinfo (every decoded frame's pts), [fast: midpoint pts], the 1/fps slots, the resize."""
    steps = ["showinfo=checksum=0"]
    if settings.frame_decode == "fast":
        steps.append("setpts='if(isnan(PREV_INPTS),PTS,(PTS+PREV_INPTS)/2)'")
    # round=up: slot i collects the frames of ((i-1)/fps, i/fps] and keeps the last, the one shown at
    # i/fps; round=near (times "middle", ffmpeg's default): [(i-1/2)/fps, (i+1/2)/fps), the last before (i+1/2)/fps.
    steps.append(f"fps=fps={settings.fps!r}:round={'up' if settings.times == 'start' else 'near'}:start_time=0")
    w, h = _size_exprs(settings.frame_size)
    steps.append(f"scale=w='{w}':h='{h}':flags=area")
    return ",".join(steps)


def _size_exprs(short_side: int) -> tuple[str, str]:
    """ffmpeg expressions of `frames.output_size`: max(1, round(side * (S / min(iw, ih)))), with
    Python's round (half to even) so both give the same size to the pixel."""
    if short_side <= 0:
        return "iw", "ih"

    def side(name: str) -> str:
        x = f"({name}*({short_side}/min(iw,ih)))"
        f = f"floor{x}"
        return f"max(1,{f}+gt({x}-{f},0.5)+eq({x}-{f},0.5)*mod({f},2))"
    return side("iw"), side("ih")


def _bmp_frames(stream, stage: str):
    """bgr24 frames (H, W, 3) from a stream of BMP images of one size."""
    header = stream.read(_BMP_HEADER)
    if not header:
        return
    if len(header) < _BMP_HEADER or header[:2] != b"BM":
        raise ClipError(stage, "ffmpeg's frame output is not a BMP image")
    size, offset = int.from_bytes(header[2:6], "little"), int.from_bytes(header[10:14], "little")
    w, h = int.from_bytes(header[18:22], "little", signed=True), int.from_bytes(header[22:26], "little", signed=True)
    row = (3 * w + 3) // 4 * 4   # rows are padded to 4 bytes; positive height = bottom row first
    record = header + stream.read(size - _BMP_HEADER)
    while len(record) == size:
        rows = np.frombuffer(record, np.uint8, count=row * abs(h), offset=offset).reshape(abs(h), row)
        yield (rows[::-1] if h > 0 else rows)[:, :3 * w].reshape(abs(h), w, 3)
        record = stream.read(size)
    if record:
        raise ClipError(stage, f"ffmpeg output ended inside a frame ({len(record)} of {size} bytes)")


class _Log:
    """ffmpeg's stderr, split into the header, showinfo's frames and error-level lines.

    ffmpeg's threads share one "start of line" flag: a message logged while another thread is midway
    through a line (the output streams' description, printed piece by piece) lands on that line without
    its tags. Each message itself is whole, so showinfo's are found anywhere in the text."""

    def __init__(self, text: str, ignore: tuple[str, ...] = ()):
        header, self.errors = [], []
        self.pts = [None if m.group("pts") == "NOPTS" else int(m.group("pts")) for m in _SHOWINFO.finditer(text)]
        tb = _TIME_BASE.search(text)
        self.time_base = Fraction(int(tb.group(1)), int(tb.group(2))) if tb else None
        in_header, level, tags = False, "info", ""
        for line in text.splitlines():
            m = _LINE.match(line)
            if m:
                level, tags, msg = m.group("level"), m.group("tags"), m.group("msg")
            else:
                msg = line   # the rest of a message that had a line break in it
            if not tags and msg.startswith("Input #0"):
                in_header = True
            elif in_header and (tags or msg.startswith(("Stream mapping", "Output #", "Input #1"))):
                in_header = False
            if in_header:
                header.append(msg)
            elif level in _ERRORS and m and msg not in ignore:
                self.errors.append(msg)
        self.header = "\n".join(header)

    def reason(self, path: Path) -> str:
        return reason_of("\n".join(self.errors), path)


def _damage(log: _Log, path: Path, info: dict) -> str:
    """The one line for a file that decoded with errors: ffmpeg's first complaint and how far it got."""
    done = [p for p in log.pts if p is not None]
    extent = ""
    if done and log.time_base is not None:
        extent = f" (frames decoded up to {float(max(done) * log.time_base):.2f} s"
        extent += f" of {info['duration']:.2f} s)" if info.get("duration") else ")"
    first = reason_of(log.errors[0], path).removeprefix("ffmpeg: ")
    return f"damaged: ffmpeg reported errors while decoding{extent}: {first}"


def _kept_frames(kept: list, log: _Log, settings: FrameSettings) -> tuple[list, list[float], str | None]:
    """(kept frames, their real times, note): the frames cut to what the decoded video can fill."""
    pts = [p for p in log.pts if p is not None]
    if not kept:
        raise ClipError("frames", "ffmpeg decoded no video frame")
    if not pts or log.time_base is None:
        raise ClipError("frames", "internal error: ffmpeg printed no frame timestamps")
    fps = Fraction(settings.fps).limit_denominator(1_001_000)
    picked = shown_frames(pts, log.time_base, fps, len(kept), nearest=settings.frame_decode == "fast",
                          middle=settings.times == "middle")
    times = [round(float(pts[k] * log.time_base), 6) for k in picked]
    cap = frame_cap(pts, log.time_base, fps)
    if len(kept) <= cap:
        return kept, times, None
    note = (f"kept the first {cap} of {len(kept)} frames: the video's timestamps span "
            f"{float((max(pts) - min(pts)) * log.time_base):.1f} s, but only {decoded_seconds(pts, log.time_base):.1f} s "
            f"of frames were decoded")
    return kept[:cap], times[:cap], note


def shown_frames(pts: list[int], time_base: Fraction, fps: Fraction, slots: int, nearest: bool,
                 middle: bool = False) -> list[int]:
    """Index (into `pts`, decode order) of the frame ffmpeg's `fps=round=up:start_time=0` puts in each
    of the first `slots` slots: the last frame whose pts, rounded up to a slot (to the nearest slot,
    halves away from zero, with `middle`: round=near), is <= the slot (the first frame fills slots
    before it). With `nearest`, each pts is first moved to the midpoint with the previous one, as
    `frame_graph`'s setpts does (truncated to an integer, like setpts)."""
    keys = pts if not nearest else [pts[0]] + [int((a + b) / 2) for a, b in zip(pts, pts[1:])]
    half = Fraction(1, 2)
    ticks = [(math.floor(x + half) if x >= 0 else -math.floor(half - x)) if middle else math.ceil(x)
             for x in (k * time_base * fps for k in keys)]
    picked, k = [], 0
    for slot in range(slots):
        while k + 1 < len(ticks) and ticks[k + 1] <= slot:
            k += 1
        picked.append(k)
    return picked


def too_sparse(pts: list[int | None], time_base: Fraction | None, fps: float | None) -> bool:
    """Whether fast mode's decoded frames leave a gap over 2 x `FAST_MAX_ERROR` (so a kept frame could be
    further than that from its second) in a stream whose nominal rate has frames more often than that."""
    done = sorted(p for p in pts if p is not None)
    if time_base is None or len(done) < 2 or not fps or 1 / fps >= 2 * FAST_MAX_ERROR:
        return False
    return max(b - a for a, b in zip(done, done[1:])) * time_base > 2 * FAST_MAX_ERROR


def decoded_seconds(pts: list[int], time_base: Fraction) -> float:
    """How much video the decoded frames really are: the gaps between them, each counted as at most
    `_LONGEST_GAP` typical (median) gaps, plus one typical gap for the last frame. One frame stamped an
    hour late then adds a fraction of a second, while slideshows and skipped B-frames keep their length."""
    ordered = sorted(pts)
    gaps = [b - a for a, b in zip(ordered, ordered[1:]) if b > a]
    if not gaps:
        return 0.0
    typical = statistics.median(gaps)
    return float((sum(min(g, _LONGEST_GAP * typical) for g in gaps) + typical) * time_base)


def frame_cap(pts: list[int], time_base: Fraction, fps: Fraction) -> int:
    """Most slots the decoded frames can fill: one per 1/fps of decoded video, plus one for rounding."""
    return max(1, math.ceil(decoded_seconds(pts, time_base) * fps - 1e-9)) + 1
