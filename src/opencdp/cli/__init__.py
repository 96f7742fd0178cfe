"""The `opencdp` command line. Every command has --help; errors are one clear line, exit code 1."""

from __future__ import annotations

import contextlib
import signal
import sys

import click
import orjson

from opencdp import __version__, logs
from opencdp.access import keys
from opencdp.cli.common import _engine, _friendly, _settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="opencdp")
def main() -> None:
    """opencdp: collect customer events, resolve identities, build one profile per customer.

    Configuration comes from environment variables: OPENCDP_DATABASE_URL (default: SQLite in
    OPENCDP_DATA_DIR), OPENCDP_DATA_DIR, OPENCDP_LOG_LEVEL, OPENCDP_LOG_FORMAT (console|json).
    """
    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)


@main.command()
@click.option("--host", default=None, help="Interface to listen on [default: OPENCDP_HOST or 127.0.0.1]")
@click.option("--port", default=None, type=int, help="Port [default: OPENCDP_PORT or 8000]")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP server: collection API (/v1), admin API (/api), OpenAPI at /openapi.json,
    Prometheus metrics at /metrics."""
    import uvicorn

    from opencdp import heap, metrics

    # First, before any metric exists: counters of this process and its children go to files here.
    metrics_dir, own_dir = metrics.prepare_multiprocess_dir()
    # uvicorn re-raises SIGTERM after its graceful shutdown; leave through `finally` instead of dying
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    from opencdp.api.app import create_app
    from opencdp.system import OpenCDP

    settings = _settings()
    try:
        cdp = OpenCDP(settings, separate_process=True)
        log = logs.get("opencdp.serve")
        log.info("starting", database=cdp.engine.url.render_as_string(hide_password=True))
        app = create_app(cdp)
        heap.settle()
        uvicorn.run(
            app,
            host=host or settings.host,
            port=port or settings.port,
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if own_dir:
            metrics.remove_multiprocess_dir(metrics_dir)


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema to the latest version (serve does this too)."""
    engine = _engine()
    click.echo(f"database schema is up to date ({engine.dialect.name})")


@main.group()
def sources() -> None:
    """Sources: where events come from (a website, an app, a CRM). Each has a write key."""


@sources.command("create")
@click.argument("name")
@_friendly
def sources_create(name: str) -> None:
    """Create a source and print its write key (shown only this once)."""
    source, write_key = keys.create_source(_engine(), name, actor="cli")
    click.echo(write_key)
    click.echo(
        f"source {source.name!r} created (id {source.id}); the write key above is shown only once", err=True
    )


@sources.command("list")
def sources_list() -> None:
    """List sources."""
    for source in keys.list_sources(_engine()):
        state = "enabled" if source.enabled else "disabled"
        click.echo(f"{source.id}\t{source.name}\t{state}\t{source.created_at.isoformat()}")


@sources.command("disable")
@click.argument("name")
@_friendly
def sources_disable(name: str) -> None:
    """Disable a source: its write key is refused with 401 from now on."""
    keys.set_source_enabled(_engine(), name, False, actor="cli")
    click.echo(f"source {name!r} disabled")


@sources.command("enable")
@click.argument("name")
@_friendly
def sources_enable(name: str) -> None:
    """Enable a disabled source again."""
    keys.set_source_enabled(_engine(), name, True, actor="cli")
    click.echo(f"source {name!r} enabled")


@main.group("keys")
def keys_group() -> None:
    """API keys for /api. Roles: admin (everything), export (read + segment member lists, CSV
    exports, personal data export), read (profiles, events, segments, traits, previews), metrics
    (only GET /metrics, for Prometheus), decide (a public pk_ key for web pages: only POST
    /v1/decide, decisions without trait values)."""


@keys_group.command("create")
@click.option("--role", type=click.Choice(keys.ROLES), default="admin", show_default=True)
@click.option("--name", default="", help="A label to recognise the key by")
@_friendly
def keys_create(role: str, name: str) -> None:
    """Create an API key and print its secret (shown only this once)."""
    key, secret = keys.create_api_key(_engine(), role, name, actor="cli")
    click.echo(secret)
    click.echo(f"{role} key {key.id} created; the secret above is shown only once", err=True)


