"""The ``voxperf`` command: one Typer app whose subcommands stay thin and call the library.

One module per family of commands (``bench``, ``report``, ``store``, ``serve``); what they share is
in ``_common``. Progress and tables go to stderr, machine output (``--json``) to stdout. Errors are one line
(``error: ...`` plus ``hint: ...``) with an exit code from :class:`voxperf.errors.ExitCode`.
"""

from __future__ import annotations

import sys

import typer

from voxperf import __version__

# isort: off
from voxperf.cli import bench  # noqa: F401 - importing a module registers its commands, in this order
from voxperf.cli import ab, load, report, serve, store, telemetry  # noqa: F401

# isort: on
from voxperf.cli._common import app, stderr
from voxperf.errors import ExitCode, VoxperfError

__all__ = ["ExitCode", "app", "main"]


@app.command()
def version() -> None:
    """Print voxperf's version."""
    typer.echo(__version__)


INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in voxperf, never confused with a failed gate (1)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except VoxperfError as exc:  # pragma: no cover - commands handle their own
        stderr().print(f"error: {exc.message}", markup=False)
        sys.exit(int(exc.exit_code))
    except Exception:  # pragma: no cover - a bug: show it, with an exit code of its own
        import traceback

        traceback.print_exc()
        stderr().print(
            "voxperf hit an internal error (exit 70); please report it with the traceback above", markup=False
        )
        sys.exit(INTERNAL_ERROR)
