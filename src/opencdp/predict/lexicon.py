"""Sentiment of one shop text: VADER with a retail vocabulary on top.

VADER (Hutto & Gilbert, 2014; the `vaderSentiment` wheel ships its 7,500-word lexicon, so nothing is
downloaded) handles negation ("not good"), intensifiers, "but", capitals and "!!!" with rules, in about
40 µs a text. Its lexicon comes from social media and misses how shoppers complain: "flimsy", "fell
apart", "never arrived", "runs small" carry no valence there, and "ok"/"fine" count as praise where a
reviewer means three stars. `RETAIL_WORDS` and `RETAIL_PHRASES` add that vocabulary (written from
what shop reviews and tickets say, not fitted to the labelled set). A phrase is swapped for a
placeholder word before VADER reads the text, so VADER's own negation and "but" rules still apply
("didn't fall apart" is praise).
"""

from __future__ import annotations

import re
import warnings
from typing import Literal

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

Label = Literal["positive", "neutral", "negative"]

#: VADER's own cut-offs on the compound score (its authors' recommendation).
POSITIVE_FROM = 0.05
NEGATIVE_TO = -0.05

#: Single words → valence on VADER's -4..4 scale; replaces VADER's value where it has one.
RETAIL_WORDS: dict[str, float] = {
    # faults and wear
    "flimsy": -1.8,
    "shoddy": -2.0,
    "leaks": -1.5,
    "leaking": -1.5,
    "leaked": -1.5,
    "ripped": -1.6,
    "frayed": -1.3,
    "pilled": -1.3,
    "pilling": -1.3,
    "squeaky": -1.2,
    "squeaks": -1.2,
    "scratchy": -1.3,
    "smelly": -1.5,
    "jammed": -1.4,
    "snapped": -1.6,
    "cracked": -1.5,
    "soaked": -1.2,
    "blisters": -1.5,
    "unwearable": -2.2,
    "poorly": -1.5,
    "cheaply": -1.5,
    "mislabelled": -1.5,
    "unusable": -2.0,
    "faulty": -1.8,
    # service and delivery
    "late": -1.2,
    "overdue": -1.2,
    "overpriced": -1.8,
    "overcharged": -2.0,
    "unanswered": -1.5,
    "hassle": -1.3,
    "nightmare": -2.5,
    "unhelpful": -1.8,
    "slow": -1.0,
    # praise a shop hears
    "comfy": 2.0,
    "sturdy": 1.6,
    "durable": 1.6,
    "waterproof": 1.0,
    "breathable": 1.0,
    "lightweight": 0.8,
    "stylish": 1.8,
    "cosy": 1.6,
    "cozy": 1.6,
    "affordable": 1.2,
    "bargain": 1.8,
    "speedy": 1.4,
    "promptly": 1.2,
    "worth": 1.5,
    # shop nouns VADER reads as feelings: "customer support", "gift card", "pay by card", "no comment"
    "support": 0.0,
    "gift": 0.0,
    "pay": 0.0,
    "no": 0.0,
    "straightforward": 1.4,
    # lukewarm: a three-star "it's ok", not praise
    "ok": 0.1,
    "okay": 0.1,
    "fine": 0.3,
    "alright": 0.1,
}

#: Phrases (regular expressions, matched in lower case) → valence; applied before VADER reads the text.
RETAIL_PHRASES: dict[str, float] = {
    r"f[ae]ll(?:s|ing)? apart|c[oa]me(?:s)? apart|came undone|came off": -2.2,
    r"never (?:arrived|came|turned up|received|showed up)|not (?:yet )?arrived": -2.4,
    r"still (?:waiting|no|not)": -1.8,
    r"wore out|worn out|wears out|gave up": -1.6,
    r"too (?:small|big|large|tight|loose|short|long|narrow|wide|expensive)": -1.4,
    r"runs? (?:small|large|big|narrow|huge|tiny)|swimming in": -1.2,
    r"too (?:many|much)": -1.0,
    r"(?:took|waited|waiting|wait) (?:\w+ ){0,2}(?:days|weeks|months|ages|forever|this long|so long)": -1.6,
    r"(?:didn't|doesn't|don't|does not|did not|not|stopped|won't) work(?:ing)?": -1.8,
    r"charged twice|double charged|please fix": -1.6,
    r"price[sd]? (?:\w+ ){0,2}(?:went|gone|go|going) up|price (?:rise|increase|hike)": -1.4,
    r"smells? (?:of|like)|fell off|lost (?:its|their) shape": -1.4,
    r"oh great|yeah right|thanks for nothing|just what i (?:wanted|needed)|if you (?:enjoy|like) being": -2.5,
    r"love (?:waiting|having to|paying for)": -2.0,
    r"keep (?:it )?up|keep doing what|plenty of room": 1.6,
    r"sorted (?:it|out|my|the)": 1.4,
    r"way too": -0.8,
    r"on hold": -1.2,
    r"no (?:answer|reply|response)": -1.6,
    r"nothing like|not as (?:described|pictured|advertised)": -1.8,
    r"(?:sent|send|sending) (?:\w+ ){0,2}back|money back": -1.2,
    r"(?:won't|will not|wouldn't|would not|never|not) (?:\w+ ){0,3}again": -2.0,
    r"(?:would|will|'d) (?:\w+ ){0,2}again": 1.8,
    r"worth every penny": 2.5,
    r"can't fault|cannot fault|could not fault|couldn't fault": 2.2,
    r"held up|holding up|still looks new": 1.8,
    r"spot on|true to size|fits? perfectly|perfect fit": 2.0,
    r"does the job|did the job|as described": 0.6,
    r"well packed|before the promised|ahead of schedule|next (?:day|morning)": 1.4,
    r"hassle[- ]free|no hassle|without (?:any )?hassle|no questions": 1.8,
}


class Sentiment:
    """The compound score (-1..1) and label of one text."""

    def __init__(
        self, words: dict[str, float] | None = None, phrases: dict[str, float] | None = None
    ) -> None:
        with warnings.catch_warnings():
            # it reads its lexicon with codecs.open, deprecated from Python 3.14 on
            warnings.simplefilter("ignore", DeprecationWarning)
            self._vader = SentimentIntensityAnalyzer()
        self._vader.lexicon.update(RETAIL_WORDS if words is None else words)
        placeholders: dict[str, str] = {}
        alternatives = []
        for n, (pattern, valence) in enumerate((RETAIL_PHRASES if phrases is None else phrases).items()):
            placeholder = f"retailphrase{chr(97 + n // 26)}{chr(97 + n % 26)}"
            self._vader.lexicon[placeholder] = valence
            placeholders[f"p{n}"] = placeholder
            alternatives.append(f"(?P<p{n}>{pattern})")
        # one pass over the text: at each position the earliest-listed phrase that matches wins
        self._phrases = (
            re.compile(rf"\b(?:{'|'.join(alternatives)})\b", re.IGNORECASE) if alternatives else None
        )
        self._placeholders = placeholders

    def compound(self, text: str) -> float:
        text = text.replace("\u2019", "'")
        if self._phrases is not None:
            text = self._phrases.sub(self._replace, text)
        return float(self._vader.polarity_scores(text)["compound"])

    def _replace(self, match: re.Match[str]) -> str:
        return self._placeholders[match.lastgroup or ""]


def label(compound: float) -> Label:
    if compound >= POSITIVE_FROM:
        return "positive"
    if compound <= NEGATIVE_TO:
        return "negative"
    return "neutral"
