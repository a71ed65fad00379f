"""Shared fixtures of the preprocessing tests: a bank of tiny real clips made once by ffmpeg, an
ffmpeg wrapper that logs every call (via $RQ_FFMPEG), and `rq` run in-process."""
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

from media import make_clip
from rq.pipeline.ffmpeg import ffmpeg_binary

BANK_SIZE = 8
OUTPUTS = ("manifest.json", "clips.jsonl", "failures.jsonl", "sizes.json")


@pytest.fixture(scope="session")
def clip_bank(tmp_path_factory) -> list[Path]:
    """Tiny H.264/AAC clips (1.2 s, 64x48, each with its own tone), copied into each test's raw layout."""
    folder = tmp_path_factory.mktemp("bank")
    return [make_clip(folder / f"bank{i}.mp4", seconds=1.2, size=(64, 48), fps=10, tone_hz=300 + 150 * i)
            for i in range(BANK_SIZE)]


def lay_out(raw: Path, bank: list[Path], files: Mapping[str, int]) -> Path:
    """Copy bank clips to `raw/<relative path>`; returns raw."""
    for rel, index in files.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bank[index], raw / rel)
    return raw


@pytest.fixture
def folder_raw(tmp_path, clip_bank) -> Path:
    """A folder-recipe dataset: train/{a,b} with 3 clips each, test/{a,b} with 1 each."""
    files = {f"train/{c}/{c}{i}.mp4": j for j, (c, i) in enumerate((c, i) for c in "ab" for i in range(3))}
    files |= {"test/a/a9.mp4": 6, "test/b/b9.mp4": 7}
    return lay_out(tmp_path / "raw", clip_bank, files)


class FfmpegLog:
    def __init__(self, path: Path):
        self.path = path

    def calls(self) -> list[str]:
        """One line per ffmpeg run: its arguments, space-joined."""
        return self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def ffmpeg_log(tmp_path, monkeypatch) -> FfmpegLog:
    """Points $RQ_FFMPEG at a script that appends its argv to a log, then execs the real ffmpeg."""
    real = ffmpeg_binary()
    log = FfmpegLog(tmp_path / "ffmpeg-calls.log")
    wrapper = tmp_path / "ffmpeg-wrapper.sh"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log.path}"\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("RQ_FFMPEG", str(wrapper))
    return log


@pytest.fixture
def rq() -> Callable:
    """Run `rq ARGS...` in this process; returns click's result (exit_code, stdout, stderr)."""
    from rq import cli
    runner = CliRunner()

    def run(*args: object):
        return runner.invoke(cli.app, [str(a) for a in args], catch_exceptions=False)
    return run


def snapshot(out: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every shard and audit file in `out`."""
    paths = sorted(out.glob("*.tar")) + sorted(out.glob("*.wids.json")) + [out / name for name in OUTPUTS]
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def contents(out: Path) -> dict[str, bytes]:
    return {name: data for name, (data, _) in snapshot(out).items()}
