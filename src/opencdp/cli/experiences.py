"""`opencdp experiences …`: list, show, create, update, enable, disable and delete experiences (what
each placement of the website shows to whom; docs/personalisation.md). Every change is recorded in
the audit log as done by "cli"."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from opencdp.cli.common import _engine

ACTOR = "cli"


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Expected failures as one line naming the field, exit code 1."""
    from opencdp.personalise.experiences import ExperienceError
    from opencdp.personalise.store import ExperienceNotSaved

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ExperienceError as exc:
            raise click.ClickException(f"invalid experience: {exc}") from None
        except ExperienceNotSaved as exc:
            raise click.ClickException(f"{exc.field}: {exc.message}") from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _read(file: str) -> Any:
    """The definition from a file, or - for standard input."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text("utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot read {file!r}: {exc.strerror}", param_hint="--file") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint="--file") from None


def _print(value: Any) -> None:
    click.echo(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


def _state(e: dict[str, Any]) -> str:
    return "enabled" if e["enabled"] else "disabled"


@click.group("experiences")
def experiences_group() -> None:
    """Experiences: per placement of the website, variants with audiences (history, session,
    context), a strategy, a holdout and a fallback; served by POST /v1/decide.

    NAME is an experience's name or id. --file is a JSON definition (or - for standard input)."""


@experiences_group.command("list")
@click.option("--placement", default=None, help="Only this placement's")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with definitions)")
@_errors
def list_(placement: str | None, as_json: bool) -> None:
    """Experiences by placement: strategy, holdout, variants, enabled, version."""
    from opencdp.personalise import store

    with _engine().connect() as conn:
        found = store.list_all(conn, placement)
    if as_json:
        _print(found)
        return
    if not found:
        click.echo("no experiences yet: opencdp experiences create --file experience.json")
        return
    for e in found:
        click.echo(
            f"{e['id']:>4}  {e['placement']:<18} {e['name']:<28} {_state(e):<8} v{e['version']:<3} "
            f"{e['strategy']:<13} holdout {e['holdout_percent']:g} %  variants: {', '.join(e['variants'])}"
        )


@experiences_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@_errors
def show(name: str, as_json: bool) -> None:
    """One experience with its definition."""
    from opencdp.personalise import store

    with _engine().connect() as conn:
        e = store.get(conn, name)
    if as_json:
        _print(e)
        return
    click.echo(f"{e['name']} (id {e['id']}): placement {e['placement']}, {_state(e)}, version {e['version']}")
    click.echo(f"  created {e['created_at']} by {e['created_by']}, changed {e['updated_at']}")
    click.echo("definition:")
    _print(e["definition"])


@experiences_group.command("create")
@click.option("--file", "file", required=True, help="The JSON definition (- for standard input)")
@click.option("--enable", is_flag=True, help="Start deciding at once (else: enable it later)")
@_errors
def create(file: str, enable: bool) -> None:
    """Create an experience (disabled unless --enable)."""
    from opencdp.personalise import store

    document = _read(file)
    with _engine().begin() as conn:
        e = store.create(conn, document, actor=ACTOR, enabled=enable)
    hint = "" if enable else f"; start it with: opencdp experiences enable {e['id']}"
    click.echo(f"experience {e['name']!r} created (id {e['id']}, {_state(e)}){hint}")


@experiences_group.command("update")
@click.argument("name")
@click.option("--file", "file", required=True, help="The JSON definition (- for standard input)")
@_errors
def update(name: str, file: str) -> None:
    """Replace an experience's definition (a new version; enabled stays as it was)."""
    from opencdp.personalise import store

    document = _read(file)
    with _engine().begin() as conn:
        e = store.update(conn, name, document, actor=ACTOR)
    click.echo(f"experience {e['name']!r} saved as version {e['version']} ({_state(e)})")


def _switch(name: str, enabled: bool) -> None:
    from opencdp.personalise import store

    with _engine().begin() as conn:
        e = store.set_enabled(conn, name, enabled, actor=ACTOR)
    click.echo(f"experience {e['name']!r} {_state(e)}")


@experiences_group.command("enable")
@click.argument("name")
@_errors
def enable(name: str) -> None:
    """Enable: the experience decides from now on."""
    _switch(name, True)


@experiences_group.command("disable")
@click.argument("name")
@_errors
def disable(name: str) -> None:
    """Disable: the experience stops deciding."""
    _switch(name, False)


@experiences_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@_errors
def delete(name: str, yes: bool) -> None:
    """Delete an experience (its logged decisions stay in the event log)."""
    from opencdp.personalise import store

    with _engine().begin() as conn:
        e = store.get(conn, name)
        if not yes:
            click.confirm(f"delete experience {e['name']!r} ({_state(e)})?", abort=True)
        store.delete(conn, e["id"], actor=ACTOR)
    click.echo(f"experience {e['name']!r} deleted")
