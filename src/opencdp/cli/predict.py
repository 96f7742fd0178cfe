"""`opencdp predict …`: fit, score and inspect prediction models (lifetime value, propensities,
channel preference, advocacy, interests from text)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import click
import orjson

from opencdp.cli.common import _engine

#: `fit --json` prints the parameters at the top level when they are this small (CLV's are a few
#: numbers; a gradient-boosting model's trees are not worth a terminal).
_PRINTED_PARAMS_BYTES = 64 * 1024


def _print(value: Any) -> None:
    click.echo(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())


def _when(value: str | None, name: str) -> datetime | None:
    """A date (that whole day, UTC) or an ISO time."""
    from opencdp.predict.runner import end_of_day

    if value is None:
        return None
    try:
        if len(value) == 10:
            return end_of_day(date.fromisoformat(value))
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD) or an ISO time", param_hint=name
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _options(pairs: tuple[str, ...], **named: Any) -> dict[str, Any]:
    """--option key=value (value parsed as JSON when it is JSON) plus the named options given."""
    out: dict[str, Any] = {k: v for k, v in named.items() if v is not None}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--option")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@click.group("predict")
def predict_group() -> None:
    """Predictions and scores written as predicted traits on profiles.

    \b
    Built-in models: clv (BG/NBD + Gamma-Gamma lifetime value, P(alive)), purchase and churn
    (gradient boosting with held-out quality), channels (preferred channel, ignored messages),
    advocacy (who shares and what it brings), interests (topics and sentiment from text).
    Custom goals: `opencdp predict define goal --event "Trial Started" --days 14`."""


def _progress(label: str, total: int | None) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    console = Console(stderr=True)
    return Progress(*columns, transient=True, console=console, disable=not console.is_terminal)


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


@predict_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def predict_list(as_json: bool) -> None:
    """The models, their status, quality and last scoring run."""
    from opencdp.predict import store
    from opencdp.predict.runner import ensure_builtin

    engine = _engine()
    ensure_builtin(engine)
    with engine.connect() as conn:
        records = store.all_models(conn)
    if as_json:
        _print([r.summary() for r in records])
        return
    for r in records:
        quality = r.quality.get("auc")
        head = f"{r.name:<28} {r.kind:<10} {r.status:<8} v{r.version}"
        tail = f" AUC {quality:.3f}" if isinstance(quality, float) else ""
        scored = f" scored {r.scored_count} at {r.scored_at:%Y-%m-%d %H:%M}" if r.scored_at else ""
        click.echo(head + tail + scored + (f"  ({r.reason})" if r.reason and r.status != "ready" else ""))


@predict_group.command("define")
@click.argument("kind", type=click.Choice(["goal"]))
@click.option("--event", required=True, help="The goal: the event the profile should do")
@click.option("--days", type=click.IntRange(1, 3650), required=True, help="…within this many days")
@click.option("--name", default=None, help="Model name [default: goal_<event>_<days>d]")
def predict_define(kind: str, event: str, days: int, name: str | None) -> None:
    """Define a custom goal model ("will do EVENT within DAYS days")."""
    from opencdp.predict.runner import define_goal

    try:
        record = define_goal(_engine(), event, days, name)
    except ValueError as error:
        raise _fail(error) from None
    click.echo(f"defined {record.name}: run `opencdp predict run {record.name}` to fit and score it")


@predict_group.command("fit")
@click.argument("name")
@click.option("--until", default=None, help="Use the log up to and including this date/time [default: now]")
@click.option("--unit", type=click.Choice(["days", "weeks"]), default=None, help="clv: time unit of the fit")
@click.option("--horizon-days", type=click.IntRange(1, 3650), default=None, help="Prediction horizon")
@click.option("--holdout-days", type=click.IntRange(1, 3650), default=None, help="clv: held-out period")
@click.option("--timezone", default=None, help="clv: calendar days in this time zone [default: UTC]")
@click.option("--option", "pairs", multiple=True, metavar="KEY=VALUE", help="Any other option of the job")
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON")
def predict_fit(
    name: str,
    until: str | None,
    unit: str | None,
    horizon_days: int | None,
    holdout_days: int | None,
    timezone: str | None,
    pairs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Fit model NAME (clv, purchase, churn, channels, advocacy, interests or a defined goal) on the
    log up to --until and store it as the model's next version. Does not score profiles."""
    from opencdp.predict import runner, store
    from opencdp.predict.model import TooThin

    options = _options(
        pairs, unit=unit, horizon_days=horizon_days, holdout_days=holdout_days, timezone=timezone
    )
    engine = _engine()
    try:
        with engine.connect() as conn:
            if name not in runner.BUILTIN and store.find_model(conn, name) is None:
                raise click.ClickException(
                    f"there is no model named {name!r}: one of {', '.join(runner.BUILTIN)}, or define a goal "
                    "with `opencdp predict define goal`"
                )
        record = runner.fit(engine, name, _when(until, "--until"), options)
    except TooThin as refusal:
        raise click.ClickException(f"{name}: not fitted: {refusal}") from None
    except (ValueError, LookupError) as error:
        raise _fail(error) from None
    if as_json:
        out = {k: v for k, v in record.summary().items() if k not in ("scored_at", "scored_count")}
        params = orjson.dumps(record.params)
        if len(params) <= _PRINTED_PARAMS_BYTES:
            out |= record.params
        out["features"] = record.features
        _print(out)
        return
    click.echo(f"{record.name} v{record.version} fitted on the log up to {record.window}")
    _echo_quality(record.quality)


