"""The uplift and segment-performance pages, in-process on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient

from opencdp.system import OpenCDP
from tests import segment_performance_scenario
from tests.identity_helpers import log_messages, process
from tests.uplift_scenario import EXPERIENCE, NOW, build, store

XSS_VARIANT = "<script>window.__xss=9</script>"


def test_uplift_page_shows_arms_whiskers_flags_and_segments(
    cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    store(cdp.engine, build(400, 5))
    props = {"experience": EXPERIENCE, "variant": XSS_VARIANT, "holdout": False, "reason": "matched"}
    at = (NOW - timedelta(days=3)).isoformat()
    message = {
        "type": "track",
        "userId": "x-1",
        "event": "Experience Viewed",
        "messageId": "x-1",
        "timestamp": at,
    }
    log_messages(cdp.engine, [message | {"properties": props}])
    process(cdp.engine)
    client = as_role("analyst")
    page = client.get(f"/experiences/{EXPERIENCE}/uplift")
    assert page.status_code == 200, page.text
    text = page.text
    assert "By variant" in text and "held out" in text and "saw it" in text
    assert text.count('class="whisker-svg"') >= 3  # A, B, all variants, and per segment
    assert "small sample" in text  # 400 profiles: ~40 held out per variant
    assert ">gold <small>" in text and ">silver <small>" in text
    assert XSS_VARIANT not in text and "&lt;script&gt;window.__xss=9" in text
    only = client.get(
        f"/experiences/{EXPERIENCE}/uplift", params={"segment": "gold", "attribution_days": "3"}
    )
    assert only.status_code == 200 and ">silver <small>" not in only.text
    assert client.get("/experiences/nope/uplift").status_code == 404
    assert client.get(f"/experiences/{EXPERIENCE}/uplift", params={"days": "x"}).status_code == 400
    reports = client.get("/reports")
    assert "/reports/segment-performance" in reports.text
    assert "/experiences/scenario%20banner/uplift" in reports.text


def test_segment_performance_page_highlights_the_low_cell(
    cdp: OpenCDP, as_role: Callable[[str], TestClient]
) -> None:
    segment_performance_scenario.fill(cdp.engine)
    client = as_role("marketer")
    page = client.get("/reports/segment-performance", params={"min_visitors": "30"})
    assert page.status_code == 200, page.text
    assert page.text.count('class="num cell-low"') == 1
    assert "silver" in page.text and "bags" in page.text and "1 low cells" in page.text
    assert client.get("/reports/segment-performance", params={"days": "-1"}).status_code == 400
    client.cookies.clear()
    assert client.get("/reports/segment-performance", follow_redirects=False).status_code in (302, 303, 401)
