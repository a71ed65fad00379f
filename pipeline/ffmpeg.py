"""How rq runs ffmpeg: finding the binary, building inputs, running with a timeout and turning a
failure into a one-line `ClipError` (transient when the machine, not the file, is at fault). The
stages' decoding run itself is built in rq.pipeline.decode.

Commands are built with ffmpeg-python; its own `.run()` has no timeout, so the compiled argv is run
here with subprocess. The binary is looked up on every call (`$RQ_FFMPEG` first), so a test can point
`$RQ_FFMPEG` at a wrapper that counts calls."""
import os
import re
import shutil
import subprocess
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


def read_header(path: Path, *, stage: str, timeout: float) -> str:
    """ffmpeg's description of a file (`ffmpeg -i file:PATH`, there is no ffprobe): the stderr text.
    ffmpeg exits 1 here even for a good file (no output given), so success = it printed an 'Input #0'."""
    argv = [ffmpeg_binary(), "-nostdin", "-hide_banner", "-i", f"file:{os.path.abspath(path)}"]
    done = _execute(argv, stage=stage, path=path, timeout=timeout, check=False)
    text = done.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        reason = reason_of(text, path)
        raise (TransientClipError if environmental(reason) else ClipError)(stage, reason)
    return text


def _execute(argv: list[str], *, stage: str, path: Path, timeout: float,
             check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClipTimeout(stage, f"ffmpeg timed out after {timeout:g} s") from None
    except OSError as e:
        raise FfmpegMissing(f"cannot run {argv[0]}: {e.strerror}") from None
    raise_if_killed(done.returncode, stage)
    if check and done.returncode != 0:
        reason = reason_of(done.stderr.decode("utf-8", "replace"), path)
        raise (TransientClipError if environmental(reason) else ClipError)(stage, reason)
    return done


def raise_if_killed(returncode: int, stage: str) -> None:
    """A negative return code is a signal from outside (OOM killer, a stray kill), not a bad clip."""
    if returncode < 0:
        raise TransientClipError(stage, f"ffmpeg killed by signal {-returncode}")


def environmental(reason: str) -> bool:
    """ffmpeg reasons that come from the machine, not the file (a rerun may succeed: never cached)."""
    return any(text in reason for text in ("Permission denied", "Input/output error", "No space left",
                                           "Cannot allocate memory", "Too many open files", "Stale file handle"))


def reason_of(stderr: str, path: Path) -> str:
    """The last meaningful stderr line, without the '[demuxer @ 0x...]' tag and the clip's own path."""
    lines = [_TAG.sub("", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not _GENERIC.match(line)]
    if not lines:
        return "ffmpeg failed without a message"
    line = lines[-1].replace(f"file:{os.path.abspath(path)}", Path(path).name)
    line = re.sub(r"^Error opening input files?: ", "", line)
    return f"ffmpeg: {line}"