def _echo_quality(quality: dict[str, Any]) -> None:
    """The held-out quality in lines: numbers as they are, nested groups (CLV's purchases and churn,
    a baseline) on one line each; the calibration bins and top features are on the model card."""
    for key, value in quality.items():
        if key in ("calibration", "top_features") or isinstance(value, list):
            continue
        if isinstance(value, dict):
            inner = ", ".join(f"{k} {_short(v)}" for k, v in value.items() if not isinstance(v, dict | list))
            click.echo(f"  {key}: {inner}")
        else:
            click.echo(f"  {key}: {_short(value)}")
    if "beats_baseline" in quality and isinstance(quality.get("baseline"), dict):
        verdict = "beats" if quality["beats_baseline"] else "does NOT beat"
        click.echo(f"  → {verdict} the {quality['baseline'].get('name')} baseline on held-out data")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@predict_group.command("score")
@click.argument("name")
@click.option("--at", default=None, help="Measure profiles as of this date/time [default: now]")
def predict_score(name: str, at: str | None) -> None:
    """Score every profile with model NAME's current fit and write its predicted traits."""
    from opencdp.predict import runner
    from opencdp.predict.model import TooThin
    from opencdp.process.schedule import live_profile_count

    engine = _engine()
    try:
        with _progress(f"scoring {name}", None) as progress:
            task = progress.add_task(name, total=live_profile_count(engine))
            n = runner.score(engine, name, _when(at, "--at"), lambda k: progress.advance(task, k))
        runner.refresh_memberships(engine)
    except TooThin as refusal:
        raise click.ClickException(str(refusal)) from None
    except LookupError as error:
        raise _fail(error) from None
    click.echo(f"{name}: scored {n} profiles")


@predict_group.command("run")
@click.argument("names", nargs=-1)
@click.option("--refit/--no-refit", default=True, help="Fit again before scoring [default: refit]")
def predict_run(names: tuple[str, ...], refit: bool) -> None:
    """Fit and score models NAMES (default: every model), then refresh segment memberships.
    A model the data cannot support is reported with the reason; the others go on."""
    from opencdp.predict import runner, store
    from opencdp.predict.model import TooThin
    from opencdp.process.schedule import live_profile_count

    engine = _engine()
    runner.ensure_builtin(engine)
    with engine.connect() as conn:
        known = {r.name: r for r in store.all_models(conn)}
    missing = [n for n in names if n not in known]
    if missing:
        raise click.ClickException(
            f"no model named {', '.join(map(repr, missing))} (see `opencdp predict list`)"
        )
    total = live_profile_count(engine)
    failures = 0
    for name in names or tuple(known):
        try:
            if refit or known[name].status != "ready":
                record = runner.fit(engine, name)
                click.echo(f"{name}: fitted v{record.version}")
            with _progress(f"scoring {name}", total) as progress:
                task = progress.add_task(name, total=total)
                n = runner.score(engine, name, None, lambda k, t=task, p=progress: p.advance(t, k))  # type: ignore[misc]
            click.echo(f"{name}: scored {n} profiles")
        except TooThin as refusal:
            click.echo(f"{name}: not fitted: {refusal}")
        except Exception as error:  # one model's failure does not stop the others
            failures += 1
            click.echo(f"{name}: failed: {type(error).__name__}: {error}", err=True)
    runner.refresh_memberships(engine)
    if failures:
        raise SystemExit(1)


@predict_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def predict_show(name: str, as_json: bool) -> None:
    """Model NAME's card: data window, features, held-out quality, when trained and scored."""
    from opencdp.predict import store

    with _engine().connect() as conn:
        try:
            record = store.get_model(conn, name)
        except LookupError as error:
            raise _fail(error) from None
    summary = record.summary() | {"features": record.features}
    if as_json:
        _print(summary)
        return
    click.echo(f"{record.name} ({record.kind}) v{record.version}, {record.status}")
    if record.reason:
        click.echo(f"  note: {record.reason}")
    click.echo(f"  trained at: {summary['trained_at']}  window: {record.window}")
    click.echo(f"  traits: {', '.join(record.traits)}")
    click.echo(f"  features: {', '.join(record.features[:20])}{' …' if len(record.features) > 20 else ''}")
    _echo_quality(record.quality)
    for f in record.quality.get("top_features", [])[:10]:
        click.echo(f"    {f.get('feature')}: {f.get('importance')}")


@predict_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
def predict_delete(name: str, yes: bool) -> None:
    """Delete model NAME and the predicted traits it wrote."""
    from opencdp.predict import store

    if not yes:
        click.confirm(f"Delete model {name!r} and its predicted traits on every profile?", abort=True)
    try:
        store.delete_model(_engine(), name)
    except LookupError as error:
        raise _fail(error) from None
    click.echo(f"deleted {name}")
