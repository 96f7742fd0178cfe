"""Small server-rendered SVG charts: bars, stacked bars, lines and horizontal bars.

Rendered on the server so pages need no chart library and show at once; the SVG scales with its
container (viewBox). Every label goes through `escape` (event names and segment names are user
input); colours come from CSS classes `c0`…`c5`, so the CSS owns the palette and CSP needs no
inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from opencdp.ui.sql import short_day

#: The drawing size in SVG units. Wide charts are drawn about as wide as they are shown on a
#: laptop, so 11px text stays about 11px; `hbar_chart` takes its width for half-width panels.
WIDTH, HEIGHT = 1100, 250
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 30
PALETTE = 6


def nice_max(value: float) -> tuple[float, float]:
    """A round upper bound and tick step for an axis that must reach `value`."""
    if value <= 0:
        return 1.0, 0.25
    raw = value / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(value / step), step


def _fmt(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


@dataclass(frozen=True)
class ChartText:
    """How numbers, days and amounts read on a chart: plain English by default (CSV, scripts); the
    dashboard passes the viewer's language (`display.chart_text`)."""

    axis: Callable[[float], str] = _fmt  # short: "12k"
    number: Callable[[float], str] = lambda value: f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
    day: Callable[[str], str] = short_day  # "2026-11-05" → "Nov 5"
    money: Callable[[float], str] = lambda value: f"{value:,.2f}"
    percent: Callable[[float], str] = lambda share: f"{100 * share:.1f}%"  # 0.123 → "12.3%"


PLAIN = ChartText()


def _empty(message: str = "No data in this period") -> Markup:
    return Markup('<p class="chart-empty">{}</p>').format(message)


def _frame(inner: list[str], label: str, height: int = HEIGHT, width: int = WIDTH) -> str:
    return (
        f'<svg class="chart-svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">' + "".join(inner) + "</svg>"
    )


def _y_axis(top: float, step: float, plot_h: float, number: Callable[[float], str]) -> list[str]:
    parts = []
    ticks = round(top / step)
    for i in range(ticks + 1):
        value = step * i
        y = TOP + plot_h - plot_h * value / top
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{number(value)}</text>'
        )
    return parts


def _x_labels(labels: Sequence[str], centre: list[float]) -> list[str]:
    every = max(1, math.ceil(len(labels) / 14))
    base = TOP + (HEIGHT - TOP - BOTTOM) + 18
    return [
        f'<text class="tick" x="{x:.1f}" y="{base}" text-anchor="middle">{escape(label)}</text>'
        for i, (label, x) in enumerate(zip(labels, centre, strict=True))
        if i % every == 0
    ]


def _legend(names: Sequence[str]) -> str:
    items = "".join(
        f'<li><span class="swatch c{i % PALETTE}"></span>{escape(name)}</li>' for i, name in enumerate(names)
    )
    return f'<ul class="legend">{items}</ul>'


def bar_chart(
    labels: Sequence[str], values: Sequence[float], label: str, unit: str = "", text: ChartText = PLAIN
) -> Markup:
    """One bar per label (e.g. per day)."""
    return stacked_bar_chart(labels, {unit or "value": list(values)}, label, legend=False, text=text)


def stacked_bar_chart(
    labels: Sequence[str],
    series: dict[str, list[float]],
    label: str,
    legend: bool = True,
    text: ChartText = PLAIN,
) -> Markup:
    """Bars per label, one coloured part per series (e.g. events per day by source)."""
    if not labels or not any(v for values in series.values() for v in values):
        return _empty()
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top, step = nice_max(max(totals))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(labels)
    bar_w = max(1.0, slot * 0.72)
    parts = _y_axis(top, step, plot_h, text.axis)
    centres = []
    for i, day in enumerate(labels):
        x = LEFT + slot * i + (slot - bar_w) / 2
        centres.append(x + bar_w / 2)
        base = float(TOP + plot_h)
        for n, (name, values) in enumerate(series.items()):
            value = values[i]
            if not value:
                continue
            h = plot_h * value / top
            base -= h
            shown = text.number(value)
            tip = f"{day} · {name}: {shown}" if legend else f"{day}: {shown}"
            parts.append(
                f'<rect class="bar c{n % PALETTE}" x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}"><title>{escape(tip)}</title></rect>'
            )
    parts += _x_labels(labels, centres)
    html = _frame(parts, label) + (_legend(list(series)) if legend else "")
    return Markup(f'<figure class="chart">{html}</figure>')


