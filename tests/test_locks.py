"""Concurrent runs (issue 10, point 4), with real processes: a second writer of a folder stops with one
line naming the first, a dead writer's lock is taken over, and a reader of shards that `rq preprocess`
rewrites meanwhile keeps reading its own complete set, and is told the set changed."""
import gc
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

from helpers import write_shards
from rq.pipeline.ffmpeg import ffmpeg_binary
from rq.train.data import DataConfig, eval_batches, open_source

SMALL = ("--audio-seconds", "1", "--frame-size", "32", "--workers", "1")


def cli(*args) -> list[str]:
    return [sys.executable, "-c", "from rq import cli; cli.main()", *map(str, args)]


def holder_info(folder, timeout: float = 60.0) -> dict:
    """The lock file's holder, once a process has taken the lock."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            text = (folder / ".rq-lock").read_text()
            if text.strip():
                return json.loads(text)
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.01)
    raise AssertionError(f"nobody took the lock of {folder}")


def test_a_second_preprocess_on_the_same_folder_stops_with_one_line(folder_raw, tmp_path, monkeypatch):
    slow = tmp_path / "slow-ffmpeg.sh"   # each ffmpeg call a little slower, so the first run is still going
    slow.write_text(f'#!/bin/sh\nsleep 0.2\nexec "{ffmpeg_binary()}" "$@"\n')
    slow.chmod(slow.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("RQ_FFMPEG", str(slow))
    out = tmp_path / "out"
    first = subprocess.Popen(cli("preprocess", "folder", "--raw", folder_raw, "--out", out, *SMALL),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    holder = holder_info(out)
    second = subprocess.run(cli("preprocess", "folder", "--raw", folder_raw, "--out", out, *SMALL,
                                "--frame-size", "48"), capture_output=True, text=True)
    assert first.poll() is None, "the first run ended before the second started: make ffmpeg slower"
    assert second.returncode == 1 and second.stderr.strip().splitlines() == [
        f"error: {out}: in use by rq preprocess folder (pid {first.pid} on {socket.gethostname()}, started "
        f"{holder['started']}); wait for it to end or use another folder"], second.stderr
    assert first.wait() == 0, first.stderr.read()
    assert json.loads((out / "manifest.json").read_text())["config"]["frames"]["frame_size"] == 32
    assert not (out / ".rq-lock").exists()    # a clean end leaves no lock file behind


def test_the_lock_of_a_killed_writer_is_taken_over(rq, folder_raw, tmp_path):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "import sys, time; from rq.pipeline.lock import writer_lock\n"
                             f"with writer_lock({str(out)!r}, 'rq preprocess folder'):\n"
                             "    print('held', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert dead.stdout.readline() == "held\n"
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    result = rq("preprocess", "folder", "--raw", folder_raw, "--out", out, *SMALL)
    assert result.exit_code == 0, result.stderr
    assert (f"note: {out}: took over the lock left by rq preprocess folder (pid {dead.pid} on "
            f"{socket.gethostname()}") in result.stderr and "which is no longer running" in result.stderr


def test_a_second_train_on_a_run_folder_stops_with_one_line(rq, tmp_path):
    shards, run = tmp_path / "shards", tmp_path / "run"
    write_shards(shards, {"train": [4]}, classes=2, n_frames=2, spec_shape=(257, 20))
    holder = subprocess.Popen([sys.executable, "-c", "import time; from rq.pipeline.lock import writer_lock\n"
                               f"with writer_lock({str(run)!r}, 'rq train'):\n"
                               "    print('held', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        result = rq("train", "--shards", shards, "--out", run, "--preset", "tiny", "--workers", 0, "--device", "cpu")
        assert result.exit_code == 1 and result.stderr.startswith(f"error: {run}: in use by rq train (pid {holder.pid}")
        assert len(result.stderr.strip().splitlines()) == 1 and not (run / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_reader_keeps_its_complete_set_while_preprocess_rewrites_it(rq, folder_raw, tmp_path):
    out = tmp_path / "out"
    assert rq("preprocess", "folder", "--raw", folder_raw, "--out", out, *SMALL).exit_code == 0
    reader = open_source(str(out))        # as rq train holds it, for the whole run
    old_shape = reader.spec_shape
    # Another process rewrites every shard (another hop: other spectrogram widths, so a mix would show).
    rewrite = subprocess.run(cli("preprocess", "folder", "--raw", folder_raw, "--out", out, *SMALL, "--hop-length",
                                 "80"), capture_output=True, text=True)
    assert rewrite.returncode == 0, rewrite.stderr
    assert "note: kept 2 earlier shards (test-000000.tar, ...): a running reader still uses them" in rewrite.stderr
    cfg = DataConfig(batch_size=4, frames=1, image_size=32, workers=0, pin_memory=False)
    batches = eval_batches(reader, cfg, split="train")
    shapes = {tuple(b["spec"].shape[2:]) for b in batches}
    assert shapes == {old_shape} and batches.stats.samples == 6 and not batches.stats.skipped   # the old set, whole
    note = reader.rewritten()
    assert note.startswith(f"note: {out / 'manifest.json'} was replaced since this run opened it") and \
        reader.rewritten() is None        # said once
    assert open_source(str(out)).spec_shape != old_shape   # a new reader gets the new set
    del reader, batches
    gc.collect()                          # the reader has ended: its lock is released
    assert rq("preprocess", "folder", "--raw", folder_raw, "--out", out, *SMALL, "--hop-length", "80").exit_code == 0
    assert sorted(p.name for p in out.glob("*.tar")) == ["test-g1-000000.tar", "train-g1-000000.tar"]
    assert not [p for p in os.listdir(out) if p.startswith(".rq-read-") and "g0" in p]
