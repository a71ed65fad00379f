"""The one place rq runs ffmpeg: finding the binary, building inputs, running with a timeout and
turning a failure into a one-line `ClipError`.

Commands are built with ffmpeg-python; its own `.run()` has no timeout, so the compiled argv is run
here with subprocess. The binary is looked up on every call (`$RQ_FFMPEG` first), so a test can point
`$RQ_FFMPEG` at a wrapper that counts calls."""
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import ffmpeg

from rq.pipeline.errors import ClipError, ClipTimeout, TransientClipError

# Quiet, never reads the terminal, one thread for filters (parallelism comes from workers, not ffmpeg).
GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error", "-filter_complex_threads", "1")

# ffmpeg's closing lines that only repeat that something failed; the reason is on an earlier line.
_GENERIC = re.compile(r"^(Conversion failed!|Exiting normally.*|Error opening (input|output) file .*|"
                      r"At least one output file must be specified)$")
_TAG = re.compile(r"^\[[^\]]* @ (0x)?[0-9a-f]+\]\s*")


class FfmpegMissing(RuntimeError):
    """No usable ffmpeg binary (a set-up problem, not a bad clip)."""


def ffmpeg_location() -> tuple[str, str]:
    """(path, where it came from): `$RQ_FFMPEG`, else `ffmpeg` on PATH, else imageio-ffmpeg's build."""
    env = os.environ.get("RQ_FFMPEG")
    if env:
        found = shutil.which(env)
        if not found:
            raise FfmpegMissing(f"$RQ_FFMPEG={env}: not an executable file")
        return found, "$RQ_FFMPEG"
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path, "PATH"
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"
    except (ImportError, RuntimeError) as e:
        raise FfmpegMissing("no ffmpeg: set $RQ_FFMPEG, put ffmpeg on PATH or `pip install imageio-ffmpeg`"
                            f" ({e})") from None


def ffmpeg_binary() -> str:
    return ffmpeg_location()[0]


def ffmpeg_version(binary: str | None = None) -> str:
    """The first line of `ffmpeg -version`, e.g. 'ffmpeg version 7.0.2-static ...'."""
    done = subprocess.run([binary or ffmpeg_binary(), "-hide_banner", "-version"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)
    return done.stdout.splitlines()[0].strip() if done.stdout else "unknown"


def input_file(path: Path, **options) -> ffmpeg.nodes.FilterableStream:
    """An ffmpeg-python input for a clip: absolute path behind the `file:` protocol, so names with a
    leading dash, colons, quotes, spaces or unicode are never read as options or URLs; one decoder thread."""
    return ffmpeg.input(f"file:{os.path.abspath(path)}", threads=1, **options)


def run_ffmpeg(stream, *, stage: str, path: Path, timeout: float) -> bytes:
    """Run an ffmpeg-python output node; return its stdout. Failure or timeout -> ClipError(stage, reason)."""
    argv = stream.compile(cmd=ffmpeg_binary())
    return _execute([argv[0], *GLOBAL_ARGS, *argv[1:]], stage=stage, path=path, timeout=timeout).stdout


def stream_ffmpeg(stream, *, stage: str, path: Path, timeout: float, record_size: int) -> Iterator[bytes]:
    """Run an ffmpeg-python output node and yield its stdout in records of exactly `record_size` bytes
    (e.g. one raw video frame) while ffmpeg is still decoding: memory stays at one record, and the
    caller's work on a record overlaps ffmpeg's on the next. Errors as in `run_ffmpeg`."""
    argv = stream.compile(cmd=ffmpeg_binary())
    # stderr to a file, not a pipe: a chatty failing decoder could otherwise fill the pipe and stall.
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen([argv[0], *GLOBAL_ARGS, *argv[1:]], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=stderr)
        except OSError as e:
            raise FfmpegMissing(f"cannot run {argv[0]}: {e.strerror}") from None
        expired = threading.Event()
        deadline = threading.Timer(timeout, lambda: (expired.set(), proc.kill()))
        deadline.start()
        try:
            while len(record := proc.stdout.read(record_size)) == record_size:
                yield record
            proc.wait()
        finally:
            deadline.cancel()
            proc.kill()  # no-op when it has exited; stops it when the caller gave up early
            proc.wait()
            proc.stdout.close()
        if expired.is_set():
            raise ClipTimeout(stage, f"ffmpeg timed out after {timeout:g} s")
        _raise_if_killed(proc.returncode, stage)
        if proc.returncode != 0:
            stderr.seek(0)
            raise ClipError(stage, _reason(stderr.read().decode("utf-8", "replace"), path))
        if record:
            raise ClipError(stage, f"ffmpeg output ended inside a record ({len(record)} of {record_size} bytes)")


def read_header(path: Path, *, stage: str, timeout: float) -> str:
    """ffmpeg's description of a file (`ffmpeg -i file:PATH`, there is no ffprobe): the stderr text.
    ffmpeg exits 1 here even for a good file (no output given), so success = it printed an 'Input #0'."""
    argv = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-i", f"file:{os.path.abspath(path)}"]
    done = _execute(argv, stage=stage, path=path, timeout=timeout, check=False)
    text = done.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise ClipError(stage, _reason(text, path))
    return text


def _execute(argv: list[str], *, stage: str, path: Path, timeout: float,
             check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClipTimeout(stage, f"ffmpeg timed out after {timeout:g} s") from None
    except OSError as e:
        raise FfmpegMissing(f"cannot run {argv[0]}: {e.strerror}") from None
    _raise_if_killed(done.returncode, stage)
    if check and done.returncode != 0:
        raise ClipError(stage, _reason(done.stderr.decode("utf-8", "replace"), path))
    return done


def _raise_if_killed(returncode: int, stage: str) -> None:
    """A negative return code is a signal from outside (OOM killer, a stray kill), not a bad clip."""
    if returncode < 0:
        raise TransientClipError(stage, f"ffmpeg killed by signal {-returncode}")


def _reason(stderr: str, path: Path) -> str:
    """The last meaningful stderr line, without the '[demuxer @ 0x...]' tag and the clip's own path."""
    lines = [_TAG.sub("", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not _GENERIC.match(line)]
    if not lines:
        return "ffmpeg failed without a message"
    line = lines[-1].replace(f"file:{os.path.abspath(path)}", Path(path).name)
    line = re.sub(r"^Error opening input files?: ", "", line)
    return f"ffmpeg: {line}"
