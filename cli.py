"""`rq`: the command line. The commands are declared beside the code they call (rq.pipeline.commands,
rq.train.commands); each only parses options and calls the function that does the work."""
from typing import Optional

import typer

from rq import __version__
from rq.pipeline import commands as _preprocessing  # noqa: F401  (registers its commands)
from rq.pipeline.commandline import app
from rq.train import commands as _training  # noqa: F401  (registers its commands)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print rq's version and exit.")) -> None:
    """rq: raw audio-visual videos -> cached WebDataset shards -> RollingQ training."""


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point. Usage errors print one line (not click's box) and exit 2."""
    from rq.pipeline.atomic import WriteError
    from rq.pipeline.console import err, fail
    from rq.pipeline.lock import FolderBusy
    try:
        from typer._click import exceptions as click  # typer >= 0.2x carries its own click
    except ImportError:
        import click.exceptions as click

    try:
        code = app(args=argv, standalone_mode=False)
    except click.NoArgsIsHelpError as e:
        err.print(e.ctx.get_help(), markup=False)
        raise SystemExit(2)
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx else "rq"
        fail(f"{e.format_message()} (see `{where} --help`)")
    except click.ClickException as e:
        fail(e.format_message(), e.exit_code)
    except typer.Abort:
        fail("aborted", 1)
    except (WriteError, FolderBusy) as e:   # a full disk, a read-only folder, a folder another run writes
        fail(str(e), 1)
    except OSError as e:  # what the system refused under a library's own writer (TensorBoard, a pipe)
        fail(f"{e.filename or 'rq'}: {e.strerror or e}", 1)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
