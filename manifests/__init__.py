"""Class lists shipped with rq (one class name per line)."""
from importlib.resources import files
from pathlib import Path


def read_class_list(path: Path | None = None, builtin: str = "kinetics_sounds_31.txt") -> list[str]:
    """Class names from `path`, or from the built-in list; blank lines and `#` comments ignored, and a
    UTF-8 byte-order mark (which some editors write) too: it would otherwise become part of the first name."""
    text = path.read_text(encoding="utf-8-sig") if path else (files(__name__) / builtin).read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines()]
    return [n for n in names if n and not n.startswith("#")]


CREMAD_EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
