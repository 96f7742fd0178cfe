"""`opencdp preferences link` (a link to a customer's preference centre) and `opencdp surveys …`
(surveys defined as data whose answers become traits; docs/identity.md). Changes are recorded in
the audit log as done by "cli"."""

from __future__ import annotations

from typing import Any

import click

from opencdp.cli.common import _engine, _settings
from opencdp.cli.experiences import _print, _read

ACTOR = "cli"


@click.group("preferences")
def preferences_group() -> None:
    """The hosted preference centre: consent per purpose, interests, preferred channel, surveys,
    the customer's own data download and erasure."""


@preferences_group.command("link")
@click.argument("identifier")
@click.option(
    "--hours", type=click.IntRange(1, 24 * 90), default=72, show_default=True, help="How long it works"
)
@click.option(
    "--base-url", default=None, help="Where customers reach this server (default: OPENCDP_PUBLIC_URL)"
)
def link(identifier: str, hours: int, base_url: str | None) -> None:
    """A link to IDENTIFIER's preference centre (TYPE:VALUE, e.g. email:ann@example.com), printed
    once: only its hash is kept. Send it to the customer; it ends after --hours or on erasure."""
    from opencdp.access.audit import record
    from opencdp.accounts.preference_links import PATH, create_link
    from opencdp.identity.identifiers import IdentityRules
    from opencdp.privacy.requests import parse_identifier
    from opencdp.profiles.reader import ProfileNotFound, find_profile_id

    settings = _settings()
    base = (base_url or settings.public_url or "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise click.UsageError(
            "say where customers reach this server: --base-url https://… or OPENCDP_PUBLIC_URL"
        )
    try:
        kind, value = parse_identifier(identifier)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="IDENTIFIER") from None
    engine = _engine()
    try:
        pid = find_profile_id(engine, IdentityRules.from_env(), kind, value)
    except ProfileNotFound as exc:
        raise click.ClickException(str(exc)) from None
    token, expires = create_link(engine, pid, hours, ACTOR)
    record(engine, ACTOR, "preferences.link", "profile", pid, {"hours": hours})
    click.echo(f"{base}{PATH}{token}")
    click.echo(f"profile {pid}; works until {expires.isoformat(timespec='minutes')}", err=True)


@click.group("surveys")
def surveys_group() -> None:
    """Surveys defined as data (zero-party data): answers become traits with source `zero-party`
    and a `Survey Answered` event. --file is a JSON definition (or - for standard input)."""


def _missing(fn: Any) -> Any:
    from opencdp.accounts.survey_store import SurveyNotFound
    from opencdp.accounts.surveys import SurveyError

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SurveyNotFound as exc:
            raise click.ClickException(str(exc)) from None
        except SurveyError as exc:
            raise click.ClickException(
                "invalid survey: " + "; ".join(f"{p or 'body'}: {m}" for p, m in exc.problems)
            ) from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@surveys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with definitions)")
def list_(as_json: bool) -> None:
    """Surveys: name, enabled, questions, title."""
    from opencdp.accounts.survey_store import list_surveys

    found = list_surveys(_engine())
    if as_json:
        _print(found)
        return
    if not found:
        click.echo("no surveys yet: opencdp surveys save --file survey.json")
    for s in found:
        state = "enabled" if s["enabled"] else "disabled"
        count = len(s["definition"]["questions"])
        click.echo(f"{s['name']:<24} {state:<9} {count:>2} question(s)  {s['definition']['title']}")


@surveys_group.command("save")
@click.option("--file", "file", required=True, help="JSON definition, or - for standard input")
@_missing
def save(file: str) -> None:
    """Create a survey (enabled), or replace the definition of the one with its name."""
    from opencdp.access.audit import record
    from opencdp.accounts.survey_store import save_survey

    engine = _engine()
    saved, created = save_survey(engine, _read(file), ACTOR)
    record(engine, ACTOR, "survey.create" if created else "survey.update", "survey", saved["name"])
    click.echo(f"{'created' if created else 'updated'} survey {saved['name']}")


@surveys_group.command("show")
@click.argument("name")
@_missing
def show(name: str) -> None:
    """One survey as JSON."""
    from opencdp.accounts.survey_store import get_survey

    _print(get_survey(_engine(), name))


def _switch(name: str, enabled: bool) -> None:
    from opencdp.access.audit import record
    from opencdp.accounts.survey_store import set_enabled

    engine = _engine()
    set_enabled(engine, name, enabled)
    record(engine, ACTOR, "survey.enable" if enabled else "survey.disable", "survey", name)
    click.echo(f"survey {name} {'enabled' if enabled else 'disabled'}")


@surveys_group.command("enable")
@click.argument("name")
@_missing
def enable(name: str) -> None:
    """Show the survey to customers."""
    _switch(name, True)


@surveys_group.command("disable")
@click.argument("name")
@_missing
def disable(name: str) -> None:
    """Stop showing the survey (its definition and the answers given stay)."""
    _switch(name, False)


@surveys_group.command("remove")
@click.argument("name")
@_missing
def remove(name: str) -> None:
    """Delete a survey (the answers given stay on the profiles)."""
    from opencdp.access.audit import record
    from opencdp.accounts.survey_store import remove_survey

    engine = _engine()
    remove_survey(engine, name)
    record(engine, ACTOR, "survey.delete", "survey", name)
    click.echo(f"survey {name} removed")
