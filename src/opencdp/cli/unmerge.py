"""`opencdp profiles unmerge / rejections / allow`: undo a merge from the command line.

The rejection is stored, then this process runs processing itself until it is applied (a
running `serve` or `worker` may apply it first: processors take turns under one lock)."""

from __future__ import annotations

import time

import click
import orjson
import sqlalchemy as sa

from opencdp.cli.common import _engine
from opencdp.identity.identifiers import Identifier, IdentityRules


def _identifier(option: str, text: str | None) -> Identifier | None:
    if text is None:
        return None
    kind, sep, value = text.partition(":")
    if not sep or not kind or not value:
        raise click.UsageError(f"{option}: give TYPE:VALUE, e.g. email:ann@example.com")
    ident = IdentityRules.from_env().normalise(kind, value)
    if ident is None:
        raise click.ClickException(
            f"{option}: {kind} {value!r} is not a usable identifier (blocked or malformed)"
        )
    return ident


def _apply(engine: sa.Engine, rejection_id: int, timeout: float = 600.0) -> None:
    """Process until the rejection is applied (by this process or another processor)."""
    from opencdp.process.processor import Processor
    from opencdp.store.schema import identity_rejections

    processor = Processor(engine)
    deadline = time.monotonic() + timeout
    while True:
        processor.run_until_caught_up()
        with processor.engine.connect() as conn:
            applied = conn.execute(
                sa.select(identity_rejections.c.applied_at).where(identity_rejections.c.id == rejection_id)
            ).first()
        if applied is None or applied.applied_at is not None:
            return
        if time.monotonic() > deadline:
            raise click.ClickException(f"rejection {rejection_id} is stored but was not applied yet")
        time.sleep(0.1)


def _where_now(engine: sa.Engine, idents: list[Identifier]) -> list[str]:
    """Each identifier with the profile that holds it now."""
    from opencdp.profiles.unmerge import profile_ids_of

    with engine.connect() as conn:
        return [f"{i} → {(profile_ids_of(conn, [i]) or ['(none)'])[0]}" for i in idents]


@click.command("unmerge")
@click.argument("profile_id")
@click.option(
    "--link", "link_id", type=click.IntRange(1), default=None, help="A link id from `profiles get --history`"
)
@click.option("--left", default=None, help="Or two identifiers of the profile: TYPE:VALUE …")
@click.option("--right", default=None, help="… and TYPE:VALUE")
@click.option("--reason", default=None, help="Why (shown in the merge history)")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
def unmerge_command(
    profile_id: str, link_id: int | None, left: str | None, right: str | None, reason: str | None, yes: bool
) -> None:
    """Undo a merge: two identifiers of PROFILE_ID are not one person. The profile is resolved
    again as if no event had joined them (and no later event will); prints the profiles after."""
    from opencdp.access.audit import record
    from opencdp.profiles.reader import ProfileNotFound
    from opencdp.profiles.unmerge import UnmergeError, reject

    if (link_id is None) == (left is None and right is None):
        raise click.UsageError("give --link LINK_ID, or --left TYPE:VALUE and --right TYPE:VALUE")
    if link_id is None and (left is None or right is None):
        raise click.UsageError("give both --left and --right")
    left_id, right_id = _identifier("--left", left), _identifier("--right", right)
    engine = _engine()
    if not yes:
        what = f"link {link_id}" if link_id is not None else f"{left_id} and {right_id}"
        click.confirm(f"Split {what} of profile {profile_id} (they are not one person)?", abort=True)
    try:
        out = reject(
            engine,
            profile_id,
            link_id=link_id,
            left=left_id,
            right=right_id,
            reason=reason,
            created_by="cli",
        )
    except ProfileNotFound as exc:
        raise click.ClickException(str(exc)) from None
    except UnmergeError as exc:
        raise click.ClickException(str(exc)) from None
    record(engine, "cli", "identity.unmerge", "profile", out["profile_id"], {"rejection": out["id"]})
    _apply(engine, out["id"])
    pair = [Identifier(out[s]["type"], out[s]["value"]) for s in ("left", "right")]
    state = "rejected" if out["created"] else "already rejected"
    click.echo(f"rejection {out['id']} ({state}, applied): " + "; ".join(_where_now(engine, pair)))


@click.command("rejections")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
def rejections_command(as_json: bool) -> None:
    """List the rejected pairs (undone merges), newest first."""
    from opencdp.access.audit import record
    from opencdp.profiles.unmerge import list_rejections

    engine = _engine()
    with engine.connect() as conn:
        rows = list_rejections(conn)
    record(engine, "cli", "identity.rejections", detail={"count": len(rows)})
    if not rows:
        if not as_json:
            click.echo("no rejections")
        return
    for row in rows:
        if as_json:
            click.echo(orjson.dumps(row, default=str).decode())
            continue
        pair = (
            f"{row['left']['type']}:{row['left']['value']} ≠ {row['right']['type']}:{row['right']['value']}"
        )
        when = row["created_at"].strftime("%Y-%m-%d %H:%M")
        state = "applied" if row["applied_at"] else "waiting"
        reason = f": {row['reason']}" if row["reason"] else ""
        click.echo(f"{row['id']}  {pair}  by {row['created_by'] or '?'} on {when} ({state}){reason}")


@click.command("allow")
@click.argument("rejection_id", type=click.IntRange(1))
def allow_command(rejection_id: int) -> None:
    """Allow a rejected pair again: delete the rejection and resolve the profiles without it."""
    from opencdp.access.audit import record
    from opencdp.process.processor import Processor
    from opencdp.profiles.unmerge import get_rejection

    engine = _engine()
    with engine.connect() as conn:
        found = get_rejection(conn, rejection_id)
    if found is None or Processor(engine).allow_again(rejection_id) is None:
        raise click.ClickException(f"no rejection {rejection_id} (see `opencdp profiles rejections`)")
    record(engine, "cli", "identity.unmerge_undo", "rejection", str(rejection_id))
    Processor(engine).refresh_all_queued()
    pair = [Identifier(found[s]["type"], found[s]["value"]) for s in ("left", "right")]
    click.echo(f"rejection {rejection_id} withdrawn: " + "; ".join(_where_now(engine, pair)))
