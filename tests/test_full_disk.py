"""Full disks (issue 10, point 3), on a real small file system (a tmpfs mounted for the test; skipped
with the reason when this process may not mount one, i.e. is not root): a write error is one line
naming the path and the system's reason, exit 1, and the previous complete output stays usable."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_shards
from rq.train.data import DataConfig, eval_batches, open_source
from rq.train.trainer.checkpoint import load_checkpoint

SMALL = ("--audio-seconds", "1", "--frame-size", "32", "--workers", "1")


@pytest.fixture
def small_fs(tmp_path):
    """A 16 MB tmpfs at tmp_path/fs, unmounted afterwards."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs to fill ({done.stderr.strip() or 'mount failed'}); needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path) -> Path:
    """Take every free byte of the file system; returns the filler file (delete it to free them)."""
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as f:   # unbuffered: each write meets the full disk itself
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:   # the last partial block
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler


def rq_process(*args, cwd=None) -> subprocess.CompletedProcess:
    """The real `rq` command in its own process (how a user meets a full disk)."""
    return subprocess.run([sys.executable, "-c", "from rq import cli; cli.main()", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error: ")]
    assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_a_rewrite_on_a_full_disk_keeps_the_previous_shards_usable(rq, small_fs, folder_raw, tmp_path):
    out, cache = small_fs / "out", tmp_path / "cache"   # the cache elsewhere: the shards meet the full disk
    first = rq("preprocess", "folder", "--raw", folder_raw, "--out", out, "--cache", cache, *SMALL)
    assert first.exit_code == 0, first.stderr
    manifest = (out / "manifest.json").read_bytes()
    filler = fill(small_fs)
    # A setting that changes every spectrogram: every shard must be rewritten, and there is no room.
    full = rq_process("preprocess", "folder", "--raw", folder_raw, "--out", out, "--cache", cache, *SMALL,
                      "--hop-length", "160")
    line = error_line(full)
    assert str(out) in line and line.endswith(": cannot write: No space left on device"), line
    assert (out / "manifest.json").read_bytes() == manifest           # the earlier output stands
    assert sorted(p.name for p in out.glob("*.tar")) == ["test-000000.tar", "train-000000.tar"]
    assert rq("verify", out).exit_code == 0
    keys = [k for b in eval_batches(open_source(str(out)), DataConfig(batch_size=4, frames=1, image_size=32,
                                                                        workers=0, pin_memory=False), split="train")
            for k in b["key"]]
    assert len(keys) == 6
    filler.unlink()
    again = rq("preprocess", "folder", "--raw", folder_raw, "--out", out, "--cache", cache, *SMALL,
               "--hop-length", "160")
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in out.glob("*.tar")) == ["test-g1-000000.tar", "train-g1-000000.tar"]
    assert json.loads((out / "manifest.json").read_text())["config"]["spectrogram"]["hop_length"] == 160


def test_training_on_a_full_disk_is_one_line_and_keeps_last_pt(rq, small_fs, tmp_path):
    shards, run = tmp_path / "shards", small_fs / "run"
    write_shards(shards, {"train": [8], "test": [4]}, classes=2, n_frames=2, spec_shape=(257, 20))
    args = ("train", "--shards", shards, "--out", run, "--preset", "tiny", "--workers", 0, "--batch-size", 4,
            "--device", "cpu", "--epochs", 2)
    first = rq(*args, "--stop-after", 1)
    assert first.exit_code == 0, first.stderr
    fill(small_fs)
    line = error_line(rq_process(*args, "--resume"))
    assert str(run) in line and line.endswith(": cannot write: No space left on device"), line
    # the files of the epoch that did finish are whole and agree with each other
    assert load_checkpoint(run / "last.pt")["epoch"] == 0 and load_checkpoint(run / "best.pt")["epoch"] == 0
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [0]
