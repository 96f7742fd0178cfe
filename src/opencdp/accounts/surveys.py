"""Surveys defined as data (zero-party data: what customers tell the brand themselves). A survey is
a list of questions; each answer becomes a trait of the customer's profile with the source
`zero-party` (through the log, like every other change), and the whole answer a `Survey Answered`
event that segments and journeys can use.

    {"name": "style-quiz", "title": "Tell us your style", "description": "Two questions, ten seconds.",
     "questions": [
        {"key": "favourite_colour", "text": "Which colour do you wear most?", "kind": "single",
         "options": ["black", "blue", "red"], "required": true},
        {"key": "sizes", "text": "Your sizes", "kind": "multiple", "options": ["S", "M", "L"]},
        {"key": "budget", "text": "Budget per month", "kind": "scale", "min": 1, "max": 5},
        {"key": "wish", "text": "Anything we should stock?", "kind": "text", "max_length": 300,
         "trait": "stock_wish"}]}

A question's answer is stored as the trait `trait` (default: its `key`). Kinds: `single` (one of
`options`), `multiple` (a list of `options`), `scale` (a whole number from `min` to `max`), `text`
(at most `max_length` characters, 500 by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KINDS = ("single", "multiple", "scale", "text")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TRAIT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Traits an answer may not set: identifiers (a survey must not re-address a profile) and the
#: preference centre's own.
RESERVED_TRAITS = frozenset(
    {
        "email",
        "phone",
        "user_id",
        "userid",
        "anonymous_id",
        "anonymousid",
        "id",
        "interests",
        "preferred_channel",
    }
)
MAX_QUESTIONS = 50
MAX_OPTIONS = 50
DEFAULT_TEXT_LENGTH = 500


class SurveyError(ValueError):
    """An invalid definition or answer: `problems` lists each with its exact path."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {problem}" for path, problem in problems))
        self.problems = problems


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    kind: str
    trait: str
    required: bool = False
    options: tuple[str, ...] = ()
    low: int = 1
    high: int = 5
    max_length: int = DEFAULT_TEXT_LENGTH

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "text": self.text, "kind": self.kind, "trait": self.trait}
        out["required"] = self.required
        if self.kind in ("single", "multiple"):
            out["options"] = list(self.options)
        elif self.kind == "scale":
            out.update(min=self.low, max=self.high)
        else:
            out["max_length"] = self.max_length
        return out


@dataclass(frozen=True)
class Survey:
    name: str
    title: str
    description: str
    questions: tuple[Question, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "questions": [q.as_dict() for q in self.questions],
        }


def _text(raw: Any, path: str, problems: list[tuple[str, str]], limit: int, required: bool = True) -> str:
    if raw is None and not required:
        return ""
    if not isinstance(raw, str) or (required and not raw.strip()):
        problems.append((path, "must be a non-empty text" if required else "must be a text"))
        return ""
    if len(raw) > limit:
        problems.append((path, f"must be at most {limit} characters"))
    return raw.strip()


def _int(raw: Any, path: str, problems: list[tuple[str, str]], default: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int):
        problems.append((path, "must be a whole number"))
        return default
    return raw


