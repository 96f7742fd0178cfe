"""E-mails of accounts (verification, password reset) through the brand's SMTP relay, sent with
the SMTP destination driver (`activation/drivers/smtp.py`): the same connection handling, TLS,
login and error classification as marketing e-mail, without a second SMTP client to maintain."""

from __future__ import annotations

import uuid

from opencdp import logs
from opencdp.accounts.config import Smtp
from opencdp.activation.drivers.base import Message
from opencdp.activation.drivers.smtp import SmtpDriver

log = logs.get("opencdp.accounts.mail")


class MailNotSent(RuntimeError):
    """The relay did not take the e-mail (or none is configured); the message says why."""


async def send(smtp: Smtp, brand: str, to: str, subject: str, text: str) -> None:
    if not smtp.configured:
        raise MailNotSent(
            "no SMTP relay is configured (OPENCDP_ACCOUNTS_SMTP_HOST, OPENCDP_ACCOUNTS_MAIL_FROM)"
        )
    config = SmtpDriver.validate(
        {
            "host": smtp.host,
            "port": smtp.port,
            "security": smtp.security,
            "username": smtp.username or None,
            "from_address": smtp.sender,
            "from_name": brand,
            "to": "{{ to }}",
            "subject": "{{ subject }}",
            "text": "{{ text }}",
            "timeout_seconds": 20,
        }
    )
    driver = SmtpDriver(config=config, secret=smtp.password or None)
    key = f"acct-mail-{uuid.uuid4()}"
    [outcome] = await driver.send([Message(0, key, {"to": to, "subject": subject, "text": text}, {})])
    if outcome.status != "delivered":
        log.warning("account e-mail not sent", error=outcome.error)
        raise MailNotSent(outcome.error or "not sent")
