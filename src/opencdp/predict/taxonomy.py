"""Interests from text: a taxonomy as data (interest → words and phrases) matched on word stems.

A list a marketer can read and change beats a topic model here: the interests must be the shop's own
names (to build segments on), there is no labelled data to learn them from, and it runs offline in
microseconds. Words and texts are both lower-cased and stemmed (Snowball English, so "jackets",
"deliveries" and "sizing" match "jacket", "delivery" and "size"); a phrase matches its stems in order.
The default covers the demo shop's categories (opencdp.demo.catalogue) and the service topics shoppers
write about; the job's `taxonomy` option replaces it.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

import snowballstemmer

DEFAULT_TAXONOMY: dict[str, list[str]] = {
    "shoes": [
        "shoe", "trainer", "sneaker", "boot", "sandal", "heel", "loafer", "slipper", "wellies",
        "welly", "footwear", "sole", "insole", "running shoe", "hiking boot", "laces",
    ],
    "jackets": [
        "jacket", "coat", "parka", "sleeve", "hood", "collar", "anorak", "raincoat", "fleece", "gilet",
        "shell", "hoodie", "windbreaker", "blazer", "puffer", "down jacket", "rain jacket",
    ],
    "accessories": [
        "accessory", "bag", "backpack", "rucksack", "wallet", "purse", "belt", "scarf", "hat", "cap",
        "gloves", "mittens", "sunglasses", "watch", "earring", "necklace", "bracelet", "jewellery",
        "jewelry", "umbrella", "water bottle", "strap", "socks",
    ],
    "outdoor": [
        "outdoor", "outdoors", "tent", "camping", "camp", "hiking", "hike", "trekking", "trek", "trail",
        "sleeping bag", "stove", "head torch", "headlamp", "climbing", "harness", "kayak", "canoe",
        "bike", "cycling", "dry bag", "cooler", "camping chair", "walking poles", "trekking poles",
    ],
    "kids": [
        "kid", "kids", "child", "children", "son", "daughter", "toddler", "baby", "niece", "nephew",
        "grandson", "granddaughter", "twins", "school", "nursery", "year old", "little one", "boy",
        "girl", "youngest", "eldest",
    ],
    "delivery": [
        "delivery", "deliver", "delivered", "shipping", "shipped", "ship", "dispatch", "dispatched",
        "courier", "parcel", "package", "postage", "tracking", "arrived", "arrive", "arrival",
        "driver", "postman", "next day", "in transit",
    ],
    "returns": [
        "return", "returned", "refund", "refunded", "exchange", "exchanged", "send back", "sent back",
        "replacement", "money back", "return label",
    ],
    "price": [
        "price", "priced", "pricey", "expensive", "cheap", "cheaper", "cost", "costs", "value for money",
        "value", "worth the money", "bargain", "sale", "discount", "overpriced", "affordable",
        "half price", "deal", "pay for", "penny", "pounds", "euros", "dollars",
    ],
    "quality": [
        "quality", "material", "fabric", "stitching", "seam", "durable", "sturdy", "flimsy", "broke",
        "broken", "fell apart", "falls apart", "came apart", "wear out", "wore out", "lasted", "long lasting",
        "held up", "build", "faulty", "defective", "pilled", "pilling", "ripped", "tear", "zip",
        "zipper", "well made", "badly made", "cheaply made",
    ],
    "sizing": [
        "size", "sizing", "fit", "fits", "fitting", "too small", "too big", "too tight", "too loose",
        "too short", "too long", "too narrow", "runs small", "runs large", "size guide", "size chart",
        "true to size", "tight", "loose", "roomy", "narrow", "wide fit", "half size",
    ],
    "service": [
        "customer service", "service", "support", "staff", "team", "agent", "chat", "on the phone",
        "by phone", "phone call", "call", "hold", "helpful", "unhelpful", "rude", "friendly", "emailed",
        "response", "answer", "reply", "complaint",
    ],
    "payment": [
        "payment", "pay", "paid", "charged", "charge", "card", "credit card", "paypal", "invoice",
        "instalment", "installment", "declined", "discount code", "voucher", "gift card", "klarna",
        "billing", "apple pay",
    ],
    "website": [
        "website", "site", "app", "checkout", "log in", "login", "account", "password", "page",
        "search", "filter", "pop-up", "popup", "online shop", "basket", "cart",
    ],
}  # fmt: skip

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STEMMER = snowballstemmer.stemmer("english")


def stems(text: str) -> list[str]:
    """The text's words, lower-cased and stemmed."""
    return [_stem(word) for word in _WORD.findall(text.lower().replace("\u2019", "'").replace("-", " "))]


@functools.lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    """Snowball in pure Python takes ~10 µs a word; shop texts reuse a small vocabulary."""
    return str(_STEMMER.stemWord(word))


class Taxonomy:
    """Counts how often each interest is mentioned in a text (a phrase or word once per occurrence)."""

    def __init__(self, interests: dict[str, list[str]]) -> None:
        self.interests = interests
        #: first stem → [(the phrase's stems, interest)], longest phrases first
        self._index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for interest, terms in interests.items():
            for term in terms:
                key = tuple(stems(term))
                if key:
                    self._index.setdefault(key[0], []).append((key, interest))
        for entries in self._index.values():
            entries.sort(key=lambda entry: -len(entry[0]))

    def mentions(self, text: str) -> Counter[str]:
        """interest → number of mentions; a longer phrase wins over its own first word ("sleeping
        bag" is outdoor, not a bag), and each position counts towards one interest once."""
        words = stems(text)
        found: Counter[str] = Counter()
        i = 0
        while i < len(words):
            step = 1
            seen: set[str] = set()
            for key, interest in self._index.get(words[i], ()):
                if tuple(words[i : i + len(key)]) == key:
                    if not seen:
                        step = len(key)
                    elif len(key) < step:
                        break
                    if interest not in seen:
                        seen.add(interest)
                        found[interest] += 1
            i += step
        return found


def validate(taxonomy: object) -> dict[str, list[str]]:
    """A taxonomy option as given by a user: {interest: [word or phrase, …]}, or ValueError."""
    if not isinstance(taxonomy, dict) or not taxonomy:
        raise ValueError("taxonomy must be a non-empty object {interest: [words or phrases]}")
    for interest, terms in taxonomy.items():
        if not isinstance(interest, str) or not interest:
            raise ValueError("every interest in the taxonomy needs a name")
        if not isinstance(terms, list) or not all(isinstance(t, str) and stems(t) for t in terms):
            raise ValueError(f"taxonomy: interest {interest!r} needs a list of words or phrases")
    return {interest: list(terms) for interest, terms in taxonomy.items()}
