"""``voxperf store ...``: thin commands over :mod:`voxperf.store`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from voxperf.cli._common import JsonOpt, StoreOpt, handle_errors, open_configured_store, print_json, store_app
from voxperf.errors import PartialFailure


def _commit_arg(rev: str, repo: Path) -> str:
    import re

    from voxperf.store.store import resolve_commit

    return rev if re.fullmatch(r"[0-9a-f]{40}", rev) else resolve_commit(repo, rev)


@store_app.command("put")
@handle_errors
def store_put(
    file: Annotated[Path, typer.Argument(help="A result file from voxperf bench (.json or .json.gz)")],
    pr: Annotated[int | None, typer.Option(help="File it under this pull request")] = None,
    commit: Annotated[
        str | None, typer.Option(help="Override the commit recorded in the result (40-hex)")
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Store a result (one file per lane); identical content is a no-op, different content is refused."""
    from voxperf.bench.schema import load_result

    outcomes = open_configured_store(store, create=True).put(load_result(file), pr=pr, commit=commit)
    if json_out:
        print_json([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            typer.echo(f"{o.status:<9} {o.key.relpath}")


@store_app.command("get")
@handle_errors
def store_get(
    commit: Annotated[str, typer.Argument(help="Commit (full SHA, or any revision of --repo)")],
    lane: Annotated[str, typer.Option(help="provider | codepath")] = "provider",
    pr: Annotated[int | None, typer.Option(help="The pull request the run belongs to")] = None,
    repo: Annotated[Path, typer.Option(help="Repository to resolve short revisions in")] = Path("."),
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print a stored result (JSON on stdout)."""
    from voxperf.bench.schema import dump_result
    from voxperf.errors import StoreError
    from voxperf.store.keys import StoreKey

    key = StoreKey(_commit_arg(commit, repo), lane, pr)
    result = open_configured_store(store).get(key)
    if result is None:
        raise StoreError(f"no result stored for {key}", "see `voxperf store ls` for what is stored")
    sys.stdout.write(dump_result(result) + "\n")
    del json_out  # the result is JSON either way


@store_app.command("ls")
@handle_errors
def store_ls(
    pr: Annotated[
        int | None, typer.Option(help="All runs of this pull request instead of the main line")
    ] = None,
    lane: Annotated[str | None, typer.Option(help="Only this lane")] = None,
    limit: Annotated[int, typer.Option(help="Latest N main-line runs")] = 16,
    repo: Annotated[
        Path | None, typer.Option(help="Order by commit order in this repository (default: by run time)")
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List stored runs, oldest first: the latest main-line runs, or every run of a PR."""
    rows = open_configured_store(store).ls(pr=pr, lane=lane, limit=limit, repo=repo)
    if json_out:
        print_json([r.to_dict() for r in rows])
        return
    for r in rows:
        where = "main" if r.pr is None else f"pr/{r.pr}"
        typer.echo(f"{r.created_at}  {where:<8} {r.commit[:12]}  {r.lane:<9} {r.branch or '-'}")


@store_app.command("baseline")
@handle_errors
def store_baseline(
    base: Annotated[str, typer.Option(help="The PR's base commit (any revision of --repo)")],
    lane: Annotated[str, typer.Option(help="provider | codepath")] = "provider",
    depth: Annotated[int, typer.Option(help="How many ancestors to search")] = 400,
    repo: Annotated[Path, typer.Option(help="The project's git repository")] = Path("."),
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Find the baseline for a base commit: exact, nearest persisted ancestor, or missing."""
    answer = open_configured_store(store).baseline(base, repo, lane=lane, depth=depth)
    if json_out:
        print_json(answer.to_dict())
        return
    if answer.key is None:
        typer.echo(
            f"missing: no {lane} result at {answer.base[:12]} or its {answer.searched} nearest ancestors"
        )
    else:
        typer.echo(
            f"{answer.mode}: {answer.key.relpath} ({answer.distance} commit(s) from {answer.base[:12]})"
        )


@store_app.command("backfill")
@handle_errors
def store_backfill(
    directory: Annotated[
        Path, typer.Argument(help="Directory of result files (e.g. downloaded CI artifacts)")
    ],
    pr: Annotated[int | None, typer.Option(help="PR for files whose path does not say")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import result files: identical ones are skipped, conflicting ones refused; both reported."""
    from voxperf.errors import StoreConflictError

    report = open_configured_store(store, create=True).backfill(directory, pr=pr)
    if json_out:
        print_json(report.to_dict())
    else:
        typer.echo(
            f"{len(report.written)} written, {len(report.identical)} identical (skipped), "
            f"{len(report.conflicts)} conflicting (refused), {len(report.errors)} unreadable"
        )
        for c in report.conflicts:
            typer.echo(f"conflict: {c}", err=True)
        for f, m in report.errors:
            typer.echo(f"unreadable: {f}: {m}", err=True)
    if report.conflicts:
        raise StoreConflictError(
            f"{len(report.conflicts)} file(s) conflict with stored results", "see the list above"
        )
    if report.errors:
        raise PartialFailure(f"{len(report.errors)} file(s) could not be read", "see the list above")


@store_app.command("verify")
@handle_errors
def store_verify(
    rebuild: Annotated[bool, typer.Option(help="Rebuild the index from the files first")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check every stored file parses, has a known schema version and matches the index."""
    opened = open_configured_store(store)
    if rebuild:
        opened.rebuild_index()
    report = opened.verify()
    if json_out:
        print_json(report.to_dict())
    else:
        typer.echo(f"{report.checked} file(s) checked, {len(report.problems)} problem(s)")
        for path, problem in report.problems:
            typer.echo(f"{path}: {problem}", err=True)
    if not report.ok:
        raise PartialFailure(f"the store has {len(report.problems)} problem(s)", "see the list above")
