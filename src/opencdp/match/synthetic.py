"""Synthetic people with planted duplicates: records of the same person with typos, a missing
field, a swapped day and month, and no shared identifier. Used by tests and the scale benchmark
(the truth is known: records of one person share `person`)."""

from __future__ import annotations

import random
import string
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

_FIRST = [
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "christopher",
    "nancy",
    "daniel",
    "lisa",
    "matthew",
    "betty",
    "anthony",
    "margaret",
    "mark",
    "sandra",
    "donald",
    "ashley",
    "steven",
    "kimberly",
    "paul",
    "emily",
    "andrew",
    "donna",
    "joshua",
    "michelle",
    "kenneth",
    "dorothy",
    "kevin",
    "carol",
    "brian",
    "amanda",
    "george",
    "melissa",
    "timothy",
    "deborah",
    "ronald",
    "stephanie",
    "edward",
    "rebecca",
    "jason",
    "sharon",
    "jeffrey",
    "laura",
    "ryan",
    "cynthia",
    "jacob",
    "kathleen",
    "gary",
    "amy",
    "nicholas",
    "angela",
    "eric",
    "shirley",
    "jonathan",
    "anna",
    "stephen",
    "brenda",
    "larry",
    "pamela",
    "justin",
    "emma",
    "scott",
    "nicole",
    "brandon",
    "helen",
    "benjamin",
    "samantha",
    "samuel",
    "katherine",
    "gregory",
    "christine",
    "alexander",
    "debra",
    "frank",
    "rachel",
    "patrick",
    "carolyn",
    "raymond",
    "janet",
    "jack",
    "catherine",
    "dennis",
    "maria",
    "jerry",
    "heather",
    "tyler",
    "diane",
    "aaron",
    "ruth",
    "jose",
    "julie",
    "adam",
    "olivia",
    "nathan",
    "joyce",
    "henry",
    "virginia",
    "douglas",
    "victoria",
    "zachary",
    "kelly",
    "peter",
    "lauren",
    "kyle",
    "christina",
    "ethan",
    "joan",
    "walter",
    "evelyn",
    "noah",
    "judith",
    "jeremy",
    "megan",
    "christian",
    "andrea",
    "keith",
    "cheryl",
    "roger",
    "hannah",
    "terry",
    "jacqueline",
    "gerald",
    "martha",
    "harold",
    "gloria",
    "sean",
    "teresa",
    "austin",
    "ann",
    "carl",
    "sara",
    "arthur",
    "madison",
    "lawrence",
    "frances",
    "dylan",
    "kathryn",
    "jesse",
    "janice",
    "jordan",
    "jean",
    "bryan",
    "abigail",
    "billy",
    "alice",
    "joe",
    "julia",
    "bruce",
    "judy",
    "gabriel",
    "sophia",
    "logan",
    "grace",
    "albert",
    "denise",
    "willie",
    "amber",
    "alan",
    "doris",
    "juan",
    "marilyn",
    "wayne",
    "danielle",
    "elijah",
    "beverly",
    "randy",
    "isabella",
    "roy",
    "theresa",
]
_SYLLABLES = [
    "an",
    "ar",
    "ba",
    "be",
    "bo",
    "ca",
    "ce",
    "co",
    "da",
    "de",
    "di",
    "do",
    "el",
    "en",
    "er",
    "fa",
    "fe",
    "fi",
    "ga",
    "ge",
    "go",
    "ha",
    "he",
    "hi",
    "ka",
    "ke",
    "ki",
    "la",
    "le",
    "li",
    "lo",
    "ma",
    "me",
    "mi",
    "mo",
    "na",
    "ne",
    "ni",
    "no",
    "or",
    "pa",
    "pe",
    "pi",
    "ra",
    "re",
    "ri",
    "ro",
    "sa",
    "se",
    "si",
    "so",
    "ta",
    "te",
    "ti",
    "to",
    "va",
    "ve",
    "vi",
    "wa",
    "we",
    "ya",
    "yo",
    "za",
    "ze",
    "ber",
    "ton",
    "son",
    "ley",
    "man",
    "sen",
    "ker",
    "der",
    "ling",
    "wood",
    "field",
    "ford",
    "ham",
    "well",
]
_STREET_TYPES = ("street", "road", "avenue", "place", "crescent", "close", "drive", "lane", "court")
_ABBREVIATIONS = {"street": "st", "road": "rd", "avenue": "ave", "place": "pl", "drive": "dr", "lane": "ln"}


