"""opencdp.js alone in Chromium, with the network stubbed by Playwright (no server): the decide
request's shape (identifiers, placements, live context, cart), how decisions are applied (html,
text, holdout, nothing), and form events from the page's own validation (aria-invalid,
data-opencdp-error), counted once when the browser flags the same error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from tests.ui.browser_env import CHROMIUM, chromium

pytestmark = [
    pytest.mark.xdist_group("opencdp-js-browser"),  # one server and one Chromium for the module
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]

SITE = "https://shop.example"
CDP = "https://cdp.example"
CART = json.dumps(
    {
        "value": 129.5,
        "currency": "EUR",
        "items": [{"product_id": "p1", "category": "shoes", "price": 64.75, "quantity": 2}],
    }
)
SCRIPT = resources.files("opencdp.web").joinpath("opencdp.js").read_bytes()

PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Checkout</title></head><body>
<div id="hero" data-opencdp-placement="home-hero">default hero</div>
<div id="banner" data-opencdp-placement="banner">default banner</div>
<div id="held" data-opencdp-placement="held">default held</div>
<div id="none" data-opencdp-placement="none">default none</div>
<div data-opencdp-cart='{CART}'></div>
<form data-opencdp-form="checkout" novalidate>
  <input name="card" id="card" aria-describedby="card-error">
  <span id="card-error"></span>
  <input name="zip" id="zip" required>
  <span data-opencdp-error="zip"></span>
  <input type="hidden" name="token" value="secret">
  <button type="submit">Pay</button>
</form>
<script src="/site.js"></script>
<script src="{CDP}/opencdp.js" data-key="pk_test" data-write-key="wk_test" async></script>
</body></html>"""

