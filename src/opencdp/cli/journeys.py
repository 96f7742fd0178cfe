"""`opencdp journeys …`: save, activate, pause, list, show, versions and remove journeys
(automated campaigns). Every change is recorded in the audit log as done by "cli"."""

from __future__ import annotations

from typing import Any

import click

from opencdp.access.audit import record
from opencdp.cli.activation import _json, _print
from opencdp.cli.common import _engine, _friendly


@click.group("journeys")
def journeys_group() -> None:
    """Journeys: profiles enter on an event, a segment, a computed trait or a schedule, then walk
    the steps (waits, branches, sends, trait and tag changes) until they exit, convert or complete.

    NAME is a journey's name or id. DEFINITION is inline JSON, a file, or - for standard input."""


def _brief(out: dict[str, Any]) -> dict[str, Any]:
    return {"name": out["name"], "version": out["version"], "status": out["status"]}


def _rate(stats: dict[str, Any]) -> str:
    rate = stats["conversion_rate"]
    return "-" if rate is None else f"{rate:.1%}"


@journeys_group.command("save")
@click.argument("name")
@click.argument("definition")
@click.option("--description", default=None, help="What it is for (kept when left out on a change)")
@_friendly
def save(name: str, definition: str, description: str | None) -> None:
    """Create a journey (as a draft) or save a new version of it."""
    from opencdp.journeys import store

    document = _json(definition, "DEFINITION")
    with _engine().begin() as conn:
        try:
            current: dict[str, Any] | None = store.get(conn, store.find_id(conn, name.strip()))
        except store.JourneyError:
            current = None
        if description is None:
            description = current["description"] if current else ""
        # the name as stored: a change found by id keeps the journey's name
        out = store.save(conn, current["name"] if current else name, document, description, actor="cli")
        action = "journey.update" if current else "journey.create"
        record(conn, "cli", action, "journey", str(out["id"]), _brief(out))
    if current is None:
        click.echo(
            f"journey {out['name']!r} saved as a draft (id {out['id']}); start it with: "
            f"opencdp journeys activate {out['id']}"
        )
    else:
        click.echo(f"journey {out['name']!r} saved as version {out['version']} ({out['status']})")


def _set_status(name: str, status: str, action: str) -> dict[str, Any]:
    from opencdp.journeys import store

    with _engine().begin() as conn:
        journey_id = store.find_id(conn, name)
        out = store.set_status(conn, journey_id, status)
        record(conn, "cli", action, "journey", str(journey_id), _brief(out))
    return out


@journeys_group.command("activate")
@click.argument("name")
@_friendly
def activate(name: str) -> None:
    """Activate: profiles enter from events logged after now."""
    out = _set_status(name, "active", "journey.activate")
    click.echo(f"journey {out['name']!r} is active (version {out['version']})")


@journeys_group.command("pause")
@click.argument("name")
@_friendly
def pause(name: str) -> None:
    """Pause: no one enters or moves on (waits keep counting) until activated again."""
    out = _set_status(name, "paused", "journey.pause")
    click.echo(f"journey {out['name']!r} is paused")


@journeys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with definitions and per-step stats)")
@_friendly
def list_(as_json: bool) -> None:
    """Journeys with their status and how many entered, are on their way and converted."""
    from opencdp.journeys import store

    with _engine().connect() as conn:
        found = store.list_all(conn)
    if as_json:
        _print(found)
        return
    if not found:
        click.echo("no journeys yet: opencdp journeys save NAME DEFINITION")
        return
    for j in found:
        s = j["stats"]
        click.echo(
            f"{j['id']:>4}  {j['name']:<28} {j['status']:<7} v{j['version']:<3} entered {s['entered']}  "
            f"active {s['active']}  completed {s['completed']}  exited {s['exited']}  "
            f"converted {s['converted']} ({_rate(s)})"
        )


@journeys_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@_friendly
def show(name: str, as_json: bool) -> None:
    """One journey: its definition and where its profiles are."""
    from opencdp.journeys import store

    with _engine().connect() as conn:
        j = store.get(conn, store.find_id(conn, name))
    if as_json:
        _print(j)
        return
    click.echo(f"{j['name']} (id {j['id']}): {j['status']}, version {j['version']}")
    if j["description"]:
        click.echo(f"  {j['description']}")
    click.echo(f"  created {j['created_at']}, changed {j['updated_at']}")
    if j["next_run_at"]:
        click.echo(f"  next scheduled run {j['next_run_at']}")
    s = j["stats"]
    click.echo(
        f"\nentered {s['entered']}  active {s['active']}  completed {s['completed']}  "
        f"exited {s['exited']}  converted {s['converted']} ({_rate(s)})"
    )
    if s["steps"]:
        click.echo("per step:")
        order = [step["id"] for step in j["definition"].get("steps", [])]
        for step in sorted(s["steps"], key=lambda k: (order.index(k) if k in order else len(order), k)):
            counts = ", ".join(f"{action} {n}" for action, n in sorted(s["steps"][step].items()))
            click.echo(f"  {step}: {counts}")
    click.echo("\ndefinition:")
    _print(j["definition"])


@journeys_group.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with each version's definition")
@_friendly
def versions(name: str, as_json: bool) -> None:
    """Every saved version, newest first."""
    from opencdp.journeys import store

    with _engine().connect() as conn:
        found = store.versions(conn, store.find_id(conn, name))
    if as_json:
        _print(found)
        return
    for v in found:
        steps = len(v["definition"].get("steps", []))
        click.echo(f"v{v['version']:<4} {v['created_at']}  by {v['by']:<10} {steps} steps")


@journeys_group.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@_friendly
def remove(name: str, yes: bool) -> None:
    """Delete a journey with its versions, the profiles on their way and its history (messages
    already sent stay sent)."""
    from opencdp.journeys import store

    with _engine().begin() as conn:
        journey_id = store.find_id(conn, name)
        j = store.get(conn, journey_id)
        if not yes:
            click.confirm(
                f"delete journey {j['name']!r} ({j['stats']['active']} profiles on their way)?", abort=True
            )
        store.delete(conn, journey_id)
        record(conn, "cli", "journey.delete", "journey", str(journey_id), {"name": j["name"]})
    click.echo(f"journey {j['name']!r} deleted")
