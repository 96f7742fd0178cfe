"""Progressive profiling: registration asks little, and each later sign-in asks one more question —
the first of the brand's list (`OPENCDP_ACCOUNTS_ASK`, e.g. `first_name,country,birthday`) whose
trait the profile does not have yet — on a page that says why and may be skipped.

The answer becomes a trait through an identify from the accounts source, exactly like a name given
at registration; accounts keep no copy. What the profile knows decides what is asked, so a first
name that came from the shop's checkout is never asked for. A skipped question is only remembered
(`account_skipped_questions`) so that it is not asked again for `OPENCDP_ACCOUNTS_ASK_AGAIN_DAYS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from opencdp.accounts.claims import profile_of
from opencdp.identity.identifiers import IdentityRules
from opencdp.store.schema import account_skipped_questions


@dataclass(frozen=True)
class Question:
    """One question; `name` is also the trait it sets. The label and the reason shown with it are
    texts (`ask_<name>`, `why_<name>`), so a brand words them per locale."""

    name: str
    input_type: str
    autocomplete: str
    max_length: int = 100


#: The questions a brand can ask over later sign-ins. No identifiers (an unverified phone number
#: or e-mail given here would let identity resolution link the account to someone else's profile).
QUESTIONS = {
    q.name: q
    for q in (
        Question("first_name", "text", "given-name"),
        Question("last_name", "text", "family-name"),
        Question("country", "text", "country-name"),
        Question("city", "text", "address-level2"),
        Question("birthday", "date", "bday", 10),
    )
}


class AnswerError(ValueError):
    """An answer that cannot be a trait; the message is a text key (accounts/texts.py)."""


def _known(value: object) -> bool:
    return value is not None and value != "" and value != []


def due(
    engine: sa.Engine,
    rules: IdentityRules,
    account_id: str,
    asked: tuple[str, ...],
    again_days: int,
    now: datetime | None = None,
) -> Question | None:
    """The question to ask at this sign-in, if any: the first of `asked` that the profile has no
    trait for and that was not skipped within `again_days`."""
    if not asked:
        return None
    now = now or datetime.now(UTC)
    traits = (profile_of(engine, rules, account_id) or {}).get("traits", {})
    with engine.connect() as conn:
        skipped = {
            row.question
            for row in conn.execute(
                sa.select(account_skipped_questions.c.question).where(
                    account_skipped_questions.c.account_id == account_id,
                    account_skipped_questions.c.skipped_at > now - timedelta(days=again_days),
                )
            )
        }
    for name in asked:
        if name in QUESTIONS and name not in skipped and not _known(traits.get(name)):
            return QUESTIONS[name]
    return None


def skip(engine: sa.Engine, account_id: str, question: Question, now: datetime | None = None) -> None:
    table = account_skipped_questions
    with engine.begin() as conn:
        conn.execute(
            table.delete().where(table.c.account_id == account_id, table.c.question == question.name)
        )
        conn.execute(
            table.insert().values(
                account_id=account_id, question=question.name, skipped_at=now or datetime.now(UTC)
            )
        )


def answer(question: Question, raw: str, today: date | None = None) -> str:
    """The trait's value for what was typed. Raises AnswerError."""
    value = " ".join(raw.split())
    if not value:
        raise AnswerError("answer_empty")
    if len(value) > question.max_length:
        raise AnswerError("answer_too_long")
    if question.input_type == "date":
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise AnswerError("answer_date") from None
        if not date(1900, 1, 1) <= day <= (today or datetime.now(UTC).date()):
            raise AnswerError("answer_date")
        return day.isoformat()
    return value
