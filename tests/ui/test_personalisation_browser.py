"""End to end in headless Chromium: a real shop page, served by a test HTTP server on another port
(so cross-origin to opencdp, as a real website is), with

1. Segment's `@segment/analytics-next` from the npm registry (installed by this test into a cache
   outside the repository and bundled into one file with esbuild: no chunk is fetched from a CDN),
   loaded with `AnalyticsBrowser.load({writeKey, cdnURL: <opencdp>})`: its page, identify and track
   calls land in opencdp's log, and the browser talks to no other host;
2. opencdp's first-party script `/opencdp.js` on the same page: an experience personalises a marked
   element, a form with a deliberately failing field sends the field events (through analytics.js),
   a second visitor abandons the form (sent by the script itself with the write key, on pagehide),
   the form report counts it all, and after two errors on the field a live-chat offer appears in
   the `help` placement (decided again because the visitor now struggles).

npm is needed (the test skips, saying so, without it); the packages are cached in
`~/.cache/opencdp-tests/npm` (`OPENCDP_TEST_NPM_DIR`), never in the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from opencdp.access.keys import create_api_key, create_source
from opencdp.config import Settings
from opencdp.log.reader import EventQuery, read_events
from opencdp.personalise import store as experience_store
from opencdp.store.database import create_engine, open_database
from tests.serverproc import Server, free_port
from tests.ui.browser_env import CHROMIUM, chromium

pytestmark = [
    pytest.mark.server,
    pytest.mark.xdist_group("personalisation-browser"),  # one server and one Chromium for the module
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install -y chromium)",
    ),
]

NPM_DIR = Path(os.environ.get("OPENCDP_TEST_NPM_DIR") or Path.home() / ".cache" / "opencdp-tests" / "npm")
PACKAGES = ("@segment/analytics-next", "esbuild")
ENTRY = """import { AnalyticsBrowser } from "@segment/analytics-next";
window.AnalyticsBrowser = AnalyticsBrowser;
"""
WAIT = 30.0

HERO = {
    "name": "winter hero",
    "placement": "home-hero",
    "audience": {"context": "device.type", "op": "eq", "value": "desktop"},
    "variants": [{"name": "winter", "content": {"html": '<h2 id="winter">Winter sale: boots -20%</h2>'}}],
    "holdout_percent": 0,
}
LIVE_CHAT = {
    "name": "live chat for strugglers",
    "placement": "help",
    "audience": {"session": "struggling", "op": "eq", "value": True},
    "variants": [{"name": "chat", "content": {"html": '<a id="chat" href="#chat">Stuck? Chat with us</a>'}}],
    "holdout_percent": 0,
}


# -- analytics-next from the npm registry, bundled -------------------------------------------------
@pytest.fixture(scope="module")
def analytics_bundle() -> bytes:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: this test installs @segment/analytics-next and esbuild with it")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    esbuild = NPM_DIR / "node_modules" / ".bin" / "esbuild"
    if (
        not (NPM_DIR / "node_modules" / "@segment" / "analytics-next" / "package.json").exists()
        or not esbuild.exists()
    ):
        done = subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(NPM_DIR), *PACKAGES],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    entry = NPM_DIR / "opencdp-test-entry.js"
    entry.write_text(ENTRY)
    out = NPM_DIR / "opencdp-test-analytics.js"
    built = subprocess.run(
        [
            str(esbuild),
            str(entry),
            "--bundle",
            "--format=iife",
            "--platform=browser",
            f"--outfile={out}",
            "--log-level=warning",
        ],
        cwd=NPM_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip  (no --splitting: one file, nothing fetched later)
    assert built.returncode == 0, built.stderr
    return out.read_bytes()


# -- opencdp: a real server with a write key, a decide key and two experiences ---------------------
@dataclass
class Cdp:
    url: str
    write_key: str
    decide_key: str
    admin_key: str
    engine: sa.Engine


@pytest.fixture(scope="module")
def cdp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdp]:
    data_dir = tmp_path_factory.mktemp("personalisation")
    url = f"sqlite:///{data_dir / 'opencdp.db'}"
    settings = Settings(data_dir=data_dir, database_url=url)
    engine = open_database(settings)
    write_key = create_source(engine, "shop")[1]
    decide_key = create_api_key(engine, "decide", "website")[1]
    admin_key = create_api_key(engine, "admin", "tests")[1]
    with engine.begin() as conn:
        for document in (HERO, LIVE_CHAT):
            experience_store.create(conn, document, actor="tests", enabled=True)
    engine.dispose()
    env = dict(os.environ)
    env.update(
        OPENCDP_DATA_DIR=str(data_dir),
        OPENCDP_DATABASE_URL=url,
        OPENCDP_LOG_LEVEL="WARNING",
        OPENCDP_KEY_CACHE_SECONDS="0",
    )
    server = Server(env, data_dir / "server.log").start()
    reader = create_engine(settings)
    try:
        yield Cdp(server.url, write_key, decide_key, admin_key, reader)
    finally:
        reader.dispose()
        server.stop()


# -- the shop: another origin --------------------------------------------------------------------
SITE_JS = """
document.addEventListener("submit", function (e) {
  e.preventDefault();  // a single-page shop: it posts the sign-up itself
  document.body.setAttribute("data-submitted", "yes");
});
document.addEventListener("opencdp:decision", function (e) {
  var seen = document.body.getAttribute("data-decisions") || "";
  document.body.setAttribute("data-decisions", seen + e.detail.placement + " ");
});
"""


def _form_page(cdp: Cdp, with_analytics: bool) -> str:
    analytics = (
        '<script src="/analytics-next.js"></script>\n'
        "<script>\n"
        f"  window.analytics = AnalyticsBrowser.load({{writeKey: {json.dumps(cdp.write_key)}, "
        f"cdnURL: {json.dumps(cdp.url)}}});\n"
        '  window.analytics.page("Sign up");\n'
        "</script>"
    )
    # without analytics.js, opencdp.js sends the form events itself with the write key
    write_key = "" if with_analytics else f' data-write-key="{cdp.write_key}"'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign up · Shop</title></head>
<body>
<div data-opencdp-placement="home-hero"><h2>Welcome to the shop</h2></div>
<form data-opencdp-form="signup" action="/thanks">
  <label>E-mail <input name="email" type="email" required></label>
  <label>Password <input name="password" type="password" required pattern="(?=.*[0-9]).{{8,}}"
    title="at least 8 characters with a digit"></label>
  <button type="submit">Sign up</button>
</form>
<aside data-opencdp-placement="help" data-opencdp-refresh="form-error"></aside>
<script src="/site.js"></script>
{analytics if with_analytics else ""}
<script src="{cdp.url}/opencdp.js" data-key="{cdp.decide_key}"{write_key} async></script>
</body></html>"""


