"""CMU-MOSEI inputs written in the tests: computational sequences with rows a test can dictate (through
the SDK-layout writer of rq synth), MultiBench-style pickles, and reading a shards folder's samples."""
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np

from rq.pipeline.recipes.mosei_sources import FILES
from rq.pipeline.synth.mosei import write_csd

ROOTS = {"labels": "All Labels", "words": "glove_vectors", "facet": "FACET 4.2", "covarep": "COVAREP"}


def write_raw(raw: Path, kinds: dict[str, dict[str, tuple]]) -> Path:
    """kind (labels, words, facet, covarep) -> {video id: (features, intervals)} as the SDK's files."""
    raw.mkdir(parents=True, exist_ok=True)
    for kind, videos in kinds.items():
        write_csd(raw / FILES[kind], ROOTS[kind], {v: (np.asarray(f), np.asarray(i, float)) for v, (f, i) in
                                                   videos.items()})
    return raw


def label_rows(*segments: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Labels of (start, end, sentiment) segments: 7 values each (sentiment, then six emotions)."""
    features = np.array([[s, 0, 1, 2, 0, 0, 0.5] for _, _, s in segments], np.float32)
    return features, np.array([[a, b] for a, b, _ in segments])


def read_samples(out: Path) -> dict[str, dict]:
    """clip_id -> {suffix: bytes or array} of every sample in every shard of `out`."""
    samples: dict[str, dict] = {}
    for tar_path in sorted(out.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            grouped: dict[str, dict] = {}
            for member in tar.getmembers():
                key, suffix = member.name.split(".", 1)
                data = tar.extractfile(member).read()
                grouped.setdefault(key, {})[suffix] = np.load(io.BytesIO(data)) if suffix.endswith(".npy") else data
            for sample in grouped.values():
                meta = json.loads(sample["json"])
                samples[meta["clip_id"]] = {**sample, "meta": meta, "shard": tar_path.name}
    return samples


def multibench_split(rng: np.random.Generator, n: int, lengths: list[int], steps: int = 50) -> dict:
    """A split as MultiBench's mosei_senti_data.pkl holds it: vision [N,50,35], audio [N,50,74],
    text [N,50,300], labels [N,1,1], id [N,3]; sample i real on its last lengths[i] steps (zeros before)."""
    arrays = {name: rng.normal(0, 1, (n, steps, d)).astype(np.float32)
              for name, d in (("vision", 35), ("audio", 74), ("text", 300))}
    for i, length in enumerate(lengths):
        for a in arrays.values():
            a[i, :steps - length] = 0
    labels = rng.integers(-9, 10, (n, 1, 1)).astype(np.float32) / 3
    ids = np.array([[f"video{i // 2}", f"{i:.1f}", f"{i + 1:.1f}"] for i in range(n)])
    return {**arrays, "labels": labels, "id": ids}


def write_pickle(path: Path, data: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path
