"""Smoke tests of benchmarks/preprocess.py and benchmarks/overhead.py: each whole benchmark on 2 tiny
generated clips (no speed assertion; the speed figures live in benchmarks/README.md), and usage errors."""
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BENCHMARK = BENCHMARKS / "preprocess.py"
PHASES = 6


def _run(*args: object, script: Path = BENCHMARK) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=240)


def test_benchmark_runs_every_phase_on_two_clips(tmp_path):
    work, result_path = tmp_path / "work", tmp_path / "result.json"
    done = _run("--clips", 2, "--seconds", 2, "--size", "128x72", "--workers", 2, "--work", work,
                "--json", result_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(result_path.read_text())

    assert result["settings"] == {"clips": 2, "workers": 2, "seconds": 2.0, "size": "128x72", "bframes": 3}
    phases = result["phases"]
    assert len(phases) == PHASES and all(p["clips"] == 2 and p["seconds"] > 0 for p in phases)
    assert all(abs(p["clips_per_s"] - p["clips"] / p["seconds"]) < 1e-9 for p in phases)
    floor, reference, exact, fast, rerun, audio = (p["seconds"] for p in phases)
    # Every phase handled the same 2 clips, so ratios of clips/s are inverse ratios of seconds.
    assert np.allclose([t["value"] for t in result["targets"]],
                       [floor / fast, reference / fast, exact / floor, rerun / exact, audio / exact])
    for t in result["targets"]:
        assert t["met"] == (t["value"] >= t["bound"] if t["at_least"] else t["value"] <= t["bound"])
    assert done.stdout.count("NOT MET") == sum(not t["met"] for t in result["targets"])  # a miss is shown
    assert result["machine"]["nproc"] >= 1 and result["machine"]["ffmpeg"].startswith("ffmpeg version")

    # The reference flow really did its work: one JPEG per second per clip, a 257 x 1004 log-STFT
    # (2 s tiled to 10 s at 16 kHz, hop 159).
    frame_dirs = sorted((work / "reference" / "frames").iterdir())
    assert len(frame_dirs) == 2 and all(len(list(d.glob("*.jpg"))) == 2 for d in frame_dirs)
    specs = sorted((work / "reference" / "spec").glob("*.npy"))
    assert len(specs) == 2 and all(np.load(s).shape == (257, 1004) for s in specs)

    # The clips were re-encoded with B-frames; the fast run decoded reference frames only.
    assert json.loads((work / "rq-fast" / "manifest.json").read_text())["config"]["frames"]["frame_decode"] == "fast"
    # rq's last phase reran with --hop-length 160: the shards now hold 257 x 997 spectrograms.
    manifest = json.loads((work / "rq" / "manifest.json").read_text())
    assert manifest["config"]["spectrogram"]["hop_length"] == 160 and manifest["totals"]["samples"] == 2
    with tarfile.open(work / "rq" / manifest["splits"]["train"]["shards"][0]["name"]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".spec.npy"))
        assert np.load(io.BytesIO(tar.extractfile(member).read())).shape == (257, 1 + (160000 - 512) // 160)


def test_usage_errors_are_one_line_exit_2(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("preprocess_benchmark", BENCHMARK)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    for args in (["--clips", "0"], ["--clips", "many"], ["--work", str(tmp_path / "busy")]):
        with pytest.raises(SystemExit) as exit_:
            benchmark.main(args)
        stderr = capsys.readouterr().err
        assert exit_.value.code == 2, (args, stderr)
        assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error:")


def test_overhead_benchmark_runs_both_versions(tmp_path):
    """Baseline = this very checkout (the smoke test needs no second version): both rows, the targets."""
    done = _run("--baseline", BENCHMARKS.parent, "--clips", 2, "--rounds", 1, "--work", tmp_path / "work",
                "--json", tmp_path / "o.json", script=BENCHMARKS / "overhead.py")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "o.json").read_text())
    assert set(result["times"]) == {"baseline", "rq"}
    for version, t in result["times"].items():
        assert min(t["full"], t["rerun"], t["single"]) > 0
        assert result["derived"][version]["clips_per_s"] == pytest.approx(2 / t["full"])
    assert "full run clips/s, rq / baseline" in done.stdout and "ms/clip beyond start-up" in done.stdout
    manifest = json.loads((tmp_path / "work" / "baseline-0-single" / "manifest.json").read_text())
    assert manifest["totals"]["samples"] == 1   # the 1-clip copy really holds one clip