def _analytics_page(cdp: Cdp) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Home · Shop</title></head>
<body><h1>Shop</h1>
<script src="/analytics-next.js"></script>
<script>
  const analytics = AnalyticsBrowser.load({{
    writeKey: {json.dumps(cdp.write_key)}, cdnURL: {json.dumps(cdp.url)}
  }});
  Promise.all([
    analytics.page("Home", {{section: "landing"}}),
    analytics.identify("user-42", {{plan: "pro"}}),
    analytics.track("Boots Viewed", {{size: 42}}),
  ]).then(() => document.body.setAttribute("data-sent", "yes"),
          (e) => document.body.setAttribute("data-sent", "error: " + e));
</script>
</body></html>"""


BATCHING = json.dumps({"strategy": "batching", "config": {"size": 3, "timeout": 300}})


def _batched_page(cdp: Cdp) -> str:
    """analytics.js with its batching delivery strategy: the calls go to /v1/b together."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Batched · Shop</title></head>
<body><h1>Shop</h1>
<script src="/analytics-next.js"></script>
<script>
  const analytics = AnalyticsBrowser.load(
    {{writeKey: {json.dumps(cdp.write_key)}, cdnURL: {json.dumps(cdp.url)}}},
    {{integrations: {{"Segment.io": {{deliveryStrategy: {BATCHING}}}}}}}
  );
  analytics.track("Batched One", {{n: 1}});
  analytics.track("Batched Two", {{n: 2}});
  analytics.track("Batched Three", {{n: 3}});
