"""The bad-input corpus through `rq preprocess folder`: every file processed or skipped with a
one-line reason in failures.jsonl, the run goes on, the exit status follows --max-failure-rate."""
import json

import pytest
import webdataset as wds

from media import BAD_INPUT_FAILS, make_bad_inputs
from rq.pipeline.manifest import read_jsonl, read_manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    raw = tmp_path_factory.mktemp("bad") / "raw"
    files = make_bad_inputs(raw / "train" / "junk")
    (raw / "train" / "junk" / "notes.txt").write_text("not a video")
    return raw, {path.name: name for name, path in files.items()}


def test_every_bad_input_is_processed_or_recorded(rq, corpus, tmp_path, ffmpeg_log):
    raw, names = corpus
    out = tmp_path / "out"
    args = ("preprocess", "folder", "--raw", raw, "--out", out, "--workers", "2", "--audio-seconds", "1",
            "--frame-size", "32")
    result = rq(*args, "--max-failure-rate", "1")
    assert result.exit_code == 0, result.stderr
    failures = {row["source"]: row for row in read_jsonl(out / "failures.jsonl")}
    expected = {f"train/junk/{file}": stage for file, kind in names.items()
                if (stage := BAD_INPUT_FAILS[kind]) is not None}
    assert {src: row["stage"] for src, row in failures.items() if row["stage"] != "discover"} == expected
    assert failures["train/junk/notes.txt"]["stage"] == "discover"  # reported, not decoded
    for row in failures.values():
        assert row["reason"] and "\n" not in row["reason"]
    for source, stage in expected.items():  # each skip also named on the terminal, one line each
        assert f"skipped {source}: {stage}: {failures[source]['reason']}" in result.stderr

    clips = {row["source"]: row["status"] for row in read_jsonl(out / "clips.jsonl")}
    assert clips == {f"train/junk/{file}": "failed" if f"train/junk/{file}" in expected else "ok" for file in names}
    manifest = read_manifest(out)
    ok = len(names) - len(expected)
    assert manifest["totals"] == {"clips": len(names), "samples": ok, "skipped": len(expected),
                                       "unmatched": 1, "bytes": manifest["totals"]["bytes"]}
    sources = {json.loads(s["json"])["source"] for s in wds.WebDataset(   # train and the val carved out of it
        [str(out / s["name"]) for split in manifest["splits"].values() for s in split["shards"]], shardshuffle=False)}
    assert sources == {src for src, status in clips.items() if status == "ok"}

    # Default --max-failure-rate 0.05: the same run now fails with one line, exit 1, and decodes
    # nothing again (failures are cached like results).
    ffmpeg_log.clear()
    result = rq(*args)
    assert result.exit_code == 1
    assert ffmpeg_log.calls() == []
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"{len(expected)} of {len(names)} clips skipped" in last
    assert "failures.jsonl" in last

    # --missing-audio silence keeps the clip without audio; it is an audio setting: no video decoded again.
    ffmpeg_log.clear()
    result = rq(*args, "--missing-audio", "silence")
    assert result.exit_code == 1  # the other bad files are still skipped
    assert ffmpeg_log.calls() and all("-vn" in call and "0:V" not in call for call in ffmpeg_log.calls())
    clips = {row["source"]: row["status"] for row in read_jsonl(out / "clips.jsonl")}
    assert clips["train/junk/no_audio.mp4"] == "ok"
