"""`opencdp destinations …`, `opencdp forwarding …`, `opencdp audiences …` and `opencdp deliveries
…`: where data goes, what flows there, and what happened to it (docs/activation.md)."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from opencdp.access.audit import record
from opencdp.cli.common import _engine, _friendly, _settings


def _json(value: str, hint: str) -> Any:
    """JSON from inline text, a file path, or - (standard input)."""
    if value == "-":
        text = sys.stdin.read()
    elif value.lstrip().startswith(("{", "[")):
        text = value
    else:
        path = Path(value)
        if not path.exists():
            raise click.BadParameter(
                f"{value!r} is neither inline JSON nor an existing file", param_hint=hint
            )
        text = path.read_text(encoding="utf-8")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=hint) from None


def _print(value: Any) -> None:
    click.echo(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


def _secret(secret: str | None, ask: bool) -> str | None:
    if ask:
        return getpass.getpass("secret (not echoed): ") or None
    return secret


@click.group("destinations")
def destinations_group() -> None:
    """Destinations: where deliveries go (webhook, smtp, nats, rabbitmq, file).

    CONFIG is inline JSON, a file, or - for standard input. Secrets are stored encrypted (or as
    env:VARIABLE) and never shown again."""


@destinations_group.command("add")
@click.argument("name")
@click.option("--kind", default=None, help="webhook, smtp, nats, rabbitmq or file (webhook with --preset)")
@click.option(
    "--preset",
    default=None,
    help="A ready-made webhook for a tool, e.g. hubspot-contacts (see `opencdp destinations presets`)",
)
@click.option(
    "--option",
    "preset_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the preset (repeat for each)",
)
@click.option(
    "--config",
    "config_text",
    default=None,
    help="The destination's settings as JSON (with --preset: settings given over the preset's)",
)
@click.option("--secret", default=None, help="Password, token or signing key; env:NAME to read it from $NAME")
@click.option(
    "--ask-secret", is_flag=True, help="Prompt for the secret instead (keeps it out of shell history)"
)
@click.option("--purpose", default=None, help="Consent purpose a profile must have granted to be sent here")
@click.option("--rate", type=float, default=None, help="At most this many deliveries per second (per worker)")
@click.option(
    "--max-retry-seconds",
    type=int,
    default=86400,
    show_default=True,
    help="Retry this long, then dead-letter",
)
@_friendly
def add(
    name: str,
    kind: str | None,
    preset: str | None,
    preset_options: tuple[str, ...],
    config_text: str | None,
    secret: str | None,
    ask_secret: bool,
    purpose: str | None,
    rate: float | None,
    max_retry_seconds: int,
) -> None:
    """Create a destination, from its settings or from a preset."""
    from opencdp.activation.destinations import DestinationSpec, create

    config: Any
    if preset is not None:
        if kind not in (None, "webhook"):
            raise click.BadParameter("a preset makes a webhook destination", param_hint="--kind")
        kind, config = "webhook", _preset_config(preset, preset_options, config_text)
    else:
        if preset_options:
            raise click.BadParameter("options belong to a preset: give --preset", param_hint="--option")
        if kind is None or config_text is None:
            raise click.UsageError("give --kind and --config, or --preset")
        config = _json(config_text, "--config")
    spec = DestinationSpec(
        name=name,
        kind=kind,
        config=config,
        secret=_secret(secret, ask_secret),
        purpose=purpose,
        rate_per_second=rate,
        max_retry_seconds=max_retry_seconds,
    )
    with _engine().begin() as conn:
        new_id = create(conn, _settings(), spec)
        detail = {"name": name, "kind": kind, **({"preset": preset} if preset else {})}
        record(conn, "cli", "destination.create", "destination", str(new_id), detail)
    click.echo(f"destination {name!r} created (id {new_id})")


def _preset_config(name: str, options: tuple[str, ...], config_text: str | None) -> dict[str, Any]:
    from opencdp.activation.drivers import DestinationConfigError
    from opencdp.activation.presets import get, merge

    given: dict[str, str] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: write KEY=VALUE", param_hint="--option")
        given[key.strip()] = value
    try:
        config = get(name).build(given)
    except DestinationConfigError as exc:
        hint = "--preset" if exc.field == "preset" else f"--option {exc.field}"
        raise click.BadParameter(exc.message, param_hint=hint) from None
    if config_text:
        override = _json(config_text, "--config")
        if not isinstance(override, dict):
            raise click.BadParameter("must be an object", param_hint="--config")
        config = merge(config, override)
    return config


@destinations_group.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def presets_(as_json: bool) -> None:
    """Ready-made webhook destinations for common tools, with their options."""
    from opencdp.activation.presets import PRESETS

    if as_json:
        _print([p.describe() for p in PRESETS.values()])
        return
    for preset in PRESETS.values():
        click.echo(f"{preset.name}: {preset.title}")
        click.echo(f"  {preset.description}")
        click.echo(f"  secret: {preset.secret}")
        click.echo(f"  request format: {preset.reference}")
        for option in preset.options:
            need = "required" if option.required else f"default {option.default!r}"
            click.echo(f"  --option {option.name}=…  ({need}) {option.description}")
        click.echo("")


@destinations_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@_friendly
def list_(as_json: bool) -> None:
    """Destinations with their health and deliveries per status."""
    from opencdp.activation.destinations import list_views

    with _engine().connect() as conn:
        views = list_views(conn)
    if as_json:
        _print(views)
        return
    if not views:
        click.echo(
            "no destinations yet: opencdp destinations add NAME --kind webhook --config '{\"url\": …}'"
        )
        return
    for v in views:
        d = v["deliveries"]
        click.echo(
            f"{v['id']:>4}  {v['name']:<24} {v['kind']:<9} {'enabled' if v['enabled'] else 'disabled':<8} "
            f"circuit {v['health']['circuit']:<6} pending {d.get('pending', 0) + d.get('sending', 0)}  "
            f"delivered {d.get('delivered', 0)}  dead {d.get('dead', 0)}  skipped {d.get('skipped', 0)}"
        )
        if v["health"]["last_error"]:
            click.echo(f"      last error: {v['health']['last_error'][:150]}")


@destinations_group.command("show")
@click.argument("destination")
@_friendly
def show(destination: str) -> None:
    """One destination (by id or name), without its secret."""
    from opencdp.activation.destinations import find_id, get_row, status_counts, view

    with _engine().connect() as conn:
        dest_id = find_id(conn, destination)
        _print(view(get_row(conn, dest_id), status_counts(conn).get(dest_id, {})))


@destinations_group.command("update")
@click.argument("destination")
@click.option("--config", "config_text", default=None, help="New settings as JSON (replaces the old ones)")
@click.option("--secret", default=None, help="A new secret (or env:NAME)")
@click.option("--ask-secret", is_flag=True, help="Prompt for a new secret")
@click.option("--purpose", default=None, help="Consent purpose; 'none' for none")
@click.option("--rate", type=float, default=None, help="Deliveries per second; 0 for no limit")
@click.option("--enable/--disable", default=None, help="Send to it, or hold its deliveries")
@_friendly
def update_(
    destination: str,
    config_text: str | None,
    secret: str | None,
    ask_secret: bool,
    purpose: str | None,
    rate: float | None,
    enable: bool | None,
) -> None:
    """Change a destination; what is not given stays."""
    from opencdp.activation.destinations import DestinationSpec, find_id, get_row, update

    with _engine().begin() as conn:
        dest_id = find_id(conn, destination)
        row = get_row(conn, dest_id)
        spec = DestinationSpec(
            name=row.name,
            kind=row.kind,
            config=_json(config_text, "--config") if config_text else dict(row.config),
            secret=_secret(secret, ask_secret),
            purpose=row.purpose if purpose is None else (None if purpose == "none" else purpose),
            enabled=row.enabled if enable is None else enable,
            rate_per_second=row.rate_per_second if rate is None else (rate or None),
            max_retry_seconds=row.max_retry_seconds,
        )
        update(conn, _settings(), dest_id, spec)
        record(conn, "cli", "destination.update", "destination", str(dest_id), {"name": row.name})
    click.echo(f"destination {row.name!r} updated")


@destinations_group.command("remove")
@click.argument("destination")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@_friendly
def remove(destination: str, yes: bool) -> None:
    """Delete a destination with its forwarding rules, audience syncs and deliveries."""
    from opencdp.activation.destinations import delete, find_id

    with _engine().begin() as conn:
        dest_id = find_id(conn, destination)
        if not yes:
            click.confirm(f"delete destination {destination!r} and everything queued for it?", abort=True)
        counts = delete(conn, dest_id)
        record(conn, "cli", "destination.delete", "destination", str(dest_id), counts)
    click.echo("deleted: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@destinations_group.command("test")
@click.argument("destination")
@_friendly
def test_(destination: str) -> None:
    """Send one sample message now (not recorded as a delivery) and print the outcome."""
    import asyncio

    from opencdp.activation.destinations import find_id, get_row, make_driver

    settings = _settings()
    with _engine().connect() as conn:
        row = get_row(conn, find_id(conn, destination))
    driver = make_driver(settings, row)
    sample = sample_message(row.id, row.name)

    async def go() -> Any:
        try:
            return (await driver.send([sample]))[0]
        finally:
            await driver.close()

    outcome = asyncio.run(go())
    if outcome.status != "delivered":
        raise click.ClickException(f"{outcome.status}: {outcome.error}")
    click.echo("delivered")


def sample_message(destination_id: int, name: str) -> Any:
    from opencdp.activation.drivers import Message

    event = {
        "type": "track",
        "event": "Test Event",
        "userId": "test-user",
        "properties": {"test": True},
        "messageId": "opencdp-test",
    }
    profile = {"id": "test-profile", "traits": {"email": "test@example.com"}, "computed": {}, "consent": {}}
    context = {
        "kind": "event",
        "idempotency_key": "test",
        "destination": {"id": destination_id, "name": name},
        "profile": profile,
        "event": event,
    }
    body = {"type": "event", "idempotency_key": "test", "profile_id": "test-profile", "event": event}
    return Message(0, "test", context, body)


@click.group("forwarding")
def forwarding_group() -> None:
    """Event forwarding: events, filtered, sent to a destination as they are processed."""


@forwarding_group.command("add")
@click.argument("name")
@click.option("--destination", required=True, help="Destination id or name")
@click.option(
    "--filter", "filter_text", default="{}", help='e.g. {"types": ["track"], "events": ["Order Completed"]}'
)
@_friendly
def forwarding_add(name: str, destination: str, filter_text: str) -> None:
    """Forward the events collected from now on that match the filter."""
    from opencdp.activation.destinations import find_id
    from opencdp.activation.forwarding import create_rule

    with _engine().begin() as conn:
        rule_id = create_rule(conn, name, find_id(conn, destination), _json(filter_text, "--filter"))
        record(conn, "cli", "forwarding.create", "forwarding_rule", str(rule_id), {"name": name})
    click.echo(f"forwarding rule {name!r} created (id {rule_id})")


@forwarding_group.command("list")
@_friendly
def forwarding_list() -> None:
    from opencdp.activation.forwarding import list_rules

    with _engine().connect() as conn:
        _print(list_rules(conn))


@forwarding_group.command("remove")
@click.argument("rule_id", type=int)
@_friendly
def forwarding_remove(rule_id: int) -> None:
    from opencdp.activation.forwarding import delete_rule

    with _engine().begin() as conn:
        delete_rule(conn, rule_id)
        record(conn, "cli", "forwarding.delete", "forwarding_rule", str(rule_id), {})
    click.echo(f"forwarding rule {rule_id} removed")


@click.group("audiences")
def audiences_group() -> None:
    """Audience sync: a segment's entries and exits sent to a destination."""


