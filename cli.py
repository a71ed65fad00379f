"""`rq`: the command line. It only parses options and calls the packages that do the work."""
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="rq: raw audio-visual videos -> cached WebDataset shards -> RollingQ training.")
preprocess_app = typer.Typer(no_args_is_help=True, help="Turn a raw dataset folder into training shards.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks of the input pipeline and training speed.")
app.add_typer(preprocess_app, name="preprocess")
app.add_typer(bench_app, name="bench")


# ---- doctor / synth (pipeline) ----


# ---- preprocess (pipeline) ----


# ---- train / eval / bench (train) ----


# ---- demo / report / predict ----


def main() -> None:
    app()


if __name__ == "__main__":
    main()