def _question(raw: Any, path: str, problems: list[tuple[str, str]]) -> Question | None:
    if not isinstance(raw, dict):
        problems.append((path, "must be an object with key, text and kind"))
        return None
    unknown = sorted(
        set(raw) - {"key", "text", "kind", "trait", "required", "options", "min", "max", "max_length"}
    )
    for name in unknown:
        problems.append((f"{path}.{name}", "is not a question field"))
    key = raw.get("key")
    if not isinstance(key, str) or not KEY.match(key):
        problems.append(
            (f"{path}.key", "must be lower-case letters, digits and _ (starting with a letter), at most 64")
        )
        key = ""
    elif key == "survey":
        problems.append((f"{path}.key", "'survey' is taken by the event's own property"))
    text = _text(raw.get("text"), f"{path}.text", problems, 500)
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append((f"{path}.kind", f"must be one of {', '.join(KINDS)}"))
        return None
    trait = raw.get("trait", key)
    if "trait" not in raw and not key:
        pass  # the key's own problem says it all
    elif not isinstance(trait, str) or not TRAIT.match(trait):
        problems.append((f"{path}.trait", "must be a trait name: letters, digits and _, at most 64"))
    elif trait.lower() in RESERVED_TRAITS:
        problems.append((f"{path}.trait", f"{trait!r} is reserved (an identifier or a preference)"))
    required = raw.get("required", False)
    if not isinstance(required, bool):
        problems.append((f"{path}.required", "must be true or false"))
        required = False
    options: tuple[str, ...] = ()
    low, high, max_length = 1, 5, DEFAULT_TEXT_LENGTH
    if kind in ("single", "multiple"):
        raw_options = raw.get("options")
        if not isinstance(raw_options, list) or not 2 <= len(raw_options) <= MAX_OPTIONS:
            problems.append((f"{path}.options", f"must be a list of 2 to {MAX_OPTIONS} texts"))
        else:
            options = tuple(_text(o, f"{path}.options.{i}", problems, 200) for i, o in enumerate(raw_options))
            if len(set(options)) != len(options):
                problems.append((f"{path}.options", "must not repeat an option"))
    elif kind == "scale":
        low = _int(raw.get("min"), f"{path}.min", problems, 1)
        high = _int(raw.get("max"), f"{path}.max", problems, 5)
        if not (low < high and high - low <= 100):
            problems.append((f"{path}.max", "must be above min, by at most 100"))
    else:
        max_length = _int(raw.get("max_length"), f"{path}.max_length", problems, DEFAULT_TEXT_LENGTH)
        if not 1 <= max_length <= 5000:
            problems.append((f"{path}.max_length", "must be between 1 and 5000"))
    return Question(str(key), text, kind, str(trait), required, options, low, high, max_length)


def parse_survey(raw: Any) -> Survey:
    """A checked survey definition; SurveyError lists every problem with its path."""
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise SurveyError([("", "a survey is an object with name, title and questions")])
    for name in sorted(set(raw) - {"name", "title", "description", "questions"}):
        problems.append((name, "is not a survey field"))
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        problems.append(("name", "must be lower-case letters, digits, - and _, at most 100"))
    title = _text(raw.get("title"), "title", problems, 200)
    description = _text(raw.get("description"), "description", problems, 2000, required=False)
    questions: list[Question] = []
    raw_questions = raw.get("questions")
    if not isinstance(raw_questions, list) or not 1 <= len(raw_questions) <= MAX_QUESTIONS:
        problems.append(("questions", f"must be a list of 1 to {MAX_QUESTIONS} questions"))
    else:
        for i, item in enumerate(raw_questions):
            if (question := _question(item, f"questions.{i}", problems)) is not None:
                questions.append(question)
        for label, values in (("key", [q.key for q in questions]), ("trait", [q.trait for q in questions])):
            for value in sorted({v for v in values if values.count(v) > 1}):
                problems.append(("questions", f"{label} {value!r} is used by more than one question"))
    if problems:
        raise SurveyError(problems)
    return Survey(str(name), title, description, tuple(questions))


def parse_answers(survey: Survey, form: dict[str, list[str]]) -> dict[str, Any]:
    """The answers of a submitted form ({field: [values]}, a field per question key) as
    {trait: value}; SurveyError names each question answered wrongly. Unanswered optional
    questions are left out (an empty answer never overwrites an earlier one)."""
    problems: list[tuple[str, str]] = []
    answers: dict[str, Any] = {}
    for q in survey.questions:
        values = [v.strip() for v in form.get(q.key, []) if v.strip()]
        if not values:
            if q.required:
                problems.append((q.key, "please answer this question"))
            continue
        if q.kind == "multiple":
            wrong = [v for v in values if v not in q.options]
            if wrong:
                problems.append((q.key, "choose from the options shown"))
            else:
                answers[q.trait] = [o for o in q.options if o in values]
        elif len(values) > 1:
            problems.append((q.key, "give one answer"))
        elif q.kind == "single":
            if values[0] not in q.options:
                problems.append((q.key, "choose one of the options shown"))
            else:
                answers[q.trait] = values[0]
        elif q.kind == "scale":
            try:
                number = int(values[0])
            except ValueError:
                number = q.low - 1
            if not q.low <= number <= q.high:
                problems.append((q.key, f"choose a number from {q.low} to {q.high}"))
            else:
                answers[q.trait] = number
        else:
            if len(values[0]) > q.max_length:
                problems.append((q.key, f"at most {q.max_length} characters, please"))
            else:
                answers[q.trait] = values[0]
    if problems:
        raise SurveyError(problems)
    return answers