@audiences_group.command("sync")
@click.argument("segment")
@click.option("--destination", required=True, help="Destination id or name")
@_friendly
def audiences_sync(segment: str, destination: str) -> None:
    """Start syncing SEGMENT: its current members now (backfill), then every change."""
    from opencdp.activation.audiences import create_sync
    from opencdp.activation.destinations import find_id

    with _engine().begin() as conn:
        sync_id, members = create_sync(conn, segment, find_id(conn, destination))
        record(conn, "cli", "audience.sync", "audience_sync", str(sync_id), {"backfill": members})
    click.echo(f"audience sync {sync_id} created: {members} members queued")


@audiences_group.command("list")
@_friendly
def audiences_list() -> None:
    """Syncs with their status: members sent, pending, failed, last success."""
    from opencdp.activation.audiences import list_syncs

    with _engine().connect() as conn:
        _print(list_syncs(conn))


@audiences_group.command("remove")
@click.argument("sync_id", type=int)
@_friendly
def audiences_remove(sync_id: int) -> None:
    from opencdp.activation.audiences import delete_sync

    with _engine().begin() as conn:
        delete_sync(conn, sync_id)
        record(conn, "cli", "audience.unsync", "audience_sync", str(sync_id), {})
    click.echo(f"audience sync {sync_id} removed")