def line_chart(
    labels: Sequence[str], series: dict[str, list[float]], label: str, text: ChartText = PLAIN
) -> Markup:
    """One line per series over the labels (e.g. segment sizes per day)."""
    if not labels or not series:
        return _empty()
    peak = max((v for values in series.values() for v in values), default=0)
    top, step = nice_max(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(labels) - 1)
    xs = [LEFT + slot * i for i in range(len(labels))] if len(labels) > 1 else [LEFT + plot_w / 2]
    parts = _y_axis(top, step, plot_h, text.axis)
    for n, (name, values) in enumerate(series.items()):
        points = [(x, TOP + plot_h - plot_h * v / top) for x, v in zip(xs, values, strict=True)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="line c{n % PALETTE}" points="{path}"/>')
        last_x, last_y = points[-1]
        tip = escape(f"{name}: {text.number(values[-1])} on {labels[-1]}")
        parts.append(
            f'<circle class="dot c{n % PALETTE}" cx="{last_x:.1f}" cy="{last_y:.1f}" r="3.5">'
            f"<title>{tip}</title></circle>"
        )
    parts += _x_labels(labels, xs)
    return Markup(f'<figure class="chart">{_frame(parts, label)}{_legend(list(series))}</figure>')


def hbar_chart(rows: Sequence[tuple[str, float, str]], label: str, width: int = WIDTH) -> Markup:
    """Horizontal bars: (label, value, shown text) per row (e.g. revenue or conversion by segment)."""
    if not rows or not any(value for _, value, _ in rows):
        return _empty()
    name_w, value_w, row_h = 170, 110, 30
    height = TOP + row_h * len(rows) + 6
    peak = max(value for _, value, _ in rows)
    plot_w = width - name_w - value_w - RIGHT
    parts = []
    for i, (name, value, shown) in enumerate(rows):
        y = TOP + row_h * i
        w = plot_w * value / peak if peak else 0
        short = name if len(name) <= 22 else name[:21] + "…"
        parts.append(
            f'<text class="tick name" x="{name_w - 10}" y="{y + 19}" text-anchor="end">'
            f"<title>{escape(name)}</title>{escape(short)}</text>"
        )
        parts.append(
            f'<rect class="bar c{i % PALETTE}" x="{name_w}" y="{y + 5}" width="{max(w, 1):.1f}" '
            f'height="{row_h - 10}"><title>{escape(name)}: {escape(shown)}</title></rect>'
        )
        parts.append(f'<text class="tick value" x="{name_w + w + 8:.1f}" y="{y + 19}">{escape(shown)}</text>')
    return Markup(f'<figure class="chart">{_frame(parts, label, height, width)}</figure>')


def share_bar(parts: Sequence[tuple[str, float]], label: str, text: ChartText = PLAIN) -> Markup:
    """A single 100% bar (e.g. identified vs anonymous profiles)."""
    total = sum(v for _, v in parts)
    if not total:
        return _empty("No profiles yet")
    x, out = 0.0, []
    for i, (name, value) in enumerate(parts):
        w = 100 * value / total
        out.append(
            f'<rect class="bar c{i % PALETTE}" x="{x:.2f}" y="0" width="{w:.2f}" height="10">'
            f"<title>{escape(name)}: {escape(text.number(value))} ({w:.0f}%)</title></rect>"
        )
        x += w
    svg = (
        f'<svg class="share-svg" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}">' + "".join(out) + "</svg>"
    )
    return Markup(f'<figure class="chart share">{svg}{_legend([n for n, _ in parts])}</figure>')
