"""A browser as a load generator: one keep-alive connection of raw requests (`RawConnection`),
its cookies, forms posted as a browser posts them, and redirects left to the caller, who times and
checks every hop of a sign-in.

Cheap on purpose, like the rest of `load`: no HTML parser (a form's hidden fields are found with a
regular expression), no cookie paths or expiry beyond deletion (every page a benchmark visits is
under one path).
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from harness.load import RawConnection, header_values
from harness.scratch import HOST

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) opencdp-benchmark"
_ALERT = re.compile(r'role="alert">(.*?)</', re.S)
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


class UnexpectedAnswer(Exception):
    """An answer the flow did not expect (another status, a missing header or field): the message
    names the step and shows the start of the body."""


class Refused(UnexpectedAnswer):
    """The server shed the request (503 with Retry-After): admission control doing its job."""


@dataclass
class Answer:
    status: int
    head: bytes
    body: bytes
    seconds: float  # from sending the request to the end of the answer

    def header(self, name: str) -> str | None:
        values = header_values(self.head, name)
        return values[0] if values else None

    def expect(self, step: str, status: int) -> Answer:
        if self.status == 503 and status != 503 and self.header("retry-after"):
            raise Refused(f"{step}: 503 (busy, retry after {self.header('retry-after')} s)")
        if self.status != status:
            raise UnexpectedAnswer(f"{step}: {self.status} instead of {status}: {self.gist()!r}")
        return self

    def gist(self) -> str:
        """What a page says went wrong (its alert, else its title), or the start of the body."""
        text = self.body.decode(errors="replace")
        for pattern in (_ALERT, _TITLE):
            if found := pattern.search(text):
                return html.unescape(re.sub(r"<[^>]+>|\s+", " ", found.group(1))).strip()
        return text[:300]

    def location(self, step: str) -> str:
        found = self.header("location")
        if not found:
            raise UnexpectedAnswer(f"{step}: a {self.status} without Location")
        return found


def hidden_fields(page: bytes) -> dict[str, str]:
    """The hidden inputs of a page's forms (a CSRF token, a `next`), unescaped."""
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page.decode(errors="replace"))}


#: a connection idle this long is replaced before the next request
IDLE_RECONNECT_S = 4.0


class Browser:
    """One browser: a keep-alive connection and a cookie jar. `forget()` makes it a new browser
    (no cookies) on the same connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.host = f"{HOST}:{port}"
        self.conn = RawConnection(port)
        self.cookies: dict[str, str] = {}
        self.last_used = time.monotonic()

    def forget(self) -> None:
        self.cookies.clear()

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self._send("GET", path, b"", headers or {})

    def post_form(self, path: str, fields: dict[str, str], headers: dict[str, str] | None = None) -> Answer:
        body = urlencode(fields).encode()
        return self._send(
            "POST", path, body, {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        )

    def _send(self, method: str, path: str, body: bytes, extra: dict[str, str]) -> Answer:
        headers = {"User-Agent": USER_AGENT, "Accept": "text/html,application/json", **extra}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if time.monotonic() - self.last_used > IDLE_RECONNECT_S:  # as browsers do: the server
            self.conn.close()  # closes keep-alive connections idle for 5 s (uvicorn's default)
            self.conn = RawConnection(self.port)
        began = time.perf_counter()
        status, head, answer = self.conn.exchange(
            RawConnection.prepare(method, path, body, headers, self.host)
        )
        seconds = time.perf_counter() - began
        self.last_used = time.monotonic()
        for cookie in header_values(head, "set-cookie"):
            pair, _, attributes = cookie.partition(";")
            name, _, value = pair.strip().partition("=")
            if "max-age=0" in attributes.lower().replace(" ", "") or value in ("", '""'):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return Answer(status, head, answer, seconds)

    def close(self) -> None:
        self.conn.close()