@click.group("deliveries")
def deliveries_group() -> None:
    """What was sent where, and the dead letters (deliveries that will not be retried)."""


@deliveries_group.command("list")
@click.option("--status", type=click.Choice(["pending", "sending", "delivered", "dead", "skipped"]))
@click.option("--destination", default=None, help="Destination id or name")
@click.option("--limit", default=50, show_default=True)
@_friendly
def deliveries_list(status: str | None, destination: str | None, limit: int) -> None:
    """Deliveries, newest first (`--status dead` lists the dead letters)."""
    from opencdp.activation import outbox
    from opencdp.activation.destinations import find_id

    with _engine().connect() as conn:
        dest_id = find_id(conn, destination) if destination else None
        _print(outbox.find(conn, status, dest_id, limit))


@deliveries_group.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--destination", default=None, help="Every dead letter of this destination")
@click.option("--all", "everything", is_flag=True, help="Every dead letter")
@_friendly
def deliveries_replay(ids: tuple[int, ...], destination: str | None, everything: bool) -> None:
    """Send dead letters again, with their original idempotency keys."""
    from opencdp.activation import outbox
    from opencdp.activation.destinations import find_id

    if not ids and not destination and not everything:
        raise click.UsageError("name delivery ids, --destination or --all")
    with _engine().begin() as conn:
        dest_id = find_id(conn, destination) if destination else None
        n = outbox.replay(conn, list(ids) or None, dest_id)
        record(conn, "cli", "deliveries.replay", "destination", str(dest_id or ""), {"deliveries": n})
    click.echo(f"{n} dead letters queued again")


@deliveries_group.command("send")
@_friendly
def deliveries_send() -> None:
    """Send everything due now and exit (for cron-style setups and checks)."""
    from opencdp.activation.worker import DeliveryWorker

    result = DeliveryWorker(_engine(), _settings()).run_until_idle()
    click.echo(result.summary())
