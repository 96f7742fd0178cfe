"""Prediction models in the dashboard: the list, and a model card per model (data window,
features, held-out quality with a calibration plot, top features, when trained and scored), with
a button to fit and score again (runs in the background; the page shows its state)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from opencdp.predict import store
from opencdp.predict.describe import TRAIT_DESCRIPTIONS
from opencdp.predict.runner import BUILTIN, ensure_builtin, run_in_background, running
from opencdp.ui import charts
from opencdp.ui.display import chart_text, viewer_of
from opencdp.ui.web import Editor, NotFound, SignedIn, UIRoute, engine_of, redirect, render, ui_settings

router = APIRouter(route_class=UIRoute, include_in_schema=False)

KIND_WORDS = {
    "clv": "Lifetime value (BG/NBD + Gamma-Gamma)",
    "purchase": "Likelihood to purchase",
    "churn": "Likelihood to churn",
    "goal": "Custom goal",
    "channels": "Channel preference",
    "advocacy": "Advocacy",
    "interests": "Interests and sentiment from text",
}


@router.get("/predictions")
def list_models(request: Request, session: SignedIn, done: str = "") -> Response:
    engine = engine_of(request)
    ensure_builtin(engine)
    with engine.connect() as conn:
        records = store.all_models(conn)
    return render(
        request,
        "predictions.html",
        {
            "nav": "predictions",
            "models": records,
            "kinds": KIND_WORDS,
            "running": running(),
            "done": done,
        },
    )


def _calibration(quality: dict[str, Any], request: Request) -> Any:
    bins = [b for b in quality.get("calibration", []) if b.get("n")]
    if not bins:
        return None
    labels = [f"{100 * b['predicted']:.0f}%" for b in bins]
    series = {
        "observed rate": [float(b["observed"]) for b in bins],
        "predicted (perfect calibration)": [float(b["predicted"]) for b in bins],
    }
    text = chart_text(viewer_of(request, ui_settings()))
    return charts.line_chart(
        labels, series, "Calibration: observed rate per bin of predicted probability", text
    )


def _features(quality: dict[str, Any]) -> Any:
    rows = [
        (str(f["feature"]), max(float(f["importance"]), 0.0), f"{float(f['importance']):.4f}")
        for f in quality.get("top_features", [])[:10]
    ]
    return charts.hbar_chart(rows, "Top contributing features") if rows else None


@router.get("/predictions/{name}")
def model_card(request: Request, session: SignedIn, name: str) -> Response:
    with engine_of(request).connect() as conn:
        record = store.find_model(conn, name)
    if record is None:
        raise NotFound(f"There is no prediction model named {name!r}.")
    quality = record.quality
    scalars = {k: v for k, v in quality.items() if isinstance(v, int | float | str | bool) or v is None}
    nested = {k: v for k, v in quality.items() if isinstance(v, dict)}
    return render(
        request,
        "prediction.html",
        {
            "nav": "predictions",
            "m": record,
            "kind": KIND_WORDS.get(record.kind, record.kind),
            "scalars": scalars,
            "nested": nested,
            "calibration": _calibration(quality, request),
            "features_chart": _features(quality),
            "descriptions": TRAIT_DESCRIPTIONS,
            "running": name in running(),
            "builtin": name in BUILTIN,
        },
    )


@router.post("/predictions/{name}/run")
def run_model(request: Request, session: Editor, name: str) -> Response:
    engine = engine_of(request)
    with engine.connect() as conn:
        if store.find_model(conn, name) is None:
            raise NotFound(f"There is no prediction model named {name!r}.")
    run_in_background(engine, name)
    return redirect(f"/predictions/{name}?started=1")
