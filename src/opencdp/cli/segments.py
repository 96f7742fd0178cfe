"""`opencdp segments …` and `opencdp traits …`. Changes and member reads are audited (actor "cli")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from opencdp.access.audit import record
from opencdp.cli.common import _engine, _friendly


def _criteria(value: str) -> Any:
    """Criteria from a file path, '-' (stdin) or inline JSON."""
    if value == "-":
        text = sys.stdin.read()
    elif value.lstrip().startswith("{"):
        text = value
    else:
        path = Path(value)
        if not path.exists():
            raise click.BadParameter(
                f"{value!r} is neither inline JSON nor an existing file", param_hint="CRITERIA"
            )
        text = path.read_text(encoding="utf-8")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="CRITERIA") from None


def _print(value: Any) -> None:
    click.echo(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


@click.group("segments")
def segments_group() -> None:
    """Segments: who, described as JSON criteria (see docs/segments.md).

    CRITERIA is inline JSON, a file, or - for standard input."""


@segments_group.command("validate")
@click.argument("criteria")
@_friendly
def validate(criteria: str) -> None:
    """Check criteria; prints every problem with its path."""
    from opencdp.segments.store import check

    with _engine().connect() as conn:
        check(conn, _criteria(criteria))
    click.echo("valid")


@segments_group.command("preview")
@click.argument("criteria")
@click.option("--sample", default=5, show_default=True, help="How many sample profiles to show")
@_friendly
def preview(criteria: str, sample: int) -> None:
    """Count the matching profiles now, with a sample, without saving anything."""
    from opencdp.segments.queries import preview as run

    engine = _engine()
    result = run(engine, _criteria(criteria), sample)
    shown = {"count": result["count"], "sample": len(result["sample"])}
    record(engine, "cli", "segment.preview", detail=shown)  # criteria may hold values: counts only
    click.echo(f"{result['count']} profiles match", err=True)
    _print(result["sample"])


@segments_group.command("create")
@click.argument("name")
@click.argument("criteria")
@click.option("--description", default="", help="What the segment is for")
@click.option("--replace", is_flag=True, help="Replace an existing segment of that name")
@_friendly
def create(name: str, criteria: str, description: str, replace: bool) -> None:
    """Save a segment; its memberships are computed at once and kept up to date."""
    from opencdp.segments.queries import member_count
    from opencdp.segments.store import save

    engine = _engine()
    segment = save(engine, name, _criteria(criteria), description, replace=replace)
    record(engine, "cli", "segment.update" if replace else "segment.create", "segment", segment.name)
    click.echo(f"segment {segment.name!r} saved with {member_count(engine, name)} members")


@segments_group.command("list")
def list_segments() -> None:
    """List segments and their member counts (and, for a failed one, its error)."""
    from opencdp.segments.queries import member_count
    from opencdp.segments.store import list_all

    engine = _engine()
    for segment in list_all(engine):
        line = f"{segment.name}\t{member_count(engine, segment.name)}\t{segment.description}"
        click.echo(line + _failure(segment.failed_at, segment.error))


def _failure(failed_at: Any, error: str | None) -> str:
    if failed_at is None:
        return ""
    return f"\tFAILED since {failed_at:%Y-%m-%d %H:%M:%S}Z, skipped until fixed: {error}"


@segments_group.command("show")
@click.argument("name")
@_friendly
def show(name: str) -> None:
    """Print a segment's criteria."""
    from opencdp.segments.store import get

    _print(get(_engine(), name).criteria)


@segments_group.command("delete")
@click.argument("name")
@_friendly
def delete(name: str) -> None:
    """Delete a segment and its memberships."""
    from opencdp.segments.store import delete as run

    engine = _engine()
    run(engine, name)
    record(engine, "cli", "segment.delete", "segment", name)
    click.echo(f"segment {name!r} deleted")


@segments_group.command("members")
@click.argument("name")
@click.option("--purpose", required=True, help="Consent purpose: only members who consented to it are listed")
@click.option("--limit", default=20, show_default=True)
@click.option("--after", default=None, help="Continue after this profile id")
@_friendly
def list_members(name: str, purpose: str, limit: int, after: str | None) -> None:
    """List current members who consented to PURPOSE (profile id, entered time)."""
    from opencdp.segments.queries import members

    engine = _engine()
    page = members(engine, name, after, limit, purpose)
    shown = {"purpose": purpose, "count": len(page["members"])}
    record(engine, "cli", "segment.members", "segment", name, shown)
    for member in page["members"]:
        click.echo(f"{member['profile_id']}\t{member['entered_at'].isoformat()}")
    click.echo(f"{page['total']} consenting members in all", err=True)


@segments_group.command("reach")
@click.argument("name")
@click.option("--purpose", required=True, help="Consent purpose the export would be for")
@click.option(
    "--channel",
    type=click.Choice(["email", "sms", "any"]),
    default=None,
    help="What the export is for: email needs an e-mail address, sms a phone number "
    "[default: guessed from the purpose, email_marketing → email]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON (keys as the API's)")
