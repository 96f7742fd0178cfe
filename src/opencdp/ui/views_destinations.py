"""Destinations: the list with health and delivery counts, create and edit (the secret is never
shown again), enable/disable, a test message, delete; per destination its forwarding rules and
audience syncs; and the deliveries page (dead letters by default) with replay.

Everything goes through `opencdp.activation` like the CLI (`opencdp destinations …`), and every
change is written to the audit log in the same transaction, with the signed-in user as actor.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Form, Query, Request, Response

from opencdp.access import audit
from opencdp.activation import outbox
from opencdp.activation.audiences import create_sync, delete_sync, list_syncs
from opencdp.activation.destinations import (
    DEFAULT_MAX_RETRY_SECONDS,
    DestinationError,
    DestinationSpec,
    create,
    delete,
    get_row,
    list_views,
    make_driver,
    status_counts,
    update,
    view,
)
from opencdp.activation.drivers import KINDS, Outcome
from opencdp.activation.forwarding import create_rule, delete_rule, list_rules
from opencdp.activation.secrets import SecretMissing
from opencdp.cli.activation import sample_message
from opencdp.privacy.consent import list_purposes
from opencdp.segments import store
from opencdp.store.schema import destinations
from opencdp.ui.sessions import Session
from opencdp.ui.web import BadRequest, Editor, NotFound, SignedIn, UIRoute, engine_of, redirect, render

router = APIRouter(route_class=UIRoute, include_in_schema=False)
DONE = {
    "saved": "Destination saved.",
    "deleted": "Destination deleted, with its forwarding rules, audience syncs and deliveries.",
    "enabled": "Destination enabled: its deliveries are sent.",
    "disabled": "Destination disabled: its deliveries wait until it is enabled again.",
    "rule_added": "Forwarding rule added: events collected from now on that match it are sent.",
    "rule_removed": "Forwarding rule removed.",
    "sync_added": "Audience sync started: the segment's current members are queued.",
    "sync_removed": "Audience sync removed (the destination keeps the members it has).",
}
#: a starting point per kind, shown beside the configuration field
EXAMPLES: dict[str, dict[str, Any]] = {
    "webhook": {
        "url": "https://hooks.example.com/opencdp",
        "method": "POST",
        "headers": {"X-Source": "opencdp"},
        "timeout_seconds": 10,
    },
    "smtp": {
        "host": "smtp.example.com",
        "security": "starttls",
        "username": "mailer",
        "from_address": "orders@shop.example",
        "from_name": "The Shop",
        "subject": "Thanks for your order, {{ profile.traits.first_name | default('there') }}",
        "text": "Hi {{ profile.traits.first_name }},\n\nyour order is on its way.",
    },
    "nats": {"servers": ["nats://nats.internal:4222"], "subject": "cdp.events", "user": "opencdp"},
    "rabbitmq": {"url": "amqp://opencdp@rabbit.internal:5672/", "exchange": "cdp", "routing_key": "events"},
    "file": {
        "folder": "/srv/exports/crm",
        "format": "csv",
        "file_name": "vip-{{ now.strftime('%Y-%m-%d') }}.csv",
        "every_seconds": 86400,
    },
}
SECRET_HINT = {
    "webhook": "signing key: requests carry X-OpenCDP-Signature",
    "smtp": "the SMTP password",
    "nats": "token or password",
    "rabbitmq": "password",
    "file": "not used",
}
STATUS_FILTERS = (outbox.DEAD, outbox.PENDING, outbox.SENDING, outbox.DELIVERED, outbox.SKIPPED)
PAGE = 100
TEST_TIMEOUT_SECONDS = 60.0


def _replayed(n: int) -> str:
    return f"{n:,} dead letter{'' if n == 1 else 's'} queued again."


def _actor(session: Session) -> str:
    return f"user:{session.user.id}"


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _row(conn: sa.Connection, destination_id: int) -> sa.Row[Any]:
    try:
        return get_row(conn, destination_id)
    except DestinationError:
        raise NotFound("There is no destination with this id (it may have been deleted).") from None


# --- The list ---------------------------------------------------------------------------------


@router.get("/destinations")
def list_destinations(request: Request, session: SignedIn, done: str = "") -> Response:
    with engine_of(request).connect() as conn:
        views = list_views(conn)
    dead = sum(v["deliveries"].get(outbox.DEAD, 0) for v in views)
    return render(
        request,
        "destinations.html",
        {"nav": "destinations", "destinations": views, "dead": dead, "done": DONE.get(done, "")},
    )


# --- Create and edit --------------------------------------------------------------------------


def _form(
    request: Request,
    destination: dict[str, Any] | None,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "destination_form.html",
        {
            "nav": "destinations",
            "destination": destination,
            "values": values,
            "errors": errors or {},
            "config_errors": sorted((f, m) for f, m in (errors or {}).items() if f.split(".")[0] == "config"),
            "kinds": list(KINDS),
            "examples": {kind: _pretty(example) for kind, example in EXAMPLES.items()},
            "secret_hints": SECRET_HINT,
            "purposes": list_purposes(engine_of(request)),
        },
        status,
    )


def _values_of(destination: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": destination["name"],
        "kind": destination["kind"],
        "config": _pretty(destination["config"]),
        "purpose": destination["purpose"] or "",
        "rate_per_second": ""
        if destination["rate_per_second"] is None
        else f"{destination['rate_per_second']:g}",
        "max_retry_seconds": str(destination["max_retry_seconds"]),
        "enabled": destination["enabled"],
    }


def _spec(values: dict[str, Any], secret: str | None) -> DestinationSpec:
    """The form as a spec; raises DestinationError naming the field that cannot be read."""
    try:
        config = orjson.loads(values["config"] or "{}")
    except orjson.JSONDecodeError as exc:
        raise DestinationError("config", f"not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise DestinationError("config", 'must be a JSON object, {"…": …}')
    rate_text = values["rate_per_second"].strip()
    try:
        rate = float(rate_text) if rate_text else None
    except ValueError:
        raise DestinationError("rate_per_second", "a number of deliveries per second, or empty") from None
    try:
        retry = int(values["max_retry_seconds"].strip() or DEFAULT_MAX_RETRY_SECONDS)
    except ValueError:
        raise DestinationError("max_retry_seconds", "a whole number of seconds") from None
    return DestinationSpec(
        name=values["name"],
        kind=values["kind"],
        config=config,
        secret=secret,
        purpose=values["purpose"] or None,
        enabled=bool(values["enabled"]),
        rate_per_second=rate,
        max_retry_seconds=retry,
    )


def _kind_problem(kind: str, exc: ImportError) -> dict[str, str]:
    return {"kind": f"the {kind} driver is not available in this installation ({exc})"}


@router.get("/destinations/new")
def new_destination(request: Request, session: SignedIn, kind: str = "webhook") -> Response:
    kind = kind if kind in KINDS else "webhook"
    values = {
        "name": "",
        "kind": kind,
        "config": _pretty(EXAMPLES[kind]),
        "purpose": "",
        "rate_per_second": "",
        "max_retry_seconds": str(DEFAULT_MAX_RETRY_SECONDS),
        "enabled": True,
    }
    return _form(request, None, values)


@router.post("/destinations")
def create_destination(
    request: Request,
    session: Editor,
    name: Annotated[str, Form(max_length=400)] = "",
    kind: Annotated[str, Form(max_length=40)] = "",
    config: Annotated[str, Form(max_length=200_000)] = "",
    secret: Annotated[str, Form(max_length=4000)] = "",
    purpose: Annotated[str, Form(max_length=200)] = "",
    rate_per_second: Annotated[str, Form(max_length=40)] = "",
    max_retry_seconds: Annotated[str, Form(max_length=40)] = "",
    enabled: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    values = {
        "name": name,
        "kind": kind,
        "config": config,
        "purpose": purpose,
        "rate_per_second": rate_per_second,
        "max_retry_seconds": max_retry_seconds,
        "enabled": bool(enabled),
    }
    engine = engine_of(request)
    try:
        with engine.begin() as conn:
            new_id = create(conn, request.app.state.cdp.settings, _spec(values, secret or None))
            detail = {"name": name.strip(), "kind": kind}
            audit.record(conn, _actor(session), "destination.create", "destination", str(new_id), detail)
    except DestinationError as exc:
        return _form(
            request, None, values, {exc.field: exc.message}, 400 if exc.status == 422 else exc.status
        )
    except ImportError as exc:
        return _form(request, None, values, _kind_problem(kind, exc), 400)
    return redirect(f"/destinations/{new_id}?done=saved")


@router.get("/destinations/{destination_id}/edit")
def edit_destination(request: Request, session: SignedIn, destination_id: int) -> Response:
    with engine_of(request).connect() as conn:
        current = view(_row(conn, destination_id))
    return _form(request, current, _values_of(current))


@router.post("/destinations/{destination_id}")
def update_destination(
    request: Request,
    session: Editor,
    destination_id: int,
    name: Annotated[str, Form(max_length=400)] = "",
    config: Annotated[str, Form(max_length=200_000)] = "",
    secret: Annotated[str, Form(max_length=4000)] = "",
    clear_secret: Annotated[str, Form(max_length=10)] = "",
    purpose: Annotated[str, Form(max_length=200)] = "",
    rate_per_second: Annotated[str, Form(max_length=40)] = "",
    max_retry_seconds: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    engine = engine_of(request)
    with engine.connect() as conn:
        current = view(_row(conn, destination_id))
    values = {
        "name": name,
        "kind": current["kind"],
        "config": config,
        "purpose": purpose,
        "rate_per_second": rate_per_second,
        "max_retry_seconds": max_retry_seconds,
        "enabled": current["enabled"],
    }
    # an empty field keeps the stored secret; "remove" stores none
    new_secret = secret if secret else ("" if clear_secret else None)
    try:
        with engine.begin() as conn:
            update(conn, request.app.state.cdp.settings, destination_id, _spec(values, new_secret))
            detail = {"name": name.strip(), "secret": "changed" if new_secret is not None else "kept"}
            audit.record(
                conn, _actor(session), "destination.update", "destination", str(destination_id), detail
            )
    except DestinationError as exc:
        return _form(
            request, current, values, {exc.field: exc.message}, 400 if exc.status == 422 else exc.status
        )
    except ImportError as exc:
        return _form(request, current, values, _kind_problem(current["kind"], exc), 400)
    return redirect(f"/destinations/{destination_id}?done=saved")


@router.post("/destinations/{destination_id}/delete")
def delete_destination(request: Request, session: Editor, destination_id: int) -> Response:
    with engine_of(request).begin() as conn:
        _row(conn, destination_id)
        counts = delete(conn, destination_id)
        audit.record(conn, _actor(session), "destination.delete", "destination", str(destination_id), counts)
    return redirect("/destinations?done=deleted")


def _switch(request: Request, session: Session, destination_id: int, enabled: bool) -> Response:
    action = "enable" if enabled else "disable"
    with engine_of(request).begin() as conn:
        _row(conn, destination_id)
        # only the switch: the circuit and the rest of the definition stay as they are
        conn.execute(destinations.update().where(destinations.c.id == destination_id).values(enabled=enabled))
        audit.record(conn, _actor(session), f"destination.{action}", "destination", str(destination_id))
    return redirect(f"/destinations/{destination_id}?done={action}d")


@router.post("/destinations/{destination_id}/enable")
def enable_destination(request: Request, session: Editor, destination_id: int) -> Response:
    return _switch(request, session, destination_id, True)


@router.post("/destinations/{destination_id}/disable")
def disable_destination(request: Request, session: Editor, destination_id: int) -> Response:
    return _switch(request, session, destination_id, False)


# --- One destination --------------------------------------------------------------------------


def _detail(
    request: Request,
    destination_id: int,
    done: str = "",
    test: Outcome | None = None,
    rule_values: dict[str, str] | None = None,
    rule_errors: dict[str, str] | None = None,
    sync_error: str = "",
    status: int = 200,
) -> Response:
    engine = engine_of(request)
    with engine.connect() as conn:
        row = _row(conn, destination_id)
        shown = view(row, status_counts(conn).get(destination_id, {}))
        rules = [r for r in list_rules(conn) if r["destination_id"] == destination_id]
        syncs = [s for s in list_syncs(conn) if s["destination_id"] == destination_id]
    synced = {s["segment"] for s in syncs}
    return render(
        request,
        "destination.html",
        {
            "nav": "destinations",
            "d": shown,
            "config_json": _pretty(shown["config"]),
            "rules": [{**r, "filter_json": orjson.dumps(r["filter"]).decode()} for r in rules],
            "syncs": syncs,
            "segments": [s.name for s in store.list_all(engine) if s.name not in synced],
            "done": done,
            "test": test,
            "rule_values": rule_values or {"name": "", "filter": ""},
            "rule_errors": rule_errors or {},
            "sync_error": sync_error,
        },
        status,
    )


@router.get("/destinations/{destination_id}")
def show_destination(
    request: Request,
    session: SignedIn,
    destination_id: int,
    done: str = "",
    replayed: Annotated[int | None, Query()] = None,
) -> Response:
    message = DONE.get(done, "")
    if replayed is not None:
        message = _replayed(replayed)
    return _detail(request, destination_id, message)


async def _send_test(driver: Any, message: Any) -> Outcome:
    try:
        outcomes = await asyncio.wait_for(driver.send([message]), TEST_TIMEOUT_SECONDS)
        return outcomes[0] if outcomes else Outcome.fail("the driver gave no outcome")
    except TimeoutError:
        return Outcome.again(f"no answer within {TEST_TIMEOUT_SECONDS:.0f} seconds")
    except Exception as exc:  # a driver must not raise; if one does, say what it was
        return Outcome.again(f"{type(exc).__name__}: {exc}")
    finally:
        await driver.close()


@router.post("/destinations/{destination_id}/test")
def test_destination(request: Request, session: Editor, destination_id: int) -> Response:
    """Send one sample message now, like `opencdp destinations test` (not recorded as a delivery).
    A sync view, so FastAPI runs it in a worker thread where it may start its own event loop."""
    engine = engine_of(request)
    with engine.connect() as conn:
        row = _row(conn, destination_id)
    try:
        driver = make_driver(request.app.state.cdp.settings, row)
    except SecretMissing as exc:
        outcome = Outcome.fail(str(exc))
    except ImportError as exc:
        outcome = Outcome.fail(f"the {row.kind} driver is not available in this installation ({exc})")
    else:
        outcome = asyncio.run(_send_test(driver, sample_message(row.id, row.name)))
    detail = {"status": outcome.status, "error": (outcome.error or "")[:500]}
    audit.record(engine, _actor(session), "destination.test", "destination", str(destination_id), detail)
    return _detail(request, destination_id, test=outcome)


# --- Forwarding rules and audience syncs ----------------------------------------------------


@router.post("/destinations/{destination_id}/rules")
def add_rule(
    request: Request,
    session: Editor,
    destination_id: int,
    name: Annotated[str, Form(max_length=400)] = "",
    filter: Annotated[str, Form(max_length=100_000)] = "",
) -> Response:
    engine = engine_of(request)
    values = {"name": name, "filter": filter}
    try:
        try:
            document = orjson.loads(filter) if filter.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise DestinationError("filter", f"not valid JSON ({exc})") from None
        with engine.begin() as conn:
            _row(conn, destination_id)
            rule_id = create_rule(conn, name, destination_id, document)
            detail = {"name": name.strip(), "destination": destination_id}
            audit.record(conn, _actor(session), "forwarding.create", "forwarding_rule", str(rule_id), detail)
    except DestinationError as exc:
        status = 400 if exc.status == 422 else exc.status
        return _detail(
            request, destination_id, rule_values=values, rule_errors={exc.field: exc.message}, status=status
        )
    return redirect(f"/destinations/{destination_id}?done=rule_added#rules")


@router.post("/destinations/{destination_id}/rules/{rule_id}/delete")
def remove_rule(request: Request, session: Editor, destination_id: int, rule_id: int) -> Response:
    engine = engine_of(request)
    with engine.begin() as conn:
        if not any(r["id"] == rule_id and r["destination_id"] == destination_id for r in list_rules(conn)):
            raise NotFound("This destination has no such forwarding rule (it may have been removed).")
        delete_rule(conn, rule_id)
        audit.record(conn, _actor(session), "forwarding.delete", "forwarding_rule", str(rule_id))
    return redirect(f"/destinations/{destination_id}?done=rule_removed#rules")


@router.post("/destinations/{destination_id}/syncs")
def add_sync(
    request: Request,
    session: Editor,
    destination_id: int,
    segment: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    engine = engine_of(request)
    try:
        if not segment:
            raise DestinationError("segment", "choose a saved segment")
        with engine.begin() as conn:
            _row(conn, destination_id)
            sync_id, members = create_sync(conn, segment, destination_id)
            detail = {"segment": segment, "destination": destination_id, "backfill": members}
            audit.record(conn, _actor(session), "audience.sync", "audience_sync", str(sync_id), detail)
    except DestinationError as exc:
        status = 400 if exc.status in (404, 422) else exc.status
        return _detail(request, destination_id, sync_error=exc.message, status=status)
    return redirect(f"/destinations/{destination_id}?done=sync_added#syncs")


@router.post("/destinations/{destination_id}/syncs/{sync_id}/delete")
def remove_sync(request: Request, session: Editor, destination_id: int, sync_id: int) -> Response:
    engine = engine_of(request)
    with engine.begin() as conn:
        if not any(s["id"] == sync_id and s["destination_id"] == destination_id for s in list_syncs(conn)):
            raise NotFound("This destination has no such audience sync (it may have been removed).")
        delete_sync(conn, sync_id)
        audit.record(conn, _actor(session), "audience.unsync", "audience_sync", str(sync_id))
    return redirect(f"/destinations/{destination_id}?done=sync_removed#syncs")


# --- Deliveries and dead letters --------------------------------------------------------------


@router.get("/deliveries")
def list_deliveries(
    request: Request,
    session: SignedIn,
    status: str = outbox.DEAD,
    destination_text: Annotated[str, Query(alias="destination", max_length=20)] = "",
    before: Annotated[int | None, Query()] = None,
    replayed: Annotated[int | None, Query()] = None,
) -> Response:
    if status not in STATUS_FILTERS:
        raise BadRequest(f"Show deliveries by status: {', '.join(STATUS_FILTERS)}.")
    if destination_text and not destination_text.isdigit():
        raise BadRequest("Choose a destination from the list.")
    # the filter form sends an empty value for "every destination"
    destination = int(destination_text) if destination_text else None
    with engine_of(request).connect() as conn:
        names = {
            r.id: (r.name, r.kind)
            for r in conn.execute(sa.select(destinations.c.id, destinations.c.name, destinations.c.kind))
        }
        if destination is not None and destination not in names:
            raise NotFound("There is no destination with this id (it may have been deleted).")
        rows = outbox.find(conn, status, destination, PAGE + 1, before)
        counts = status_counts(conn)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    totals = {
        s: sum(c.get(s, 0) for d, c in counts.items() if destination in (None, d)) for s in STATUS_FILTERS
    }
    return render(
        request,
        "deliveries.html",
        {
            "nav": "destinations",
            "status": status,
            "statuses": STATUS_FILTERS,
            "totals": totals,
            "destination": destination,
            "names": names,
            "rows": rows,
            "older": rows[-1]["id"] if more else None,
            "done": _replayed(replayed) if replayed is not None else "",
        },
    )


@router.post("/deliveries/replay")
def replay_deliveries(
    request: Request,
    session: Editor,
    delivery: Annotated[int | None, Form()] = None,
    destination: Annotated[int | None, Form()] = None,
    back: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """One dead letter (`delivery`), or all of a destination (`destination` alone)."""
    if delivery is None and destination is None:
        raise BadRequest("Choose a dead letter, or a destination to replay all of its dead letters.")
    engine = engine_of(request)
    with engine.begin() as conn:
        if destination is not None:
            _row(conn, destination)
        n = outbox.replay(conn, [delivery] if delivery is not None else None, destination)
        detail = {"deliveries": n, **({"delivery": delivery} if delivery is not None else {})}
        audit.record(
            conn, _actor(session), "deliveries.replay", "destination", str(destination or ""), detail
        )
    if back == "destination" and destination is not None:
        return redirect(f"/destinations/{destination}?replayed={n}")
    target = f"/deliveries?replayed={n}" + (f"&destination={destination}" if destination is not None else "")
    return redirect(target)
