"""`opencdp experiences uplift NAME` and `opencdp reports segment-performance` (issue 10).

The uplift command is attached to the `experiences` group (cli/experiences.py) in cli/__init__.py.
"""

from __future__ import annotations

import click
import orjson

from opencdp.cli.common import _engine


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _json(value: object) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@click.command("uplift")
@click.argument("name")
@click.option("--goal", default=None, help="Goal event [default: the experience's goal]")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Only exposures of the last N days",
)
@click.option(
    "--attribution-days",
    type=click.FloatRange(min=0, min_open=True),
    default=7.0,
    show_default=True,
    help="A goal counts this long after the first exposure",
)
@click.option("--segment", default=None, help="Only this segment in the breakdown")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON")
def uplift_command(
    name: str,
    goal: str | None,
    days: float | None,
    attribution_days: float,
    segment: str | None,
    as_json: bool,
) -> None:
    """Did the experience NAME work? Per variant: visitors who saw it (treated) against those held
    out, conversion to the goal with 95 % intervals, uplift, revenue per visitor; by segment."""
    from opencdp.personalise.uplift import UpliftError, uplift_report, uplift_table

    try:
        report = uplift_report(
            _engine(), name, goal=goal, days=days, attribution_days=attribution_days, segment=segment
        )
    except UpliftError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _json(report)
        return
    since = report["since"] or "-"
    click.echo(
        f"experience {report['experience']!r}: goal {report['goal']!r} within "
        f"{report['attribution_days']:g} days of the first exposure; {report['visitors']} profiles "
        f"exposed since {since}"
    )
    click.echo(_table(uplift_table(report)))
    for seg in report["segments"]:
        click.echo(f"\nsegment {seg['segment']!r} ({seg['visitors']} exposed)")
        click.echo(_table(uplift_table(seg)))
    click.echo(
        "\nuplift in percentage points with Newcombe's 95 % interval; revenue per visitor difference with "
        f"Welch's; small_sample: an arm has fewer than {report['min_visitors']} visitors; inconclusive: the "
        "interval includes 0"
    )


@click.command("segment-performance")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True)
@click.option(
    "--min-visitors",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="A cell needs this many visitors to be flagged low",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole view as JSON")
def segment_performance_command(days: float, min_visitors: int, as_json: bool) -> None:
    """Conversion by segment x product category: visitors who viewed a category's products, how many
    ordered it; cells converting significantly below the category (flagged LOW)."""
    from opencdp.personalise.segment_performance import segment_performance

    view = segment_performance(_engine(), days=days, min_visitors=min_visitors)
    if as_json:
        _json(view)
        return
    categories = view["categories"]

    def text(cell: dict[str, object] | None) -> str:
        if not cell:
            return "-"
        rate = cell["conversion_rate"]
        shown = "-" if rate is None else f"{100 * float(rate):.1f}% of {cell['visitors']}"  # type: ignore[arg-type]
        return f"{shown} LOW" if cell.get("low") else shown

    rows = [["segment", *categories]]
    rows.append(["(all viewers)", *[text(view["overall"].get(c)) for c in categories]])
    rows += [[s["segment"], *[text(s["cells"][c]) for c in categories]] for s in view["segments"]]
    click.echo(f"conversion by segment x category, {view['since'][:10]} to {view['until'][:10]}")
    click.echo(_table(rows))
    click.echo(
        f"{view['low_cells']} low cells (at least {min_visitors} visitors, 95 % upper bound below the "
        "category's rate)"
    )


@click.group("reports")
def reports_group() -> None:
    """Reports on the command line."""


reports_group.add_command(segment_performance_command)