</script>
</body></html>"""


@dataclass
class Site:
    url: str


@pytest.fixture(scope="module")
def site(analytics_bundle: bytes, cdp_server: Cdp) -> Iterator[Site]:
    files: dict[str, tuple[str, bytes]] = {
        "/analytics-next.js": ("text/javascript", analytics_bundle),
        "/site.js": ("text/javascript", SITE_JS.encode()),
        "/analytics.html": ("text/html", _analytics_page(cdp_server).encode()),
        "/batched.html": ("text/html", _batched_page(cdp_server).encode()),
        "/signup.html": ("text/html", _form_page(cdp_server, with_analytics=True).encode()),
        "/signup-plain.html": ("text/html", _form_page(cdp_server, with_analytics=False).encode()),
        "/elsewhere.html": ("text/html", b"<!doctype html><title>Elsewhere</title><p>Elsewhere</p>"),
        "/favicon.ico": ("image/x-icon", b""),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = files.get(urlsplit(self.path).path)
            if found is None:
                self.send_error(404)
                return
            kind, body = found
            self.send_response(200)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as instance:
        yield instance


@dataclass
class Visit:
    page: Any
    hosts: set[str]
    problems: list[str]


@pytest.fixture
def visit(browser: Any, site: Site, cdp_server: Cdp) -> Iterator[Callable[[], Visit]]:
    """A fresh browser context (a new visitor); records every host it talks to and any script error."""
    contexts: list[Any] = []

    def new() -> Visit:
        context = browser.new_context(viewport={"width": 1366, "height": 860})
        contexts.append(context)
        page = context.new_page()
        seen = Visit(page, set(), [])
        page.on("request", lambda r: seen.hosts.add(urlsplit(r.url).netloc))
        page.on("pageerror", lambda exc: seen.problems.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda m: seen.problems.append(f"console: {m.text}") if m.type == "error" else None,
        )
        return seen

    yield new
    for context in contexts:
        context.close()


def _until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _log(cdp: Cdp) -> list[dict[str, Any]]:
    return read_events(cdp.engine, EventQuery(limit=1000))


def _hosts(site: Site, cdp: Cdp) -> set[str]:
    return {urlsplit(site.url).netloc, urlsplit(cdp.url).netloc}


def test_analytics_next_sends_page_identify_and_track_to_opencdp(
    visit: Callable[[], Visit], site: Site, cdp_server: Cdp
) -> None:
    v = visit()
    v.page.goto(site.url + "/analytics.html")
    v.page.wait_for_selector("body[data-sent]", timeout=WAIT * 1000)
    assert v.page.get_attribute("body", "data-sent") == "yes"

    def landed() -> dict[str, dict[str, Any]]:
        rows = {r["type"]: r for r in _log(cdp_server) if r["source"] == "shop"}
        return rows if {"page", "identify", "track"} <= set(rows) else {}

    rows = _until("page, identify and track in the log", landed)
    v.page.wait_for_timeout(200)  # Playwright's sync API delivers the request events it holds
    track, page, identify = rows["track"]["payload"], rows["page"]["payload"], rows["identify"]["payload"]
    assert track["event"] == "Boots Viewed" and track["properties"] == {"size": 42}
    assert track["userId"] == "user-42" and identify["userId"] == "user-42"
    assert identify["traits"] == {"plan": "pro"}
    assert page["name"] == "Home" and page["properties"]["section"] == "landing"
    assert page["properties"]["url"] == site.url + "/analytics.html"
    assert track["anonymousId"] == page["anonymousId"] == identify["anonymousId"]
    assert track["context"]["library"]["name"] == "analytics.js"
    assert "writeKey" not in track
    assert v.hosts <= _hosts(site, cdp_server), v.hosts  # no CDN, no metrics elsewhere
    assert v.problems == []


def test_analytics_next_batching_posts_to_the_batch_path(
    visit: Callable[[], Visit], site: Site, cdp_server: Cdp
) -> None:
    v = visit()
    posted: list[str] = []
    v.page.on("request", lambda r: posted.append(r.method + " " + urlsplit(r.url).path))
    v.page.goto(site.url + "/batched.html")

    def landed() -> list[str]:
        names = [r["event"] for r in _log(cdp_server) if str(r["event"] or "").startswith("Batched ")]
        return names if len(names) == 3 else []

    assert sorted(_until("the batched calls in the log", landed)) == [
        "Batched One",
        "Batched Three",
        "Batched Two",
    ]
    v.page.wait_for_timeout(200)  # Playwright's sync API delivers the request events it holds
    assert "POST /v1/b" in posted and "POST /v1/t" not in posted
    assert v.problems == []


def test_opencdp_js_personalises_and_measures_a_struggling_form(
    visit: Callable[[], Visit], site: Site, cdp_server: Cdp
) -> None:
    # visitor 1 (analytics.js and opencdp.js): the hero is personalised, the password fails twice
    one = visit()
    page = one.page
    page.goto(site.url + "/signup.html")
    page.wait_for_selector("#winter", timeout=WAIT * 1000)
    assert page.get_attribute("[data-opencdp-placement=home-hero]", "data-opencdp-variant") == "winter"
    assert page.inner_text("[data-opencdp-placement=help]") == ""  # not struggling yet
    page.click("input[name=email]")
    page.fill("input[name=email]", "ann@example.com")
    page.click("input[name=password]")
    page.fill("input[name=password]", "abc")
    page.click("button[type=submit]")
    page.fill("input[name=password]", "abcd")
    page.click("button[type=submit]")
    # two errors on one field within a minute: the help placement is decided again → live chat
    page.wait_for_selector("#chat", timeout=WAIT * 1000)
    assert page.get_attribute("[data-opencdp-placement=help]", "data-opencdp-variant") == "chat"
    page.fill("input[name=password]", "abcdefg1")
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-submitted=yes]", timeout=WAIT * 1000)

    # visitor 2 (opencdp.js alone, with the write key): looks at the e-mail field and leaves
    two = visit()
    two.page.goto(site.url + "/signup-plain.html")
    two.page.wait_for_selector("#winter", timeout=WAIT * 1000)
    two.page.click("input[name=email]")
    two.page.goto(site.url + "/elsewhere.html")  # pagehide: Form Abandoned

    def form_events() -> list[dict[str, Any]]:
        rows = [r for r in _log(cdp_server) if str(r["event"] or "").startswith("Form ")]
        names = [r["event"] for r in rows]
        return rows if "Form Submitted" in names and "Form Abandoned" in names else []

    rows = _until("the form events in the log", form_events)
    for row in rows:
        props = row["payload"]["properties"]
        assert props["form_id"] == "signup"
        assert "ann@example.com" not in json.dumps(row["payload"])  # never a value
        assert "abcdefg1" not in json.dumps(row["payload"])
    errors = [r["payload"]["properties"] for r in rows if r["event"] == "Form Field Errored"]
    assert [e["field"] for e in errors] == ["password", "password"]
    assert all(e["message"] for e in errors)
    by_library = {r["payload"]["context"]["library"]["name"] for r in rows}
    assert by_library == {"analytics.js", "opencdp.js"}  # visitor 1 through analytics.js, 2 directly
    # the decisions were made for the visitor analytics.js knows (it waited for its id): exposures
    # and form events are one visitor, as the uplift report needs
    visitor_one = {
        r["payload"]["anonymousId"]
        for r in rows
        if r["payload"]["context"]["library"]["name"] == "analytics.js"
    }

    def exposed(placement: str) -> set[str]:
        return {
            r["payload"]["anonymousId"]
            for r in _log(cdp_server)
            if r["event"] == "Experience Viewed" and r["payload"]["properties"]["placement"] == placement
        }

    assert len(visitor_one) == 1
    assert visitor_one <= exposed("home-hero") and visitor_one <= exposed("help")
    [abandoned] = [r["payload"] for r in rows if r["event"] == "Form Abandoned"]
    assert abandoned["properties"] == {"form_id": "signup", "field": "email"}

    # the form report, once the processor has reached the events
    auth = {"Authorization": f"Bearer {cdp_server.admin_key}"}

    def report() -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(
            cdp_server.url + "/api/forms/signup", headers=auth, timeout=5
        ).json()
        return found if found["visitors"] == 2 and found["abandoned"] == 1 and found["submitted"] == 1 else {}

    numbers = _until("the form report", report)
    fields = {f["field"]: f for f in numbers["fields"]}
    assert [f["field"] for f in numbers["fields"]] == ["email", "password"]
    assert (fields["email"]["reached"], fields["email"]["completed"], fields["email"]["abandoned"]) == (
        2,
        1,
        1,
    )
    password = fields["password"]
    assert (password["reached"], password["completed"], password["errored"], password["errors"]) == (
        1,
        1,
        1,
        2,
    )
    assert password["error_rate"] == 1.0
    assert numbers["errors"][0]["field"] == "password" and numbers["errors"][0]["count"] == 2
    assert numbers["submits"] == 1

    two.page.wait_for_timeout(200)  # Playwright's sync API delivers the request events it holds
    for v in (one, two):
        assert v.hosts <= _hosts(site, cdp_server), v.hosts
        assert v.problems == []
