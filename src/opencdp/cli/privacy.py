"""`opencdp privacy …`: consent purposes, data subject requests and retention."""

from __future__ import annotations

import click
import orjson

from opencdp.cli.common import _engine, _friendly


def _person(identifier: str) -> tuple[str, str]:
    from opencdp.privacy.requests import parse_identifier

    try:
        return parse_identifier(identifier)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="IDENTIFIER") from None


@click.group("privacy")
def privacy_group() -> None:
    """Consent purposes, access/erasure requests (GDPR) and retention. See docs/privacy.md.

    IDENTIFIER is TYPE:VALUE, e.g. email:ann@example.com or user_id:42."""


@privacy_group.command("export")
@click.argument("identifier")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="File to write [default: standard output]",
)
@_friendly
def export(identifier: str, out: str | None) -> None:
    """Everything held about a person, as one JSON document (access and portability)."""
    from opencdp.access.audit import record
    from opencdp.identity.identifiers import IdentityRules
    from opencdp.privacy.requests import export_person
    from opencdp.profiles.reader import ProfileNotFound

    engine = _engine()
    kind, value = _person(identifier)
    try:
        data = export_person(engine, IdentityRules.from_env(), kind, value)
    except ProfileNotFound as exc:
        raise click.ClickException(str(exc)) from None
    record(engine, "cli", "privacy.export", "profile", data["profile"]["id"])
    text = orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode()
    if out is None:
        click.echo(text)
    else:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"wrote {len(data['events'])} events and the profile to {out}", err=True)


@privacy_group.command("erase")
@click.argument("identifier")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@_friendly
def erase(identifier: str, yes: bool) -> None:
    """Erase a person from every table (event log included) and drop their future events."""
    from opencdp.identity.identifiers import IdentityRules
    from opencdp.privacy.erasure import erase_person
    from opencdp.profiles.reader import ProfileNotFound

    kind, value = _person(identifier)
    if not yes:
        click.confirm(f"Erase everything about {kind} {value!r}? This cannot be undone", abort=True)
    try:
        counts = erase_person(_engine(), IdentityRules.from_env(), kind, value, "cli")
    except ProfileNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        "erased: {events_deleted} events deleted, {events_scrubbed} events of others scrubbed, "
        "{identifiers} identifiers suppressed, {profiles} profiles removed".format(**counts)
    )


@privacy_group.command("purposes")
@click.option("--add", "name", default=None, help="Define a new purpose")
@click.option("--description", default="", help="What the purpose covers (with --add)")
@_friendly
def purposes(name: str | None, description: str) -> None:
    """List consent purposes, or define one with --add."""
    from opencdp.access.audit import record
    from opencdp.privacy.consent import define_purpose, list_purposes

    engine = _engine()
    if name:
        clean = define_purpose(engine, name, description)
        record(engine, "cli", "consent.purpose.create", "purpose", clean)
        click.echo(f"purpose {clean!r} defined")
        return
    for purpose in list_purposes(engine):
        click.echo(f"{purpose['name']}\t{purpose['description']}")


@privacy_group.command("retention")
@click.argument("source")
@click.argument("days")
@_friendly
def retention(source: str, days: str) -> None:
    """Keep SOURCE's raw events for DAYS days (or 'none' to keep them forever)."""
    from opencdp.access.audit import record
    from opencdp.privacy.retention import set_retention

    if days.lower() == "none":
        value = None
    elif days.isdigit():
        value = int(days)
    else:
        raise click.BadParameter("a number of days or 'none'", param_hint="DAYS")
    engine = _engine()
    set_retention(engine, source, value)
    record(engine, "cli", "source.retention", "source", source, {"days": value})
    click.echo(f"source {source!r}: raw events kept {'forever' if value is None else f'{value} days'}")


@privacy_group.command("apply-retention")
def apply_retention_now() -> None:
    """Delete expired raw events now (this also runs on the refresh schedule)."""
    from opencdp.privacy.retention import apply_retention

    for source, count in apply_retention(_engine()).items():
        click.echo(f"{source}: {count} expired events deleted")