#: opencdp.js loaded without attributes and configured by a call; every form with an id is measured
INIT_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Newsletter</title></head><body>
<div id="hero" data-opencdp-placement="home-hero">default hero</div>
<form id="newsletter"><input name="email" id="email"></form>
<form><input name="q" id="search"></form>
<script src="{CDP}/opencdp.js"></script>
<script src="/init.js"></script>
</body></html>"""
INIT_JS = f"""opencdp.init({{key: "pk_init", writeKey: "wk_init", host: "{CDP}/", forms: "all"}});"""

SITE_JS = """
document.addEventListener("submit", function (e) {
  e.preventDefault();
  var card = document.getElementById("card");
  if (card.value.length < 4) {  // the page's own validation
    card.setAttribute("aria-invalid", "true");
    document.getElementById("card-error").textContent = "Card number too short";
    return;
  }
  card.removeAttribute("aria-invalid");
  document.body.setAttribute("data-paid", "yes");
});
document.getElementById("zip").addEventListener("blur", function () {
  var shown = document.querySelector("[data-opencdp-error=zip]");
  shown.textContent = this.value ? "" : "Enter a postcode";
});
"""

DECISIONS = {
    "decisions": {
        "home-hero": {"experience": "hero", "variant": "boots", "content": {"html": "<b id=boots>Boots</b>"}},
        "banner": {"experience": "banner", "variant": "plain", "content": {"text": "<i>as text</i>"}},
        "held": {"experience": "held", "variant": "x", "content": {}, "holdout": True},
        "none": {"experience": None, "variant": None, "content": None, "reason": "no_experience"},
    }
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as instance:
        yield instance


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]]:
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    page = context.new_page()
    decides: list[dict[str, Any]] = []
    tracked: list[dict[str, Any]] = []
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Authorization, Content-Type"}

    def serve(route: Any) -> None:
        request = route.request
        url = request.url
        if url.startswith(SITE + "/site.js"):
            route.fulfill(status=200, content_type="text/javascript", body=SITE_JS)
        elif url.startswith(SITE + "/init.js"):
            route.fulfill(status=200, content_type="text/javascript", body=INIT_JS)
        elif url.startswith(SITE + "/init"):
            route.fulfill(status=200, content_type="text/html", body=INIT_PAGE)
        elif url.startswith(SITE):
            route.fulfill(status=200, content_type="text/html", body=PAGE)
        elif url == CDP + "/opencdp.js":
            route.fulfill(status=200, content_type="text/javascript", body=SCRIPT)
        elif request.method == "OPTIONS":
            route.fulfill(status=204, headers=cors)
        elif url == CDP + "/v1/decide":
            decides.append(
                {"body": json.loads(request.post_data), "auth": request.headers.get("authorization")}
            )
            route.fulfill(
                status=200, content_type="application/json", headers=cors, body=json.dumps(DECISIONS)
            )
        elif url == CDP + "/v1/t":
            tracked.append(
                {"body": json.loads(request.post_data), "type": request.headers.get("content-type")}
            )
            route.fulfill(status=200, content_type="application/json", headers=cors, body='{"success": true}')
        else:
            route.abort()

    page.route("**/*", serve)
    yield page, decides, tracked
    context.close()
    assert problems == []


def test_decide_request_and_decisions(page: tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    p, decides, _tracked = page
    p.goto(SITE + "/checkout?utm_source=newsletter&utm_campaign=winter")
    p.wait_for_selector("#boots")
    [call] = decides
    assert call["auth"] == "Bearer pk_test"
    body = call["body"]
    assert body["placements"] == ["home-hero", "banner", "held", "none"]
    assert body["anonymousId"] and body["userId"] is None
    ctx = body["context"]
    assert ctx["page"]["path"] == "/checkout" and ctx["page"]["title"] == "Checkout"
    assert ctx["page"]["search"] == "?utm_source=newsletter&utm_campaign=winter"
    assert ctx["campaign"] == {"source": "newsletter", "name": "winter"}
    assert ctx["device"] == {"type": "desktop"}
    assert ctx["locale"] and ctx["timezone"]
    assert ctx["cart"]["value"] == 129.5 and ctx["cart"]["items"][0]["category"] == "shoes"
    assert p.get_attribute("#hero", "data-opencdp-variant") == "boots"
    assert p.inner_text("#banner") == "<i>as text</i>"  # text is text
    assert p.get_attribute("#held", "data-opencdp-variant") == "holdout"
    assert p.inner_text("#held") == "default held"
    assert (
        p.inner_text("#none") == "default none" and p.get_attribute("#none", "data-opencdp-variant") is None
    )
    # the same visitor on the next page: the same anonymous id
    p.goto(SITE + "/next")
    p.wait_for_selector("#boots")
    assert decides[1]["body"]["anonymousId"] == body["anonymousId"]


def test_analytics_js_ids_are_used(page: tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    p, decides, _tracked = page
    p.goto(SITE + "/blank-first")
    p.wait_for_selector("#boots")  # this page's own decision is in before the list is cleared
    p.evaluate(
        """() => { localStorage.setItem("ajs_anonymous_id", JSON.stringify("ajs-anon"));
                   document.cookie = "ajs_user_id=" + encodeURIComponent(JSON.stringify("user-7")); }"""
    )
    decides.clear()
    p.goto(SITE + "/checkout")
    p.wait_for_selector("#boots")
    assert (decides[0]["body"]["anonymousId"], decides[0]["body"]["userId"]) == ("ajs-anon", "user-7")


def test_form_events_from_the_pages_own_validation(
    page: tuple[Any, list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    p, _decides, tracked = page
    p.goto(SITE + "/checkout")
    p.wait_for_selector("#boots")
    p.click("#card")
    p.fill("#card", "12")
    p.click("button[type=submit]")  # aria-invalid + its described-by message
    p.click("#zip")
    p.click("#card")  # leaving zip empty: the page shows its data-opencdp-error message
    p.fill("#card", "1234")
    p.fill("#zip", "10115")
    p.click("#card")  # the page clears its message: the layout settles before the click on Pay
    p.click("button[type=submit]")
    p.wait_for_selector("body[data-paid=yes]", state="attached")

    def events() -> list[tuple[str, dict[str, Any]]]:
        return [(t["body"]["event"], t["body"]["properties"]) for t in tracked]

    p.wait_for_timeout(300)
    got = events()
    errors = [props for name, props in got if name == "Form Field Errored"]
    assert errors == [
        {"form_id": "checkout", "field": "card", "message": "Card number too short"},
        {"form_id": "checkout", "field": "zip", "message": "Enter a postcode"},
    ]
    assert ("Form Submitted", {"form_id": "checkout"}) in got
    assert got.count(("Form Submitted", {"form_id": "checkout"})) == 1  # not the attempt with an error
    assert all(props.get("field") != "token" for _, props in got)
    for t in tracked:
        assert t["type"].startswith("text/plain")
        assert t["body"]["writeKey"] == "wk_test" and t["body"]["context"]["library"]["name"] == "opencdp.js"
        assert "1234" not in json.dumps(t["body"]) and "10115" not in json.dumps(t["body"])


def test_configured_by_init_with_every_form_that_has_an_id(
    page: tuple[Any, list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    p, decides, tracked = page
    p.goto(SITE + "/init")
    p.wait_for_selector("#boots")
    assert decides[0]["auth"] == "Bearer pk_init"
    p.click("#email")
    p.click("#search")  # a form without an id: not measured
    p.wait_for_timeout(300)
    assert [(t["body"]["event"], t["body"]["properties"]) for t in tracked] == [
        ("Form Field Focused", {"form_id": "newsletter", "field": "email"})
    ]
    assert tracked[0]["body"]["writeKey"] == "wk_init"
