"""`opencdp audit`: who read, exported or changed what, from the terminal or as CSV."""

from __future__ import annotations

import sys

import click
import orjson

from opencdp.access import audit as audit_log
from opencdp.cli.common import _engine

SCREEN_LIMIT = 50


@click.command("audit")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help=f"How many of the newest entries [default: {SCREEN_LIMIT}; with --csv: all]",
)
@click.option("--action", default=None, help='Only this action (profile.lookup), or a prefix: "segment.*"')
@click.option("--actor", default=None, help='Only this actor: "key:3", "cli", "user:7"')
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default=None,
    help="Write CSV to this file ('-' for standard output) instead of a table",
)
def audit_command(limit: int | None, action: str | None, actor: str | None, csv_path: str | None) -> None:
    """Show the audit log, oldest first: reads of profiles, member lists and exports, and every
    change to keys, sources, segments, computed traits and imports. It holds ids, never personal data."""
    engine = _engine()
    if csv_path is None:
        for row in audit_log.latest(engine, limit or SCREEN_LIMIT, action, actor):
            target = f"{row['target_type']}:{row['target_id']}" if row["target_type"] else "-"
            detail = orjson.dumps(row["detail"], option=orjson.OPT_SORT_KEYS).decode()
            click.echo(
                f"{row['id']}\t{row['at'].isoformat()}\t{row['actor']}\t{row['action']}\t{target}\t{detail}"
            )
        return
    audit_log.record(engine, "cli", "audit.export", detail={"filters": _filters(action, actor)})
    if limit is None:
        lines = audit_log.export_csv(engine, action, actor)
    else:
        lines = audit_log.csv_rows(audit_log.latest(engine, limit, action, actor))
    if csv_path == "-":
        sys.stdout.writelines(lines)
        return
    count = -1  # the header line
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        for line in lines:
            handle.write(line)
            count += 1
    click.echo(f"wrote {count} audit entries to {csv_path}", err=True)


def _filters(action: str | None, actor: str | None) -> list[str]:
    return [name for name, value in (("action", action), ("actor", actor)) if value]
