"""Faults around the data rather than in it: damaged cache entries, ffmpeg killed from outside,
unreadable files, options that point at the wrong kind of file, duplicate clip names."""
import os
import stat
import subprocess
import sys

from conftest import lay_out
from helpers import without_permission_override
from rq.pipeline.ffmpeg import ffmpeg_binary
from rq.pipeline.manifest import read_jsonl, read_manifest

SMALL = ("--audio-seconds", "1", "--frame-size", "32", "--workers", "1")


def run(rq, *args):
    return rq("preprocess", *[str(a) for a in args], *SMALL)


def test_damaged_cache_entry_is_removed_and_recomputed(rq, folder_raw, tmp_path):
    out = tmp_path / "out"
    assert run(rq, "folder", "--raw", folder_raw, "--out", out).exit_code == 0
    shards = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    entry = max((out / ".cache" / "frames").rglob("*"), key=lambda p: p.is_file() and p.stat().st_size)
    data = bytearray(entry.read_bytes())
    data[-10] ^= 0xFF                      # same size, so the header still says "cached"
    entry.write_bytes(bytes(data))
    for name in shards:                    # every shard must be rebuilt from the cache
        (out / name).unlink()
    result = run(rq, "folder", "--raw", folder_raw, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "damaged cache entry" in result.stderr and "recomputing" in result.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == shards


def test_ffmpeg_killed_by_a_signal_is_not_cached(rq, folder_raw, tmp_path, monkeypatch):
    """The first frames decode is killed (as the OOM killer would); the clip is skipped this run only."""
    marker = tmp_path / "killed-once"
    wrapper = tmp_path / "ffmpeg-killer.sh"
    wrapper.write_text(f'#!/bin/sh\ncase "$*" in *image2pipe*) if [ ! -e "{marker}" ]; then touch "{marker}"; '
                       f'kill -KILL $$; fi;; esac\nexec "{ffmpeg_binary()}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("RQ_FFMPEG", str(wrapper))
    out = tmp_path / "out"
    first = run(rq, "folder", "--raw", folder_raw, "--out", out, "--max-failure-rate", "1")
    assert first.exit_code == 0, first.stderr
    assert [f["reason"] for f in read_jsonl(out / "failures.jsonl")] == ["ffmpeg killed by signal 9"]
    second = run(rq, "folder", "--raw", folder_raw, "--out", out)
    assert second.exit_code == 0, second.stderr
    assert read_jsonl(out / "failures.jsonl") == [] and read_manifest(out)["totals"]["samples"] == 8


def test_unreadable_clip_is_retried_after_chmod(rq, folder_raw, tmp_path):
    """Permission denied is the machine's state, not the file's: not cached, so `chmod 644` (which
    leaves the mtime, hence the cache key, alone) and a rerun process the clip."""
    locked = folder_raw / "train/a/a1.mp4"
    locked.chmod(0)
    out = tmp_path / "out"
    argv = [sys.executable, "-c", "from rq import cli; cli.main()", "preprocess", "folder", "--raw", str(folder_raw),
            "--out", str(out), *SMALL, "--max-failure-rate", "1"]
    first = subprocess.run(argv, capture_output=True, text=True, preexec_fn=without_permission_override,
                           env=os.environ | {"COLUMNS": "200"})
    assert first.returncode == 0, first.stderr
    assert read_jsonl(out / "failures.jsonl") == [
        {"source": "train/a/a1.mp4", "clip_id": "train/a/a1.mp4", "stage": "probe",
         "reason": "cannot read the file: Permission denied"}]
    locked.chmod(0o644)
    second = run(rq, "folder", "--raw", folder_raw, "--out", out)
    assert second.exit_code == 0, second.stderr
    assert read_jsonl(out / "failures.jsonl") == [] and read_manifest(out)["totals"]["samples"] == 8


def test_options_naming_the_wrong_kind_of_path_are_one_line_usage_errors(rq, folder_raw, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [(("--out", a_file), "is a file"), (("--out", tmp_path / "o", "--cache", a_file), "is a file"),
             (("--out", tmp_path / "o", "--classes", tmp_path / "missing.txt"), "no such file"),
             (("--out", folder_raw / "shards"), "inside --raw"),
             (("--out", tmp_path / "o", "--audio-seconds", "0.01"), "shorter than one STFT window")]
    for extra, message in cases:
        result = rq("preprocess", "folder", "--raw", folder_raw, *[str(x) for x in extra])
        assert result.exit_code == 2 and message in result.stderr, (extra, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_kinetics_duplicate_names_are_reported_not_dropped(rq, clip_bank, tmp_path):
    raw = lay_out(tmp_path / "raw", clip_bank, {"train/x_000001_000002.mp4": 0, "train/dup/x_000001_000002.mkv": 1,
                                                "val/y_000003_000004.mp4": 2})
    (raw / "annotations").mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    (raw / "annotations" / "train.csv").write_text(header + "bowling,x,1,2,train\n")
    (raw / "annotations" / "val.csv").write_text(header + "bowling,y,3,4,val\n")
    out = tmp_path / "out"
    result = rq("preprocess", "kinetics", "--raw", str(raw), "--out", str(out), *SMALL)
    assert result.exit_code == 0, result.stderr
    reasons = {f["source"]: f["reason"] for f in read_jsonl(out / "failures.jsonl")}
    # the first in sorted order is used, the other listed with the reason
    assert reasons == {"train/x_000001_000002.mp4": "same name as train/dup/x_000001_000002.mkv, which is used"}
    assert read_manifest(out)["totals"] == {**read_manifest(out)["totals"], "samples": 2, "unmatched": 1}
