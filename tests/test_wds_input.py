"""`rq preprocess wds`: tars in video2dataset's layout (KEY.mp4 + KEY.json + KEY.txt) go straight to
shards; hostile member names never leave the cache folder; a rerun decodes nothing."""
import io
import json
import tarfile

from rq.pipeline.manifest import read_jsonl, read_manifest


def _add(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = (0 if link else len(data)), kind, link
    tar.addfile(info, None if link else io.BytesIO(data))


def test_video2dataset_tars_become_shards(rq, clip_bank, tmp_path, ffmpeg_log):
    raw = tmp_path / "v2d"
    raw.mkdir()
    labels = ["dog", "cat", "dog", "cat", "dog", "cat"]
    for t in range(2):
        with tarfile.open(raw / f"{t:05d}.tar", "w") as tar:
            for i in range(3):
                key = f"{t:05d}{i:04d}"
                _add(tar, f"{key}.mp4", clip_bank[3 * t + i].read_bytes())
                _add(tar, f"{key}.json", json.dumps({"url": f"https://example.invalid/{key}",
                                                     "meta": {"label": labels[3 * t + i]}}).encode())
                _add(tar, f"{key}.txt", b"a caption")
            if t == 0:
                _add(tar, "../escaped.mp4", clip_bank[6].read_bytes())          # path traversal
                _add(tar, "link.mp4", b"", tarfile.SYMTYPE, link="/etc/passwd")  # not a regular file
                _add(tar, "nolabel.mp4", clip_bank[7].read_bytes())
                _add(tar, "nolabel.json", b'{"url": "x"}')
    out = tmp_path / "shards"
    args = ("preprocess", "wds", "--raw", f"{raw}/{{00000..00001}}.tar", "--out", out, "--label-field", "meta.label",
            "--frame-size", 32, "--audio-seconds", 1, "--test-fraction", 0.3, "--workers", 2)
    result = rq(*args)
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest["classes"] == ["cat", "dog"] and manifest["totals"]["samples"] == 6
    reasons = {f["source"]: f["reason"] for f in read_jsonl(out / "failures.jsonl")}
    assert "not a plain KEY.EXT file member" in reasons["00000.tar/../escaped.mp4"]
    assert "not a plain KEY.EXT file member" in reasons["00000.tar/link.mp4"]
    assert "has no 'meta.label' field" in reasons["00000/nolabel"]
    assert not (tmp_path / "escaped.mp4").exists() and not list(tmp_path.rglob("escaped.mp4"))
    clips = {c["clip_id"]: c["label_name"] for c in read_jsonl(out / "clips.jsonl")}
    assert clips == {f"{t:05d}/{t:05d}{i:04d}": labels[3 * t + i] for t in range(2) for i in range(3)}
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    ffmpeg_log.clear()
    again = rq(*args)
    assert again.exit_code == 0 and ffmpeg_log.calls() == []             # every stage cached
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == before


def test_missing_tars_are_one_line(rq, tmp_path):
    result = rq("preprocess", "wds", "--raw", f"{tmp_path}/{{00000..00001}}.tar", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "no such tar" in result.stderr and "Traceback" not in result.output
