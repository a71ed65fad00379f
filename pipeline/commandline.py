"""How rq's commands are declared (rq.cli uses this; nothing else does): -q/-v and --config FILE added
to every command, option types named in words, options grouped in help panels, help text printed as
written, and `--resume`'s optional value."""
import functools
import inspect
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from rq.pipeline.console import set_verbosity


class Commands(typer.core.TyperGroup):
    """`--resume` takes an optional value (`--resume`, `--resume auto`, `--resume DIR`); click's
    optional-value options are not available through typer, so a bare `--resume` gets its value here."""

    def main(self, args=None, *rest, **kwargs):
        args = list(sys.argv[1:] if args is None else args)
        for i in reversed(range(len(args))):
            if args[i] == "--resume" and (i + 1 == len(args) or args[i + 1].startswith("-")):
                args.insert(i + 1, RESUME_OUT)
        return super().main(args, *rest, **kwargs)


RESUME_OUT = "out"   # bare --resume: the --out folder


def _options_file(ctx: typer.Context, value: Optional[Path]) -> None:
    """--config FILE: the file's values become the defaults of this command's options (the command line wins)."""
    if value is not None:
        from rq.pipeline.options_file import OptionsFileError, read_options_file
        try:
            ctx.default_map = {**(ctx.default_map or {}), **read_options_file(value, {p.name for p in ctx.command.params})}
        except OptionsFileError as e:
            raise typer.BadParameter(str(e)) from None


PANEL = "Run and output"
_EXTRA = {
    "quiet": typer.Option(False, "--quiet", "-q", help="No progress bars or informational lines; warnings, errors "
                          "and the closing tables remain.", rich_help_panel=PANEL),
    "verbose": typer.Option(False, "--verbose", "-v", help="Every warning (none rate-limited) and per-item detail.",
                            rich_help_panel=PANEL),
    "config": typer.Option(None, "--config", callback=_options_file, is_eager=True, expose_value=False,
                           help="TOML, YAML or JSON file of this command's options (same names; the command line "
                           "wins).", rich_help_panel=PANEL, show_default=False),
}


# What an option takes, in words (typer would print <list[str]>, <float>, ...).
_ESCAPED: set[int] = set()
_METAVARS = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH", list[str]: "TEXT", list[Path]: "PATH"}


def command(on: typer.Typer, name: str, config_file: bool = False, panels: dict[str, tuple[str, ...]] | None = None,
            shared: dict[str, tuple[object, object]] | None = None, context_settings: dict | None = None):
    """Register a command with -q/-v (and --config FILE) added to its own options, types named in words,
    options grouped in help panels (panel -> option names). `shared`: options several commands take
    (name -> (type, typer.Option)), added to the signature and passed to the function's **options.
    `context_settings`: click's, e.g. to pass unknown options on (`rq sweep` hands them to `rq train`)."""
    panel_of = {option: panel for panel, names in (panels or {}).items() for option in names}

    def register(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        own += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=a)
                for n, (a, o) in (shared or {}).items()]
        sig = sig.replace(parameters=own)
        for param in sig.parameters.values():
            kind = param.annotation
            kind = next((a for a in getattr(kind, "__args__", ()) if a is not type(None)), kind) \
                if getattr(kind, "__origin__", None) is not list else kind
            info = param.default
            if isinstance(info, typer.models.ParameterInfo):
                if info.metavar is None and kind in _METAVARS:
                    info.metavar = _METAVARS[kind]
                info.rich_help_panel = panel_of.get(param.name, info.rich_help_panel)
                if info.help and id(info) not in _ESCAPED:   # options shared by several commands: once
                    # Help is plain text: rich would take "[ks 30, tiny 4]" or "[SPLIT=]" for markup and drop it.
                    info.help = escape(info.help)
                    _ESCAPED.add(id(info))
        fn.__doc__ = escape(fn.__doc__ or "")
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=Optional[Path] if
                                   n == "config" else bool) for n, o in _EXTRA.items() if config_file or n != "config"]

        @functools.wraps(fn)
        def run(*args, quiet: bool = False, verbose: bool = False, config: Path | None = None, **kwargs):
            set_verbosity(quiet, verbose)
            return fn(*args, **kwargs)
        run.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])
        return on.command(name, context_settings=context_settings)(run)
    return register


# The command tree: rq.pipeline.commands and rq.train.commands add their commands to it.
app = typer.Typer(cls=Commands, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="rq: raw audio-visual videos -> cached WebDataset shards -> RollingQ training.")
preprocess_app = typer.Typer(no_args_is_help=True, help="Turn a raw dataset folder into training shards.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks of the input pipeline and training speed.")
app.add_typer(preprocess_app, name="preprocess")
app.add_typer(bench_app, name="bench")
