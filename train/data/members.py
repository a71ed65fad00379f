"""Which members of a sample hold its frames, spectrogram and label, for shards written by other tools
(`webdataset.ShardWriter`, video2dataset, ...): `--frames-key`, `--spec-key`, `--label-key`. A `Members`
maps a raw sample onto rq's own member names (`f0000.jpg`, ..., `spec.npy`, `cls`) before it is decoded;
the defaults are rq's names, and then a sample passes unchanged.

  --frames-key jpg            one frame per sample, the member `jpg`; a glob (`frame_*.jpg`) takes
                              every member it matches, in natural order (frame_2 before frame_10)
  --spec-key npy              the spectrogram, a 2-D .npy
  --label-key cls             the label: a member holding an integer (0-based class index) or a class
                              name; a dotted path into a JSON member (`json.label`, `json.meta.label`)
                              reads the value there, an integer or a class name (looked up in the classes;
                              a string that is a class name is one, else digits are an index; a `cls`
                              member's digits are always an index)
"""
import fnmatch
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from rq.train.data.errors import DataError

FRAME_MEMBER = re.compile(r"f\d+\.jpg")  # f0000.jpg, f0001.jpg, ...: zero-padded, so sorting keeps time order
SPEC_MEMBER = "spec.npy"
LABEL_MEMBER = "cls"
MAX_CLASSES = 100_000          # a --classes file is read whole; a longer one is not a class list
MAX_FRAMES = 1_000             # frames one sample may map to (a glob matching every member of a huge sample)


@dataclass(frozen=True)
class Members:
    frames: str = ""             # "" = rq's f0000.jpg, f0001.jpg, ...
    spec: str = ""               # "" = spec.npy
    label: str = ""              # "" = cls
    classes: tuple[str, ...] = ()   # the class list a label given by name is looked up in

    @property
    def native(self) -> bool:
        return not (self.frames or self.spec or self.label)

    def with_classes(self, classes) -> "Members":
        return replace(self, classes=tuple(classes))

    def describe(self, what: str) -> str:
        """`what` ("frames", "spec", "label") as the user named it, with its option."""
        given = getattr(self, what)
        default = {"frames": "f0000.jpg ...", "spec": SPEC_MEMBER, "label": LABEL_MEMBER}[what]
        return f"'{given}' (--{what}-key)" if given else f"'{default}'"

    def frame_members(self, sample: dict) -> list[str]:
        """The names of a sample's frame members, in time order."""
        if not self.frames:
            return sorted(name for name in sample if FRAME_MEMBER.fullmatch(name))
        names = [n for n in sample if not n.startswith("__") and fnmatch.fnmatchcase(n, self.frames)]
        return sorted(names, key=_natural)

    def spec_bytes(self, sample: dict) -> bytes | None:
        return sample.get(self.spec or SPEC_MEMBER)

    def canonical(self, sample: dict) -> dict:
        """The sample with rq's member names (itself when the names are rq's); ValueError naming the
        member at fault (the loader records and skips the sample)."""
        if self.native:
            return sample
        frames = self.frame_members(sample)
        if not frames:
            raise ValueError(f"no frame member {self.describe('frames')}; members: {_listed(sample)}")
        if len(frames) > MAX_FRAMES:
            raise ValueError(f"{len(frames)} members match {self.describe('frames')}; at most {MAX_FRAMES} frames")
        spec = self.spec_bytes(sample)
        if spec is None:
            raise ValueError(f"no spectrogram member {self.describe('spec')}; members: {_listed(sample)}")
        out = {"__key__": sample["__key__"], "__url__": sample.get("__url__", ""), SPEC_MEMBER: spec,
               LABEL_MEMBER: str(self.label_of(sample)).encode()}
        out.update((f"f{i:04d}.jpg", sample[name]) for i, name in enumerate(frames))
        return out

    def label_of(self, sample: dict) -> int:
        """The sample's class index (range checked by the decoder)."""
        member, path = _label_path(self.label or LABEL_MEMBER, sample)
        if member not in sample:
            raise ValueError(f"no label member {self.describe('label')}; members: {_listed(sample)}")
        raw = sample[member]
        if path:
            try:
                value = json.loads(raw)
            except ValueError as e:
                raise ValueError(f"{member}: not valid JSON ({e})") from None
            for part in path:
                if not isinstance(value, dict) or part not in value:
                    raise ValueError(f"{member} has no {'.'.join(path)} (--label-key {self.label})")
                value = value[part]
        else:
            value = raw.decode("utf-8", "replace").strip()
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"label {value!r} of {self.describe('label')} is neither a class index nor a name")
        if isinstance(value, int):
            return value
        # A string is a class name when it is one (classes may be named "1", "2", ...), except in a `cls`
        # member, which by WebDataset's convention holds the index.
        if re.fullmatch(r"-?\d+", value.strip()) and (member.endswith("cls") or value not in self.classes):
            return int(value)
        if value not in self.classes:
            raise ValueError(f"label {value!r} of {self.describe('label')} is not one of the classes")
        return self.classes.index(value)


def _label_path(key: str, sample: dict) -> tuple[str, list[str]]:
    """`json.label` -> ("json", ["label"]); `meta.json.label` -> ("meta.json", ["label"]); a member name
    as it is when the sample has it (`label.txt`)."""
    if key in sample or ".json." not in f".{key}":
        return key, []
    head, _, rest = f".{key}".partition(".json.")
    return (head + ".json").lstrip("."), [p for p in rest.split(".") if p]


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _listed(sample: dict) -> str:
    return ", ".join(sorted(n for n in sample if not n.startswith("__"))) or "none"


def read_classes(path: str) -> list[str]:
    """A --classes file: one class name per line (blank lines ignored), in class-index order."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"--classes {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--classes {path}: cannot be read ({e})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"--classes {path}: no class names (one per line)")
    if len(names) > MAX_CLASSES:
        raise DataError(f"--classes {path}: {len(names):,} lines; at most {MAX_CLASSES:,} classes")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"--classes {path}: class {name!r} is listed twice")
        seen.add(name)
    return names
