"""`manifest.json` (the index of the shards, read by the trainer), `clips.jsonl` (every discovered clip and
its status) and `failures.jsonl` (every skipped clip or unmatched file, with a one-line reason).
All written atomically and only when their bytes change; none holds a time or a machine-specific path,
so the same inputs and settings give the same files."""
import json
from collections.abc import Iterable
from pathlib import Path

from rq.pipeline.atomic import write_atomic

FORMAT = "rq-shards/1"
MANIFEST = "manifest.json"
CLIPS = "clips.jsonl"
FAILURES = "failures.jsonl"


def read_manifest(out: Path) -> dict | None:
    """The manifest in `out`, or None when there is none or it is not an rq-shards manifest."""
    try:
        manifest = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def build_manifest(recipe: str, config: dict, classes: Iterable[str], frames_per_clip: int,
                   splits: dict[str, dict], clips: int, skipped: int, unmatched: int,
                   extra: dict | None = None) -> dict:
    """`extra`: entries a kind of dataset adds (sequence features: "modalities" and "features")."""
    samples = sum(s["samples"] for s in splits.values())
    return {"format": FORMAT, "recipe": recipe, "config": config, "classes": list(classes),
            "frames_per_clip": frames_per_clip, **(extra or {}), "splits": splits,
            "totals": {"clips": clips, "samples": samples, "skipped": skipped, "unmatched": unmatched,
                       "bytes": sum(s["bytes"] for s in splits.values())}}


def write_manifest(out: Path, manifest: dict) -> bool:
    return write_atomic(Path(out) / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def write_jsonl(path: Path, rows: Iterable[dict]) -> bool:
    return write_atomic(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
