"""A local SMTP server (aiosmtpd, a test dependency: `pip install -e ".[test]"`) that keeps the
links of the e-mails it receives, so a benchmark can follow a verification link as a customer
does instead of writing to the database behind the server's back."""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from typing import Any

from harness.scratch import HOST, free_port

_LINK = re.compile(r"https?://\S+")


class Mailbox:
    """`with Mailbox() as mailbox:` an SMTP server on a free loopback port (`mailbox.port`)."""

    def __init__(self) -> None:
        self._links: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.port = 0
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        links = _LINK.findall(body.get_content() if body is not None else "")
        with self._lock:
            for to in envelope.rcpt_tos:
                self._links.setdefault(to.lower(), []).extend(links)
        return "250 Message accepted"

    def link(self, to: str, path: str, timeout: float = 30.0) -> str:
        """The newest link to `path` mailed to `to`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [link for link in self._links.get(to.lower(), []) if path in link]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no e-mail with a {path} link reached {to} within {timeout:.0f} s")
            time.sleep(0.02)

    def __enter__(self) -> Mailbox:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            raise RuntimeError('aiosmtpd is missing: .venv/bin/pip install -e ".[test]"') from None
        self.port = free_port()
        self._controller = Controller(self, hostname=HOST, port=self.port)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._controller is not None:
            self._controller.stop()
