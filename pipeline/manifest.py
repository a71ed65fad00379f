"""`manifest.json` (the index of the shards, read by the trainer), `clips.jsonl` (every discovered clip and
its status) and `failures.jsonl` (every skipped clip or unmatched file, with a one-line reason).
All written atomically and only when their bytes change; none holds a time or a machine-specific path,
so the same inputs and settings give the same files.

A manifest comes from outside as often as not (a downloaded shards folder), so its readers check it
with `manifest_problem` before using any of it: right types, and shard names that are plain file names
in the manifest's own folder (never a path elsewhere, a URL or a `pipe:` command)."""
import json
import re
from collections.abc import Iterable
from pathlib import Path

from rq.pipeline.atomic import jsonl_bytes, write_atomic

FORMAT = "rq-shards/1"
MANIFEST = "manifest.json"
CLIPS = "clips.jsonl"
FAILURES = "failures.jsonl"


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def read_manifest(out: Path) -> dict | None:
    """The manifest in `out`, or None when there is none or it is not a well-formed rq-shards manifest."""
    try:
        manifest = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if manifest_problem(manifest) is None else None


def name_problem(name: object) -> str | None:
    """Why `name` is not a plain file name (one that can only mean a file in the manifest's own folder)."""
    if not isinstance(name, str) or not name:
        return "a shard name must be a non-empty string"
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        return f"shard name {name!r} is not a plain file name (paths are refused)"
    if ":" in name:   # pipe:cmd, http://..., C:...: a command or a URL comes only from the command line
        return f"shard name {name!r} looks like a URL or a command (refused: names in a manifest are file names)"
    if not name.endswith(".tar"):
        return f"shard name {name!r} does not end in .tar"
    return None


def manifest_problem(manifest: object) -> str | None:
    """One line saying why `manifest` is not an rq-shards manifest this rq can use, or None."""
    if not isinstance(manifest, dict):
        return f"not a JSON object but a JSON {type(manifest).__name__}"
    if manifest.get("format") != FORMAT:
        return f"format {manifest.get('format')!r}, expected {FORMAT!r}"
    classes = manifest.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "'classes' must be a non-empty list of names"
    # sequence-feature shards (CMU-MOSEI: "modalities" listed) have no frames
    if not _count(manifest.get("frames_per_clip")) or manifest["frames_per_clip"] < ("modalities" not in manifest):
        return "'frames_per_clip' must be a whole number >= 1 (0 for sequence-feature shards)"
    if not isinstance(manifest.get("config", {}), dict):
        return "'config' must be a JSON object"
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        return "no 'splits' object" if splits is None else "'splits' must be a JSON object"
    for split, entry in splits.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list):
            return f"split {split!r} must be an object with a 'shards' list"
        for shard in entry["shards"]:
            if not isinstance(shard, dict):
                return f"split {split!r}: each shard must be a JSON object"
            problem = name_problem(shard.get("name"))
            if problem:
                return f"split {split!r}: {problem}"
            if not _count(shard.get("samples")):
                return f"{shard['name']}: 'samples' must be a whole number >= 0"
            if "bytes" in shard and not _count(shard["bytes"]):
                return f"{shard['name']}: 'bytes' must be a whole number >= 0"
            if "sha256" in shard and not (isinstance(shard["sha256"], str) and _SHA256.match(shard["sha256"])):
                return f"{shard['name']}: 'sha256' must be 64 lowercase hex digits"
    return None


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
    return write_atomic(Path(path), jsonl_bytes(rows))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
