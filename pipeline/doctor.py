"""`rq doctor`: what rq will run with (ffmpeg, Python, torch, CUDA, cores), as plain `name: value`
lines (never truncated, easy to paste into a bug report)."""
import os
import platform

from rq.pipeline.console import out
from rq.pipeline.ffmpeg import FfmpegMissing, ffmpeg_location, ffmpeg_version


def doctor() -> None:
    """Print the environment; exit 1 when no ffmpeg can be found (nothing else would work)."""
    rows: list[tuple[str, str]] = []
    try:
        binary, source = ffmpeg_location()
        version = ffmpeg_version(binary).split(" Copyright")[0]
        rows += [("ffmpeg", binary), ("ffmpeg from", source), ("ffmpeg version", version)]
        missing = None
    except FfmpegMissing as e:
        missing = str(e)
        rows.append(("ffmpeg", f"MISSING: {missing}"))
    rows.append(("python", f"{platform.python_version()} ({platform.python_implementation()}, {platform.machine()})"))
    import torch
    rows.append(("torch", torch.__version__))
    cuda = torch.cuda.is_available()
    rows.append(("CUDA available", "yes" if cuda else "no"))
    rows += [(f"cuda:{i}", torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count() if cuda else 0)]
    rows.append(("CPU cores", f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable by this process)"))
    for name, value in rows:
        out.print(f"{name + ':':<16}{value}", markup=False)
    if missing:
        raise SystemExit(1)
