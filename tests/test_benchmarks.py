"""Smoke test of benchmarks/preprocess.py: the whole benchmark on 2 tiny generated clips (no speed
assertion; the speed figures live in benchmarks/README.md), and its usage errors."""
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "preprocess.py"
PHASES = 5


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, BENCHMARK, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_benchmark_runs_every_phase_on_two_clips(tmp_path):
    work, result_path = tmp_path / "work", tmp_path / "result.json"
    done = _run("--clips", 2, "--seconds", 2, "--size", "128x72", "--workers", 2, "--work", work,
                "--json", result_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(result_path.read_text())

    assert result["settings"] == {"clips": 2, "workers": 2, "seconds": 2.0, "size": "128x72"}
    phases = result["phases"]
    assert len(phases) == PHASES and all(p["clips"] == 2 and p["seconds"] > 0 for p in phases)
    assert all(abs(p["clips_per_s"] - p["clips"] / p["seconds"]) < 1e-9 for p in phases)
    floor, reference, full, rerun, audio = (p["seconds"] for p in phases)
    # The speed-up is a ratio of clips/s, the others of seconds; every phase handled the same 2 clips.
    assert np.allclose([t["value"] for t in result["targets"]],
                       [reference / full, full / floor, rerun / full, audio / full])
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
