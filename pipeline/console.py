"""What long jobs show a person: a progress bar (items/s, ETA) and a closing summary table."""
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

# Summaries go to stdout, progress and one-line errors to stderr, so `rq ... > log` keeps the tables.
# Piped to a file or a CI log, rich would assume 80 columns and fold the tables; 120 keeps them readable.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 120)
# Closing summary tables print even with --quiet (what a quiet run still owes its user).
tables = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)

QUIET, NORMAL, VERBOSE = 0, 1, 2
_verbosity = [NORMAL]


def set_verbosity(quiet: bool = False, verbose: bool = False) -> None:
    """-q: no progress bars or informational lines (warnings, errors and summary tables remain);
    -v: every warning, none rate-limited, and per-item detail."""
    _verbosity[0] = QUIET if quiet else VERBOSE if verbose else NORMAL
    out.quiet = _verbosity[0] == QUIET


def verbosity() -> int:
    return _verbosity[0]


def progress(items: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it"):
    """A tqdm bar on stderr showing rate and ETA; refreshes sparsely when stderr is not a terminal."""
    interactive = sys.stderr.isatty()
    return tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                mininterval=0.2 if interactive else 5.0, smoothing=0.1, disable=verbosity() == QUIET)


def summary_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    """Print a table to stdout and return it (so callers can also save it as text)."""
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        # fold, not ellipsis: paths and failure reasons must stay readable in narrow terminals
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    tables.print(table)
    return table


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def fail(message: str, code: int = 2) -> None:
    """A usage error: one line on stderr naming the file and the reason, then exit."""
    err.print(f"error: {message}", markup=False)
    raise SystemExit(code)
