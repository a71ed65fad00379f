"""Rerun only what changed: cases (a)-(e) of issue 2, counted with an ffmpeg wrapper that logs calls."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import webdataset as wds

from conftest import contents, lay_out, snapshot
from rq.pipeline.manifest import read_jsonl, read_manifest

SMALL = ("--audio-seconds", "1", "--frame-size", "32")


def preprocess(rq, raw: Path, out: Path, *extra: object):
    result = rq("preprocess", "folder", "--raw", raw, "--out", out, "--workers", "2", *SMALL, *extra)
    assert result.exit_code == 0, result.stderr
    return result


def test_nothing_changed_runs_no_ffmpeg_and_leaves_shards(rq, folder_raw, tmp_path, ffmpeg_log):
    out = tmp_path / "out"
    preprocess(rq, folder_raw, out)
    assert len(ffmpeg_log.calls()) == 8  # one run per clip: probe, frames and audio together
    before = snapshot(out)
    ffmpeg_log.clear()
    time.sleep(0.01)  # a rewrite would show as a newer mtime
    result = preprocess(rq, folder_raw, out)
    assert ffmpeg_log.calls() == []
    assert snapshot(out) == before
    assert "train: samples / shards written / unchanged │ 6 / 0 / 1" in result.stdout


def test_audio_setting_change_decodes_no_video(rq, folder_raw, tmp_path, ffmpeg_log):
    out = tmp_path / "out"
    preprocess(rq, folder_raw, out)
    before = contents(out)
    ffmpeg_log.clear()
    preprocess(rq, folder_raw, out, "--hop-length", "160")
    assert ffmpeg_log.calls() == []  # the waveform is cached: only the STFT reruns, in Python
    after = contents(out)
    # new shards are a new generation beside the old ones, which are removed once the manifest lists the new
    assert sorted(n for n in after if n.endswith(".tar")) == ["test-g1-000000.tar", "train-g1-000000.tar"]
    assert after["train-g1-000000.tar"] != before["train-000000.tar"]
    manifest = read_manifest(out)
    assert manifest["config"]["spectrogram"]["hop_length"] == 160


def test_added_clips_are_the_only_ones_decoded(rq, folder_raw, tmp_path, clip_bank, ffmpeg_log):
    out = tmp_path / "out"
    preprocess(rq, folder_raw, out)
    ffmpeg_log.clear()
    added = ["train/a/new one.mp4", "train/b/new2.mp4", "test/a/new3.mp4"]
    lay_out(folder_raw, clip_bank, dict(zip(added, (0, 3, 5))))
    preprocess(rq, folder_raw, out)
    calls = ffmpeg_log.calls()
    assert len(calls) == 3
    assert all(any(str(folder_raw / rel) in call for rel in added) for call in calls)
    assert read_manifest(out)["totals"]["samples"] == 11


def test_deleted_clip_leaves_the_shards(rq, folder_raw, tmp_path, ffmpeg_log):
    out = tmp_path / "out"
    # 2 samples per shard, so deleting clips also drops a shard file
    preprocess(rq, folder_raw, out, "--shard-size", "0.13")
    assert len(list(out.glob("train-*.tar"))) == 3
    ffmpeg_log.clear()
    for rel in ("train/a/a0.mp4", "train/b/b2.mp4"):
        (folder_raw / rel).unlink()
    preprocess(rq, folder_raw, out, "--shard-size", "0.13")
    assert ffmpeg_log.calls() == []
    assert sorted(p.name for p in out.glob("train-*.tar")) == ["train-g1-000000.tar", "train-g1-000001.tar"]
    ids = [row["clip_id"] for row in read_jsonl(out / "clips.jsonl")]
    assert "train/a/a0.mp4" not in ids and "train/b/b2.mp4" not in ids and len(ids) == 6
    manifest = read_manifest(out)
    assert manifest["splits"]["train"]["samples"] == 4
    names = b"".join(contents(out)[s["name"]] for s in manifest["splits"]["train"]["shards"])
    assert b"train_a_a0_mp4" not in names and b"train_b_b2_mp4" not in names


def cache_entries(cache: Path) -> int:
    return sum(1 for p in cache.rglob("*") if p.is_file() and p.parent.name != "tmp")


def test_sigkill_at_any_moment_then_rerun_is_byte_identical(rq, folder_raw, tmp_path):
    reference = tmp_path / "reference"
    preprocess(rq, folder_raw, reference, "--shard-size", "0.13")
    expected = contents(reference)

    out = tmp_path / "out"
    argv = [sys.executable, "-c", "from rq import cli; cli.main()", "preprocess", "folder", "--raw", str(folder_raw),
            "--out", str(out), "--workers", "2", *SMALL, "--shard-size", "0.13"]
    kills = 0
    # Kill after more and more cache entries exist (4 per clip, 32 in all), then once the first shard exists.
    for entries in (1, 6, 13, 25):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and cache_entries(out / ".cache") < entries:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not list(out.glob("train-*.tar")):
        time.sleep(0.002)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        kills += 1
    proc.wait()
    assert kills >= 3  # the run was really interrupted (not all kills can land on a 2-core box)

    preprocess(rq, folder_raw, out, "--shard-size", "0.13")
    assert contents(out) == expected
    assert not list(out.glob(".*.rqtmp*"))  # killed runs' temporaries are cleaned up


def test_touched_file_is_redone_unless_hash_content(rq, folder_raw, tmp_path, ffmpeg_log):
    touched = folder_raw / "train/a/a1.mp4"
    out = tmp_path / "out"
    preprocess(rq, folder_raw, out)
    ffmpeg_log.clear()
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    preprocess(rq, folder_raw, out)
    assert len(ffmpeg_log.calls()) == 1 and str(touched) in ffmpeg_log.calls()[0]

    hashed = tmp_path / "hashed"
    preprocess(rq, folder_raw, hashed, "--hash-content")
    ffmpeg_log.clear()
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    preprocess(rq, folder_raw, hashed, "--hash-content")
    assert ffmpeg_log.calls() == []  # same bytes: still cached


def test_timeouts_are_skipped_but_not_cached(rq, folder_raw, tmp_path, ffmpeg_log):
    out = tmp_path / "out"
    result = rq("preprocess", "folder", "--raw", folder_raw, "--out", out, "--workers", "2", *SMALL,
                "--timeout", "0.0001")
    assert result.exit_code == 1 and "8 of 8 clips skipped" in result.stderr
    assert {row["reason"] for row in read_jsonl(out / "failures.jsonl")} == {"ffmpeg timed out after 0.0001 s"}
    preprocess(rq, folder_raw, out)  # a busy machine's timeout is not remembered as a bad file
    assert read_manifest(out)["totals"]["samples"] == 8


def test_frame_decode_is_a_frames_setting(rq, folder_raw, tmp_path, ffmpeg_log):
    out = tmp_path / "out"
    preprocess(rq, folder_raw, out)
    exact = [json.loads(s["json"]) for s in wds.WebDataset(str(out / "train-000000.tar"), shardshuffle=False)]
    assert all(m["frame_decode"] == "exact" and len(m["frame_pts"]) == m["n_frames"] for m in exact)
    ffmpeg_log.clear()
    preprocess(rq, folder_raw, out, "--frame-decode", "fast")
    calls = ffmpeg_log.calls()
    # frames only, reference frames only: the probe and the audio stay cached
    assert len(calls) == 8 and all("-skip_frame:v bidir" in c and "-vn" not in c for c in calls)
    assert read_manifest(out)["config"]["frames"]["frame_decode"] == "fast"
    rewritten = out / read_manifest(out)["splits"]["train"]["shards"][0]["name"]   # a new generation
    assert rewritten.name == "train-g1-000000.tar"
    fast = [json.loads(s["json"]) for s in wds.WebDataset(str(rewritten), shardshuffle=False)]
    assert all(m["frame_decode"] == "fast" and m["frame_pts"] == sorted(m["frame_pts"]) for m in fast)
