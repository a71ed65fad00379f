"""What the benchmark scripts share: timing a command (wall and CPU of it and its children), the
machine's description, usage errors as one line, writing the JSON result."""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from rq.pipeline.console import fail
from rq.pipeline.ffmpeg import ffmpeg_version

RQ = [sys.executable, "-m", "rq.cli"]


class Clock:
    """Wall and CPU time of what runs between start and stop: this process and every waited-for
    descendant (pool workers are joined, ffmpeg processes waited for, so their time is counted)."""

    def __enter__(self) -> "Clock":
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu

    @staticmethod
    def _cpu() -> float:
        return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(argv: list, log: Path, env: dict | None = None) -> Clock:
    """Run a command, its stdout (summary tables) kept in `log`, stderr (progress bars) shown; its times."""
    argv = [str(a) for a in argv]
    with Clock() as clock, log.open("w") as stdout:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout, env=env)
    if done.returncode:
        fail(f"`{' '.join(argv)}` exited {done.returncode}; its output is in {log}", code=1)
    return clock


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return {"cpu": model, "nproc": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "ffmpeg": ffmpeg_version(), "platform": platform.platform()}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 2
        fail(f"{self.prog}: {message}")


def check_work(work: Path | None) -> None:
    if work is not None and work.exists() and (not work.is_dir() or any(work.iterdir())):
        fail(f"--work {work}: exists and is not an empty folder (every phase needs a fresh start)")


def write_json(path: Path | None, result: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name if sys.argv else "?", *sys.argv[1:]])