@keys_group.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    for key in keys.list_api_keys(_engine()):
        state = "enabled" if key.enabled else "disabled"
        click.echo(f"{key.id}\t{key.role}\t{key.name}\t{state}\t{key.created_at.isoformat()}")


@keys_group.command("disable")
@click.argument("key_id", type=int)
@_friendly
def keys_disable(key_id: int) -> None:
    """Disable an API key by its id."""
    keys.set_api_key_enabled(_engine(), key_id, False, actor="cli")
    click.echo(f"key {key_id} disabled")


@main.command()
@click.option("--source", default=None, help="Only this source")
@click.option("--type", "call_type", default=None, help="Only this call type")
@click.option("--limit", default=20, show_default=True, help="How many, oldest first after --after")
@click.option("--after", default=0, help="Start after this event id")
@click.option(
    "--count", is_flag=True, help="Print only how many events match --source, --type and --after (no limit)"
)
def events(source: str | None, call_type: str | None, limit: int, after: int, count: bool) -> None:
    """Show the event log, one JSON object per line."""
    from opencdp.log.reader import EventQuery, count_events, read_events

    engine = _engine()
    query = EventQuery(source=source, type=call_type, after_id=after, limit=limit)
    if count:
        click.echo(count_events(engine, query=query))
        return
    for row in read_events(engine, query):
        sys.stdout.write(orjson.dumps(row, default=str).decode() + "\n")


@main.command()
@click.option("--customers", default=2000, show_default=True, help="How many synthetic customers")
@click.option(
    "--seed",
    default=42,
    show_default=True,
    help="Same seed and --now, same events; message ids depend only on the seed (re-running adds nothing)",
)
@click.option(
    "--now",
    "now_text",
    default=None,
    metavar="ISO",
    help="The moment the shop's history ends (ISO date or date-time, UTC unless given)  [default: now]",
)
@click.option("--url", default=None, help="Send to a running opencdp server instead of starting one")
def demo(customers: int, seed: int, now_text: str | None, url: str | None) -> None:
    """Generate a realistic shop (browsing, consent, sign-ups, logins, orders, e-mails, shares) over
    the last 90 days up to now and send it through the real HTTP API, then show what opencdp made of it."""
    from opencdp.demo.runner import demo_source_keys, demo_summary, planted_summary, running_server, send_shop
    from opencdp.demo.shop import ShopGenerator, parse_now
    from opencdp.log.reader import count_events
    from opencdp.system import OpenCDP

    if customers < 1:
        raise click.BadParameter("must be at least 1", param_hint="--customers")
    try:
        now = parse_now(now_text) if now_text is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--now") from None
    cdp = OpenCDP(_settings())
    keys_by_source = demo_source_keys(cdp)
    from opencdp.demo.activation import setup_demo_activation

    outbox = setup_demo_activation(cdp.engine, cdp.settings)
    from opencdp.demo.experiment import ensure_demo_experience

    experience_id = ensure_demo_experience(cdp.engine)
    generator = ShopGenerator(customers=customers, seed=seed, now=now, experience_id=experience_id)
    if url:
        sent = send_shop(url, keys_by_source, generator)
    else:
        with running_server(cdp) as local_url:
            sent = send_shop(local_url, keys_by_source, generator)
        cdp.processor.run_until_caught_up()  # whatever the server's loop had not reached yet
    click.echo(
        f"sent {sent} events from {customers} customers ({generator.start:%Y-%m-%d} to "
        f"{generator.now:%Y-%m-%d %H:%M} UTC); the event log holds {count_events(cdp.engine)}"
    )
    click.echo(planted_summary(generator.stats))
    click.echo(generator.experiment.summary())
    if url:
        return
    summary = demo_summary(cdp.engine)
    click.echo(
        "profiles: {profiles} ({identified} identified, {anonymous} anonymous); {merged} profiles merged "
        "into others; {conflicts} merges refused by merge protection".format(**summary)
    )
    answered, email = summary["consent_recorded"], summary["email_consent"]
    known = max(summary["identified"], 1)
    click.echo(
        f"consent: {answered} identified customers ({answered * 100 // known} %) answered the consent "
        f"banner ({summary['declined']} declined everything), {email} ({email * 100 // known} %) agree to "
        "email_marketing"
    )
    click.echo(
        f"ordered at least twice in the last 30 days and country = DE: {summary['task_members']} profiles, "
        f"{summary['task_email_consent']} of them may get marketing e-mails"
    )
    from opencdp.activation.worker import DeliveryWorker
    from opencdp.journeys.runner import JourneyRunner
    from opencdp.journeys.store import list_all

    JourneyRunner(cdp.engine, cdp.settings).run_until_idle()
    cdp.processor.run_until_caught_up()  # trait changes the journeys made
    DeliveryWorker(cdp.engine, cdp.settings).run_until_idle()
    with cdp.engine.connect() as conn:
        for journey in list_all(conn):
            stats = journey["stats"]
            click.echo(
                f"journey {journey['name']!r}: {stats['entered']} entered, {stats['active']} on their way, "
                f"{stats['completed']} completed, {stats['converted']} reached the goal, "
                f"{stats['exited']} exited"
            )
    from opencdp.activation.destinations import list_views

    with cdp.engine.connect() as conn:
        counts = next(v["deliveries"] for v in list_views(conn) if v["name"] == "demo outbox")
    click.echo(
        f"deliveries: {counts.get('delivered', 0)} written to {outbox}, {counts.get('pending', 0)} "
        "waiting for the next drop (once a minute while serve runs); opencdp deliveries list"
    )
    if summary["example"]:
        click.echo(f"try:  opencdp profiles get --type user_id --value {summary['example']} --history")
    click.echo(f"database: {cdp.engine.url.render_as_string(hide_password=True)}")