@_friendly
def reach_command(name: str, purpose: str, channel: str | None, as_json: bool) -> None:
    """How many members an export for PURPOSE would contain: members, with the identifier the
    channel needs, consented, and rows (counts only, nothing personal)."""
    from opencdp.segments import reach

    found = reach.reach(_engine(), name, purpose, channel)
    reason = reach.empty_reason(found)
    if as_json:
        _print({**found.as_dict(), "summary": reach.summary(found), "empty_reason": reason})
        return
    click.echo(reach.summary(found, lambda n: f"{n:,}"))
    if reason:
        click.echo(f"An export would be empty: {reason}", err=True)


@segments_group.command("export")
@click.argument("name")
@click.option(
    "--purpose", required=True, help="Consent purpose: only members who consented to it are exported"
)
@click.option("--traits", default="", help="Comma-separated traits, e.g. email,first_name,country")
@click.option("--computed", default="", help="Comma-separated computed traits, e.g. rfm_segment")
@click.option("--predicted", default="", help="Comma-separated predicted traits, e.g. churn_probability")
@click.option(
    "--out", type=click.Path(dir_okay=False, writable=True), default=None, help="File [default: stdout]"
)
@click.option(
    "--channel",
    type=click.Choice(["email", "sms", "any"]),
    default=None,
    help="email: only members with an e-mail address; sms: only those with a phone number; any "
    "[default: guessed from the purpose, email_marketing → email]",
)
@_friendly
def export(
    name: str, purpose: str, traits: str, computed: str, predicted: str, out: str | None, channel: str | None
) -> None:
    """Export current members who consented to PURPOSE as CSV with the chosen traits."""
    from opencdp.segments import reach
    from opencdp.segments.queries import export_csv

    engine = _engine()
    found = reach.reach(engine, name, purpose, channel)
    purpose = found.purpose
    reason = reach.empty_reason(found)
    if reason:
        click.echo(f"nothing to export: {reason} (the CSV has only its header)", err=True)
    columns = {
        "traits": [t for t in traits.split(",") if t],
        "computed": [c for c in computed.split(",") if c],
        "predicted": [p for p in predicted.split(",") if p],
    }
    record(engine, "cli", "segment.export", "segment", name, {"purpose": purpose, **columns})
    lines = export_csv(
        engine,
        name,
        [t for t in traits.split(",") if t],
        [c for c in computed.split(",") if c],
        purpose,
        needs=found.identifier,
        predicted=columns["predicted"],
    )
    if out is None:
        for line in lines:
            sys.stdout.write(line)
        return
    count = -1
    with open(out, "w", encoding="utf-8", newline="") as handle:
        for line in lines:
            handle.write(line)
            count += 1
    click.echo(f"wrote {count} members to {out}", err=True)


@segments_group.command("refresh")
def refresh() -> None:
    """Recompute all computed traits and memberships now (also runs on a schedule in serve/worker)."""
    _refresh_everything()


def _refresh_everything() -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from opencdp.process.schedule import live_profile_count, refresh_all

    engine = _engine()
    columns = (TextColumn("[bold]refreshing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("refresh", total=live_profile_count(engine))
        done = refresh_all(engine, on_progress=lambda n: progress.advance(task, n))
    click.echo(f"refreshed computed traits of {done} profiles and every segment's memberships")


@click.group("traits")
def traits_group() -> None:
    """Computed traits: counters, sums, first/last values … kept up to date on every profile."""


@traits_group.command("list")
def list_traits() -> None:
    """List computed traits (built-in and custom; a failed one with its error)."""
    from opencdp.store.failures import failures
    from opencdp.traits.definitions import DERIVED
    from opencdp.traits.store import definitions

    with _engine().connect() as conn:
        failed = failures(conn, "trait")
        for definition in definitions(conn):
            window = f" (last {definition.window_days} days)" if definition.window_days else ""
            problem = failed.pop(definition.name, None)
            click.echo(
                f"{definition.name}\t{definition.kind}{window}\t{definition.description}"
                + (_failure(problem.failed_at, problem.error) if problem else "")
            )
        for problem in failed.values():  # stored definitions that no longer validate
            click.echo(f"{problem.name}\t?\t" + _failure(problem.failed_at, problem.error))
    for name, description in DERIVED.items():
        click.echo(f"{name}\tderived\t{description}")


@traits_group.command("define")
@click.argument("definition")
@_friendly
def define(definition: str) -> None:
    """Add or replace a custom computed trait from JSON (inline, file or -)."""
    from pydantic import ValidationError

    from opencdp.traits.definitions import ComputedTrait
    from opencdp.traits.store import define as run

    try:
        parsed = ComputedTrait.model_validate(_criteria(definition))
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        raise click.ClickException("invalid definition:\n" + "\n".join(lines)) from None
    engine = _engine()
    run(engine, parsed)
    record(engine, "cli", "trait.define", "computed_trait", parsed.name, {"kind": parsed.kind})
    click.echo(
        f"computed trait {parsed.name!r} defined; run `opencdp traits refresh` to fill it for everyone"
    )


@traits_group.command("delete")
@click.argument("name")
@_friendly
def delete_trait(name: str) -> None:
    """Delete a custom computed trait."""
    from opencdp.traits.store import remove

    engine = _engine()
    remove(engine, name)
    record(engine, "cli", "trait.delete", "computed_trait", name)
    click.echo(f"computed trait {name!r} deleted")


@traits_group.command("refresh")
def refresh_traits() -> None:
    """Recompute all computed traits and memberships now."""
    _refresh_everything()
