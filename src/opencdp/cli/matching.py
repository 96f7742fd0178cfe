"""`opencdp match …`: probabilistic identity matching. The review queue: list the pairs waiting for
a person, look at one side by side, and accept, reject, skip or dismiss it (docs/matching.md)."""

from __future__ import annotations

from typing import Any

import click
import orjson

from opencdp.cli.common import _engine, _settings


@click.group("match")
def match_group() -> None:
    """Probabilistic identity matching: records of one person that share no identifier.

    \b
    Pairs scored between the review and the auto-merge thresholds wait for a person:
      opencdp match review            the queue (most probable first)
      opencdp match show ID           one pair, both profiles side by side
      opencdp match accept ID         merge the two profiles
      opencdp match reject ID         never propose this pair again (unmerges nothing)
      opencdp match skip ID           decide later (it moves behind the pending pairs)
      opencdp match dismiss ID        a pair that is already one profile
    """


def _print(value: Any) -> None:
    click.echo(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


def _ident(side: dict[str, str]) -> str:
    return f"{side['type']}:{side['value']}"


def _counts(counts: dict[str, int]) -> str:
    return " · ".join(f"{n:,} {status}" for status, n in counts.items())


@match_group.command("review")
@click.option(
    "--status",
    type=click.Choice(["queue", "all", "pending", "skipped", "accepted", "rejected", "merged"]),
    default="pending",
    show_default=True,
    help="Which pairs (queue: pending, then skipped)",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most")
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many first")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's answer) instead of a table")
def match_review(status: str, limit: int, offset: int, as_json: bool) -> None:
    """The pairs waiting for review, most probable first, with the counts per status."""
    from rich.console import Console
    from rich.table import Table

    from opencdp.match import review

    page = review.list_candidates(_engine(), status, limit, offset)
    if as_json:
        _print(page)
        return
    console = Console(highlight=False)
    console.print(_counts(page["counts"]))
    if not page["candidates"]:
        console.print(f"no {status} pairs" if status != "all" else "no pairs")
        return
    table = Table(box=None, padding=(0, 2))
    for name, justify in (("id", "right"), ("p", "right"), ("left", "left"), ("right", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if status not in ("pending", "skipped"):
        table.add_column("status")
    table.add_column("why")
    for c in page["candidates"]:
        cells = [str(c["id"]), f"{c['probability']:.3f}", _ident(c["left"]), _ident(c["right"])]
        if status not in ("pending", "skipped"):
            cells.append(c["status"])
        table.add_row(*cells, c["explanation"])
    console.print(table)
    shown = offset + len(page["candidates"])
    if shown < page["total"]:
        console.print(f"{shown:,} of {page['total']:,}; --offset {shown} for more")


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


@match_group.command("show")
@click.argument("candidate_id", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's answer)")
def match_show(candidate_id: int, as_json: bool) -> None:
    """One pair: both current profiles side by side (* marks fields that differ), the comparisons
    and what may be decided."""
    from rich.console import Console
    from rich.table import Table

    from opencdp.match import review

    try:
        found = review.pair(_engine(), candidate_id)
    except review.ReviewError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        _print(found)
        return
    c = found["candidate"]
    console = Console(highlight=False)
    console.print(f"[bold]candidate {c['id']}[/] ({c['status']}, model {c['model']}): {c['explanation']}")
    if found["same_profile"]:
        console.print("both identifiers already belong to one profile: dismiss it")
    for missing in found["missing"]:
        console.print(f"{missing} no longer belongs to any profile")
    if found["warning"]:
        console.print(found["warning"])
    table = Table(box=None, padding=(0, 2))
    table.add_column("")
    table.add_column(f"{_ident(found['left']['identifier'])}\n{found['left']['profile_id'] or '—'}")
    table.add_column(f"{_ident(found['right']['identifier'])}\n{found['right']['profile_id'] or '—'}")
    for f in found["fields"]:
        mark = "*" if f["state"] == "differs" else " "
        table.add_row(f"{mark} {f['name']}", _value(f["left"]), _value(f["right"]))
    console.print(table)
    for comparison in c["comparisons"]:
        factor = comparison.get("bayes_factor")
        console.print(f"  {comparison.get('field')}: {comparison.get('label')} (Bayes factor {factor})")
    if found["allowed"]:
        console.print("decide: " + ", ".join(f"opencdp match {d} {c['id']}" for d in found["allowed"]))


def _decide(candidate_id: int, decision: str) -> None:
    from opencdp.identity.identifiers import IdentityRules
    from opencdp.match import review

    engine = _engine()
    rules = IdentityRules.from_env()
    try:
        decided = review.decide(engine, candidate_id, decision, "cli", rules)
    except review.ReviewError as error:
        raise click.ClickException(str(error)) from None
    if decision != "accept":
        click.echo(f"candidate {candidate_id}: {decided['status']}")
        return
    # Processors take turns (a lock), so processing here is safe beside a running server, and
    # the merge is visible when the command returns even when none runs.
    from opencdp.process.processor import Processor

    settings = _settings()
    Processor(engine, rules, settings.process_chunk_size).run_through(decided["event_id"])
    shown = review.pair(engine, candidate_id, rules)
    if shown["same_profile"]:
        profile = shown["left"]["profile_id"]
        click.echo(f"candidate {candidate_id}: accepted and merged into profile {profile} "
                   f"(event {decided['event_id']})")  # fmt: skip
    else:
        click.echo(f"candidate {candidate_id}: accepted (event {decided['event_id']}), but the profiles "
                   "are still apart: see `opencdp profiles get --history`")  # fmt: skip


@match_group.command("accept")
@click.argument("candidate_id", type=click.IntRange(1))
def match_accept(candidate_id: int) -> None:
    """Merge the pair's two profiles: an `Identity Matched` event goes into the log and is
    processed before the command returns."""
    _decide(candidate_id, "accept")


@match_group.command("reject")
@click.argument("candidate_id", type=click.IntRange(1))
def match_reject(candidate_id: int) -> None:
    """Not one person: later runs never propose this pair again. Unmerges nothing."""
    _decide(candidate_id, "reject")


@match_group.command("skip")
@click.argument("candidate_id", type=click.IntRange(1))
def match_skip(candidate_id: int) -> None:
    """Decide later: the pair moves behind the pending ones and stays reviewable."""
    _decide(candidate_id, "skip")


@match_group.command("dismiss")
@click.argument("candidate_id", type=click.IntRange(1))
def match_dismiss(candidate_id: int) -> None:
    """Close a pair whose identifiers already belong to one profile (status "merged")."""
    _decide(candidate_id, "dismiss")
