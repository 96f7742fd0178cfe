"""Dashboard pages of issue 10's reports: an experience's uplift (per variant the two arms, the
uplift with its 95 % interval drawn as a bar with whiskers, flags, the segment breakdown) and
segment performance (segment x product category, low cells highlighted). Server-rendered SVG, no
script."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from markupsafe import Markup

from opencdp.personalise.segment_performance import DEFAULT_DAYS, DEFAULT_MIN_VISITORS, segment_performance
from opencdp.personalise.uplift import DEFAULT_ATTRIBUTION_DAYS, UpliftError, uplift_report
from opencdp.store.schema import experiences
from opencdp.ui.web import BadRequest, NotFound, SignedIn, UIRoute, engine_of, render

router = APIRouter(route_class=UIRoute, include_in_schema=False)

FLAG_WORDS = {
    "small_sample": "small sample",
    "inconclusive": "inconclusive",
    "no_holdout": "no holdout",
}
_W, _H, _PAD = 240, 22, 6


def experience_names(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(experiences.c.name).order_by(experiences.c.name)).scalars())


def _number(text: str | None, name: str, low: float, high: float) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name}: give a number") from None
    if not low < value <= high:
        raise BadRequest(f"{name}: give a number above {low:g} and at most {high:g}")
    return value


def whisker(uplift: dict[str, Any] | None, scale: float) -> Markup:
    """The absolute uplift as a bar from 0 with the 95 % interval as whiskers, on ±scale."""
    if not uplift or uplift.get("low") is None:
        return Markup("")

    def x(value: float) -> float:
        return round(_PAD + (value + scale) / (2 * scale) * (_W - 2 * _PAD), 2)

    est, low, high = float(uplift["absolute"]), float(uplift["low"]), float(uplift["high"])
    kind = "up" if low > 0 else "down" if high < 0 else "unsure"
    zero, left, right = x(0), x(min(est, 0.0)), x(max(est, 0.0))
    mid = _H / 2
    title = f"uplift {100 * est:+.1f} points, 95 % interval {100 * low:+.1f} to {100 * high:+.1f}"
    return Markup(
        '<svg class="whisker-svg" viewBox="0 0 {w} {h}" role="img" aria-label="{t}"><title>{t}</title>'
        '<line class="axis" x1="{z}" x2="{z}" y1="0" y2="{h}"/>'
        '<rect class="bar {k}" x="{l}" y="{bt}" width="{bw}" height="{bh}"/>'
        '<line class="ci" x1="{lo}" x2="{hi}" y1="{m}" y2="{m}"/>'
        '<line class="ci" x1="{lo}" x2="{lo}" y1="{ct}" y2="{cb}"/>'
        '<line class="ci" x1="{hi}" x2="{hi}" y1="{ct}" y2="{cb}"/></svg>'
    ).format(
        w=_W,
        h=_H,
        t=title,
        z=zero,
        k=kind,
        l=left,
        bt=mid - 5,
        bw=max(round(right - left, 2), 0.5),
        bh=10,
        lo=x(low),
        hi=x(high),
        m=mid,
        ct=mid - 7,
        cb=mid + 7,
    )


def _scale(rows: list[dict[str, Any]]) -> float:
    ends = [abs(float(r["uplift"][k])) for r in rows if r.get("uplift") for k in ("low", "high")]
    return max([*ends, 0.01]) * 1.1


@router.get("/experiences/{name}/uplift")
def uplift_page(
    request: Request,
    session: SignedIn,
    name: str,
    goal: str | None = None,
    days: str | None = None,
    attribution_days: str | None = None,
    segment: str | None = None,
) -> Response:
    engine = engine_of(request)
    parsed_days = _number(days, "days", 0, 3650)
    attribution = _number(attribution_days, "attribution days", 0, 365) or DEFAULT_ATTRIBUTION_DAYS
    try:
        report = uplift_report(
            engine,
            name,
            goal=goal or None,
            days=parsed_days,
            attribution_days=attribution,
            segment=segment or None,
        )
    except UpliftError as exc:
        raise NotFound(str(exc)) from None
    rows = report["variants"] + [r for s in report["segments"] for r in s["variants"]]
    scale = _scale(rows)
    return render(
        request,
        "uplift.html",
        {
            "nav": "experiences",
            "report": report,
            "whisker": lambda row: whisker(row.get("uplift"), scale),
            "scale": scale,
            "flag_words": FLAG_WORDS,
            "form": {
                "goal": goal or "",
                "days": days or "",
                "attribution_days": attribution_days or "",
                "segment": segment or "",
            },
        },
    )


@router.get("/reports/segment-performance")
def segment_performance_page(
    request: Request, session: SignedIn, days: str | None = None, min_visitors: str | None = None
) -> Response:
    engine = engine_of(request)
    window = _number(days, "days", 0, 3650) or DEFAULT_DAYS
    least = _number(min_visitors, "min visitors", 0, 1_000_000)
    view = segment_performance(engine, days=window, min_visitors=int(least or DEFAULT_MIN_VISITORS))
    return render(
        request,
        "segment_performance.html",
        {"nav": "reports", "view": view, "form": {"days": days or "", "min_visitors": min_visitors or ""}},
    )
