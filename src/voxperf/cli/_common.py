"""What every ``voxperf`` command shares: the Typer apps, error handling (one line, an exit
code), the console and option types."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from voxperf.errors import UsageError, VoxperfError

if TYPE_CHECKING:
    from voxperf.bench.runner import BenchConfig

app = typer.Typer(
    name="voxperf",
    help="How fast is your speech pipeline, really? Benchmarks real STT/TTS engines and voice pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


fixtures_app = typer.Typer(help="Make and inspect speech fixtures.", no_args_is_help=True)
app.add_typer(fixtures_app, name="fixtures")


store_app = typer.Typer(
    help="The append-only result store, keyed by commit, lane and PR (local directory or git+URL).",
    no_args_is_help=True,
)
app.add_typer(store_app, name="store")


StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store location: a directory or git+URL (default: config, .voxperf/store)"),
]


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout")]


BaseOpt = Annotated[Path | None, typer.Option("--base", help="Base result file")]


BaseCommitOpt = Annotated[
    str | None, typer.Option("--base-commit", help="Base commit: its stored baseline (or nearest ancestor's)")
]


RepoOpt = Annotated[Path, typer.Option(help="The project's git repository")]


F = TypeVar("F", bound=Callable[..., Any])


def stderr(max_width: int | None = None) -> Console:
    """The console for messages and tables; ``max_width`` caps it (decision reports fit 100 columns)."""
    # markup off: paths, fixture names and messages are user text; styled lines opt in (escaped)
    console = Console(
        stderr=True, no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False, markup=False
    )
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = max(console.width, 100)  # logs and pipes: do not wrap the tables at 80
    if max_width is not None:
        console.width = min(console.width, max_width)
    return console


def fail(exc: VoxperfError) -> typer.Exit:
    console = stderr()
    # messages carry user text (paths, fixture names): never read it as Rich markup
    console.print(f"[bold red]error:[/bold red] {escape(exc.message)}", markup=True, soft_wrap=True)
    if exc.hint:
        console.print(f"[dim]hint:[/dim] {escape(exc.hint)}", markup=True, soft_wrap=True)
    return typer.Exit(int(exc.exit_code))


def handle_errors(fn: F) -> F:
    """Turn voxperf errors into a one-line message and their exit code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VoxperfError as exc:
            raise fail(exc) from None
        except OSError as exc:  # an output path that is a directory, unwritable, on a full disk ...
            where = f" {exc.filename}" if exc.filename else ""
            raise fail(UsageError(f"cannot use{where}: {exc.strerror or exc}", "check the path")) from None
        except KeyboardInterrupt:
            stderr().print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def bench_config(
    *, lane: str, pipeline: str, variant: str, levels: str, fake_latency: str | None, **fields: Any
) -> BenchConfig:
    """The bench configuration of ``bench`` and ``ab`` options (comma lists parsed, ``both`` lanes)."""
    from voxperf.bench.runner import BenchConfig, parse_fake_latency

    return BenchConfig(
        lanes=("provider", "codepath") if lane == "both" else csv_items(lane, "--lane"),
        pipelines=csv_items(pipeline, "--pipeline"),
        variants=csv_items(variant, "--variant"),
        levels=csv_items(levels, "--levels"),
        fake_latency=parse_fake_latency(fake_latency),
        **fields,
    )


def check_output_paths(*paths: tuple[Path | None, str]) -> None:
    """Before a long run: every output path can be written (its folder exists, it is not a folder)."""
    for path, what in paths:
        if path is None:
            continue
        if path.is_dir():
            raise UsageError(
                f"{what} {path} is a directory", f"give a file name, e.g. {path / 'result.json'}"
            )
        if not path.parent.is_dir():
            raise UsageError(
                f"{what} directory {path.parent} does not exist", "create it or choose another path"
            )


def csv_items(value: str, option: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise UsageError(f"{option} is empty", f"give a comma-separated list, e.g. {option} a,b")
    return items


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def open_configured_store(location: str | None, *, create: bool = False) -> Any:
    """The configured store; only commands that write may create it."""
    from voxperf.store.config import open_store, store_location

    return open_store(store_location(location), create=create)


__all__ = [
    "JsonOpt",
    "StoreOpt",
    "app",
    "bench_config",
    "check_output_paths",
    "csv_items",
    "fail",
    "fixtures_app",
    "handle_errors",
    "open_configured_store",
    "print_json",
    "stderr",
    "store_app",
]