@dataclass
class Person:
    first_name: str
    last_name: str
    birthday: str
    street_number: str
    street: str
    city: str
    postcode: str


@dataclass
class Record:
    """One record of a person, as a CRM or shop would hold it."""

    record_id: str
    person: int
    traits: dict[str, Any]


def _made_up(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts))


def _zipf_pick(rng: random.Random, values: list[str], s: float = 1.0) -> str:
    """A value with a frequency that falls with its rank, as names do."""
    rank = int(len(values) ** rng.random() ** (1 / s)) - 1
    return values[max(0, min(rank, len(values) - 1))]


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 2:
        return text + rng.choice(string.ascii_lowercase)
    i = rng.randrange(len(text) - 1)
    kind = rng.randrange(4)
    if kind == 0:  # substitution
        return text[:i] + rng.choice(string.ascii_lowercase) + text[i + 1 :]
    if kind == 1:  # deletion
        return text[:i] + text[i + 1 :]
    if kind == 2:  # insertion
        return text[:i] + rng.choice(string.ascii_lowercase) + text[i:]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]  # transposition


def _people(rng: random.Random, n: int) -> Iterator[Person]:
    surnames = sorted({_made_up(rng, rng.choice((2, 3))) for _ in range(20_000)})
    first_names = list(_FIRST) + sorted({_made_up(rng, 2) for _ in range(3_000)})
    streets = sorted({_made_up(rng, 2) + " " + rng.choice(_STREET_TYPES) for _ in range(30_000)})
    cities = sorted({_made_up(rng, rng.choice((2, 3))) for _ in range(3_000)})
    # a big city has many postcodes (one per few streets), a village one
    postcodes = [
        [f"{rng.randrange(1000, 99000):05d}" for _ in range(max(1, 200 // (rank + 1)))]
        for rank in range(len(cities))
    ]
    start = date(1935, 1, 1)
    for _ in range(n):
        city_at = int(len(cities) ** rng.random()) - 1
        street = rng.choice(streets)
        codes = postcodes[city_at]
        yield Person(
            _zipf_pick(rng, first_names, 1.3),
            _zipf_pick(rng, surnames, 1.1),
            (start + timedelta(days=rng.randrange(25_000))).isoformat(),
            str(rng.randrange(1, 300)),
            street,
            cities[city_at],
            codes[zlib.crc32(street.encode()) % len(codes)],
        )


def _traits(person: Person) -> dict[str, Any]:
    return {
        "firstName": person.first_name,
        "lastName": person.last_name,
        "birthday": person.birthday,
        "address": {
            "street_number": person.street_number,
            "street": person.street,
            "city": person.city,
            "postalCode": person.postcode,
        },
    }


def _corrupt(rng: random.Random, person: Person) -> dict[str, Any]:
    """A second record of the person: one or two fields changed the way data entry does."""
    traits = _traits(person)
    address = traits["address"]
    for change in rng.sample(range(7), rng.choice((1, 1, 2))):
        if change == 0:
            traits["firstName"] = _typo(rng, person.first_name)
        elif change == 1:
            traits["lastName"] = _typo(rng, person.last_name)
        elif change == 2:
            y, m, d = person.birthday.split("-")
            traits["birthday"] = f"{y}-{d}-{m}" if int(d) <= 12 else f"{y}-{m}-{_typo(rng, d)[:2]}"
        elif change == 3:
            address.pop("street_number")
        elif change == 4:
            name, kind = person.street.rsplit(" ", 1)
            address["street"] = f"{name} {_ABBREVIATIONS.get(kind, kind)}"
        elif change == 5:
            address["city"] = _typo(rng, person.city)
        else:
            address["postalCode"] = _typo(rng, person.postcode)
    return traits


def records(n: int, duplicate_share: float = 0.1, seed: int = 7) -> Iterator[Record]:
    """`n` records: people, and for `duplicate_share` of them a second record (a few a third),
    shuffled into place right after the person so the truth stays streamable."""
    rng = random.Random(seed)
    made = 0
    for person_no, person in enumerate(_people(rng, n)):
        if made >= n:
            return
        yield Record(f"c{person_no}", person_no, _traits(person))
        made += 1
        copies = 0
        if rng.random() < duplicate_share:
            copies = 2 if rng.random() < 0.1 else 1
        for k in range(copies):
            if made >= n:
                return
            yield Record(f"c{person_no}-{k + 1}", person_no, _corrupt(rng, person))
            made += 1
