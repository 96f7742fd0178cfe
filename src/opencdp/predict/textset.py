"""How well the text analysis does on the labelled shop texts shipped in `data/text_labelled.jsonl`.

The set (198 reviews, tickets and survey answers, each labelled with a sentiment and the interests it
is about) was written before the rules in `lexicon` and `taxonomy`; every other text is marked
`"split": "test"` and was never looked at while the rules were written, so its numbers are the honest
ones. `fit` stores the held-out numbers as the model's quality; benchmarks/text_quality.py prints
all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from opencdp.predict.lexicon import Label, Sentiment, label
from opencdp.predict.taxonomy import Taxonomy

LABELS: tuple[Label, ...] = ("positive", "neutral", "negative")


@dataclass(frozen=True)
class Labelled:
    id: int
    source: str
    split: str
    sentiment: Label
    interests: frozenset[str]
    text: str


def load() -> list[Labelled]:
    """The shipped labelled texts."""
    raw = resources.files("opencdp.predict").joinpath("data/text_labelled.jsonl").read_text("utf-8")
    return [
        Labelled(
            row["id"], row["source"], row["split"], row["sentiment"], frozenset(row["interests"]), row["text"]
        )
        for row in map(json.loads, raw.splitlines())
        if row
    ]


def held_out() -> list[Labelled]:
    """The half of the set never looked at while the rules were written (the honest numbers)."""
    return [text for text in load() if text.split == "test"]


def evaluate(sentiment: Sentiment, taxonomy: Taxonomy, texts: list[Labelled] | None = None) -> dict[str, Any]:
    """Sentiment accuracy, macro-F1 and per-class recall; interest precision and recall (micro, over
    the interests the taxonomy and the labels share: a custom taxonomy is judged on its overlap)."""
    texts = load() if texts is None else texts
    known = set(taxonomy.interests)
    pairs: list[tuple[Label, Label]] = []
    hits = predicted_n = labelled_n = 0
    for text in texts:
        pairs.append((text.sentiment, label(sentiment.compound(text.text))))
        predicted = set(taxonomy.mentions(text.text)) & set(LABELLED_INTERESTS)
        expected = set(text.interests) & known
        hits += len(predicted & expected)
        predicted_n += len(predicted)
        labelled_n += len(expected)
    recall: dict[str, float | None] = {}
    f1s: list[float] = []
    for cls in LABELS:
        tp = sum(1 for truth, guess in pairs if truth == guess == cls)
        truths = sum(1 for truth, _ in pairs if truth == cls)
        guesses = sum(1 for _, guess in pairs if guess == cls)
        recall[cls] = _ratio(tp, truths)
        f1s.append(2 * tp / (truths + guesses) if truths + guesses else 0.0)
    return {
        "labelled_texts": len(texts),
        "sentiment_accuracy": _ratio(sum(1 for truth, guess in pairs if truth == guess), len(pairs)),
        "sentiment_macro_f1": round(sum(f1s) / len(f1s), 3),
        "sentiment_recall": recall,
        "interest_precision": _ratio(hits, predicted_n),
        "interest_recall": _ratio(hits, labelled_n),
        "interests_evaluated": sorted(known & set(LABELLED_INTERESTS)),
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


#: The interests the shipped set is labelled with (predictions outside these cannot be judged).
LABELLED_INTERESTS = (
    "shoes",
    "jackets",
    "accessories",
    "outdoor",
    "kids",
    "delivery",
    "returns",
    "price",
    "quality",
    "sizing",
    "service",
    "payment",
    "website",
)
