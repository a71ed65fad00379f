"""What long jobs show a person: a progress bar (items/s, ETA) and a closing summary table."""
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

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
    for bar in list(getattr(tqdm, "_instances", ())):   # a bar left open by the error: end its line first
        bar.close()
    err.print(f"error: {message}", markup=False)
    raise SystemExit(code)


class RateLimited:
    """Warnings that can come by the thousand (bad samples in a tar, skipped clips): the first `shown` of
    each kind are printed, the rest only counted, and `flush` (at the end of a command) prints one line
    per kind saying how many were not shown and where they all are."""

    def __init__(self, shown: int = 5):
        self.shown, self.counts, self.hints = shown, Counter(), {}

    def warn(self, kind: str, message: str, hint: str = "", write: Callable[[str], None] | None = None) -> None:
        self.counts[kind] += 1
        self.hints[kind] = hint
        if self.counts[kind] <= self.shown:
            (write or _err_line)(f"warning: {message}")

    def flush(self) -> None:
        for kind, n in self.counts.items():
            if n > self.shown:
                hint = f" ({self.hints[kind]})" if self.hints[kind] else ""
                _err_line(f"warning: {n - self.shown:,} more {kind} not shown{hint}")
        self.counts.clear()


def _err_line(line: str) -> None:
    err.print(line, markup=False)


rate_limited = RateLimited()   # one per process: the commands flush it when they end
