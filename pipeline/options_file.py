"""`--config FILE`: a command's options from a TOML, YAML or JSON file, with the options' own names
(`hop-length` or `hop_length`). Values given on the command line win over the file's. The file is
data: parsed, checked against the command's options, never executed."""
import json
import tomllib
from pathlib import Path

MAX_BYTES = 1 << 20


class OptionsFileError(ValueError):
    """A --config file that cannot be used: one line naming the file and the reason."""


def read_options_file(path: Path, known: set[str]) -> dict:
    """The file's options as parameter names -> values. `known` are the command's parameter names."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise OptionsFileError(f"--config {path}: larger than {MAX_BYTES} bytes, not an options file")
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise OptionsFileError(f"--config {path}: {e.strerror}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml   # PyYAML (a dependency of webdataset); safe_load builds plain data only
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise OptionsFileError(f"--config {path}: unknown type {suffix or '(none)'}; use .toml, .yaml or .json")
    except OptionsFileError:
        raise
    except Exception as e:   # each parser has its own error type; all mean "not a valid file"
        raise OptionsFileError(f"--config {path}: not valid {suffix[1:].upper()} ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(data, dict):
        raise OptionsFileError(f"--config {path}: expected a table of option = value, got {type(data).__name__}")
    options = {str(k).removeprefix("--").replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(options) - known)
    if unknown:
        raise OptionsFileError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    for name, value in options.items():
        if not isinstance(value, (str, int, float, bool, list)) or (
                isinstance(value, list) and not all(isinstance(v, (str, int, float)) for v in value)):
            raise OptionsFileError(f"--config {path}: {name} must be a number, string, boolean or list of them")
    return options