@main.command()
@click.option("--once", is_flag=True, help="Process what is waiting, then exit")
@click.option(
    "--metrics-port", type=int, default=None, help="Serve Prometheus metrics of this worker on this port"
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="…on this interface")
@click.option("--deliveries/--no-deliveries", default=True, help="Also send what the outbox holds")
@click.option("--processing/--no-processing", default=True, help="Process the event log")
def worker(
    once: bool, metrics_port: int | None, metrics_host: str, deliveries: bool, processing: bool
) -> None:
    """Process the event log into identities and profiles, and send what the outbox holds. Several
    workers may run side by side on PostgreSQL (they take turns at identity resolution, refresh
    profiles in parallel and share the outbox); `serve` also processes and delivers, in a child
    process, unless OPENCDP_PROCESS_IN_SERVER=0 / OPENCDP_DELIVER_IN_SERVER=0."""
    from opencdp.process.loop import ProcessorLoop
    from opencdp.process.processor import Processor

    settings = _settings()
    processor = Processor(
        _engine(), chunk_size=settings.process_chunk_size, max_hold_seconds=settings.process_max_hold_seconds
    )
    if metrics_port is not None:
        from opencdp import metrics

        metrics.serve_http(processor.engine, metrics_port, metrics_host)
    from opencdp.activation.worker import DeliveryLoop, DeliveryWorker

    if not deliveries and not processing:
        raise click.UsageError("--no-deliveries and --no-processing leave nothing to do")
    if once:
        if processing:
            click.echo(f"processed {processor.run_until_caught_up()} events")
        if deliveries:
            sent = DeliveryWorker(processor.engine, settings).run_until_idle()
            click.echo(sent.summary())
        return
    sender = DeliveryLoop(DeliveryWorker(processor.engine, settings)) if deliveries else None
    from opencdp import heap

    heap.settle()
    logs.get("opencdp.worker").info(
        "worker started", backlog=processor.backlog(), processing=processing, deliveries=deliveries
    )
    with contextlib.suppress(KeyboardInterrupt):
        if sender is not None and not processing:
            sender.run()
            return
        if sender is not None:
            sender.start()
        try:
            ProcessorLoop(
                processor,
                refresh_seconds=settings.refresh_seconds,
                on_progress=sender.notify if sender is not None else None,
            ).run()
        finally:
            if sender is not None:
                sender.stop()


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
def rebuild(yes: bool) -> None:
    """Recompute all derived state (identity graph, profiles) from the event log.

    Stop `serve`/`worker` processes first, or they will carry on where the rebuild is."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from opencdp.process.processor import Processor, reset_derived_state

    engine = _engine()
    if not yes:
        click.confirm("Delete all identities and profiles and rebuild them from the event log?", abort=True)
    reset_derived_state(engine)
    processor = Processor(engine)
    columns = (TextColumn("[bold]rebuilding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("rebuild", total=processor.backlog())
        while n := processor.run_once():
            progress.advance(task, n)
        processor.refresh_all_queued()
    from opencdp.predict.runner import rescore_after_rebuild

    if rescored := rescore_after_rebuild(engine):
        click.echo(f"predicted traits written again by {rescored} models (as of their last scoring)")
    click.echo("rebuild complete")


@main.group("profiles")
def profiles_group() -> None:
    """Look at unified profiles; undo a merge (unmerge, rejections, allow)."""


@profiles_group.command("get")
@click.argument("profile_id", required=False)
@click.option("--type", "kind", default=None, help="Find by identifier type (email, user_id, phone, …)")
@click.option("--value", default=None, help="…and value")
@click.option("--history", is_flag=True, help="Also show why its identifiers are one person")
def profiles_get(profile_id: str | None, kind: str | None, value: str | None, history: bool) -> None:
    """Print one profile as JSON, by id or by --type/--value, with its journeys (where it is in
    each; --history adds what happened on the way and why its identifiers are one person)."""
    from opencdp.identity.identifiers import IdentityRules
    from opencdp.journeys.store import profile_journeys
    from opencdp.profiles.reader import ProfileNotFound, find_profile_id, get_profile, merge_history

    engine = _engine()
    try:
        if profile_id is None:
            if not (kind and value):
                raise click.UsageError("give a PROFILE_ID or both --type and --value")
            profile_id = find_profile_id(engine, IdentityRules.from_env(), kind, value)
        out = get_profile(engine, profile_id)
        with engine.connect() as conn:
            journeys = profile_journeys(conn, out["id"])
        out["journeys"] = journeys if history else [_journey_brief(j) for j in journeys]
        if history:
            out["merge_history"] = merge_history(engine, profile_id)
    except ProfileNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(orjson.dumps(out, default=str, option=orjson.OPT_INDENT_2).decode())


def _journey_brief(journey: dict[str, object]) -> dict[str, object]:
    keep = (
        "journey",
        "journey_id",
        "status",
        "outcome",
        "step",
        "next_step",
        "next_at",
        "entered_at",
        "finished_at",
    )
    return {k: journey[k] for k in keep}


from opencdp.cli.activation import (  # noqa: E402
    audiences_group,
    deliveries_group,
    destinations_group,
    forwarding_group,
)
from opencdp.cli.experiences import experiences_group  # noqa: E402
from opencdp.cli.journeys import journeys_group  # noqa: E402
from opencdp.cli.match_run import run_command as match_run_command  # noqa: E402
from opencdp.cli.matching import match_group  # noqa: E402
from opencdp.cli.predict import predict_group  # noqa: E402
from opencdp.cli.segments import segments_group, traits_group  # noqa: E402
from opencdp.imports.cli import import_command  # noqa: E402

main.add_command(segments_group)
main.add_command(predict_group)
match_group.add_command(match_run_command)
main.add_command(match_group)
main.add_command(destinations_group)
main.add_command(forwarding_group)
main.add_command(audiences_group)
main.add_command(deliveries_group)
main.add_command(journeys_group)
main.add_command(experiences_group)
main.add_command(traits_group)
main.add_command(import_command, "import")

from opencdp.cli.privacy import privacy_group  # noqa: E402

main.add_command(privacy_group)

from opencdp.cli.preferences import preferences_group, surveys_group  # noqa: E402

main.add_command(preferences_group)
main.add_command(surveys_group)

from opencdp.cli.audit import audit_command  # noqa: E402

main.add_command(audit_command)

from opencdp.ui.cli import users_group  # noqa: E402

main.add_command(users_group)

from opencdp.cli.status import status_command  # noqa: E402

main.add_command(status_command)

from opencdp.cli.unmerge import allow_command, rejections_command, unmerge_command  # noqa: E402

profiles_group.add_command(unmerge_command)
profiles_group.add_command(rejections_command)
profiles_group.add_command(allow_command)

from opencdp.cli.weather import weather_group  # noqa: E402

main.add_command(weather_group)

from opencdp.cli.uplift import reports_group, uplift_command  # noqa: E402

experiences_group.add_command(uplift_command)
main.add_command(reports_group)

from opencdp.cli.accounts import accounts_group  # noqa: E402

main.add_command(accounts_group)
