"""The password policy: long enough, not one of the passwords everyone tries first.

No list is downloaded: a breach corpus would be large and go stale. Instead a password is refused
when it is shorter than `MIN_LENGTH`, longer than `MAX_LENGTH` (argon2 would take it, but nobody
types that), one character repeated, a keyboard or digit run, the e-mail address (or its name
part), or a very common word or phrase with only digits and symbols around it ("Password123!",
"qwerty2024", "iloveyou!!"). This catches what credential-stuffing lists start with.
"""

from __future__ import annotations

import re

MIN_LENGTH, MAX_LENGTH = 10, 200

#: Words and phrases at the top of every leaked-password list (lower case, letters only).
COMMON = frozenset(
    [
        "password",
        "passwort",
        "passw0rd",
        "pass",
        "qwerty",
        "qwertz",
        "azerty",
        "asdf",
        "asdfgh",
        "asdfghjkl",
        "zxcvbn",
        "zxcvbnm",
        "qwertyuiop",
        "iloveyou",
        "letmein",
        "welcome",
        "welcome1",
        "monkey",
        "dragon",
        "master",
        "shadow",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "soccer",
        "hockey",
        "basketball",
        "superman",
        "batman",
        "trustno1",
        "freedom",
        "whatever",
        "admin",
        "administrator",
        "login",
        "abc",
        "abcdef",
        "abcdefg",
        "abcdefgh",
        "abcdefghij",
        "secret",
        "hello",
        "hellohello",
        "charlie",
        "michael",
        "jennifer",
        "jordan",
        "thomas",
        "hunter",
        "killer",
        "starwars",
        "pokemon",
        "computer",
        "internet",
        "summer",
        "winter",
        "spring",
        "autumn",
        "flower",
        "lovely",
        "loveme",
        "mustang",
        "ginger",
        "cookie",
        "cheese",
        "pepper",
        "orange",
        "banana",
        "chocolate",
        "google",
        "samsung",
        "apple",
        "microsoft",
        "linkedin",
        "facebook",
        "changeme",
        "default",
        "test",
        "tester",
        "testing",
        "guest",
        "user",
        "qazwsx",
        "zaq1zaq1",
        "qwe",
        "qweasd",
        "qweasdzxc",
        "zaq12wsx",
        "abc123",
        "aa",
        "bb",
        "love",
        "ashley",
        "daniel",
        "nicole",
        "jessica",
        "matthew",
        "andrew",
        "joshua",
        "maggie",
        "buster",
        "tigger",
        "purple",
        "yankees",
        "dallas",
        "access",
        "shopping",
        "opencdp",
        "customer",
        "account",
    ]
)
_RUNS = ("0123456789", "9876543210", "abcdefghijklmnopqrstuvwxyz", "qwertyuiop", "asdfghjkl", "zxcvbnm")


_LEET = str.maketrans("013457@$", "oleastas")


class WeakPassword(ValueError):
    """Why a password was refused, in words for the person choosing it."""


def _is_run(text: str) -> bool:
    return len(text) >= 4 and any(text in run or text in run * 3 for run in _RUNS)


def check(password: str, email: str = "") -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Use at most {MAX_LENGTH} characters.")
    lowered = password.lower()
    if len(set(lowered)) <= 2:
        raise WeakPassword("Use more than one or two different characters.")
    if _is_run(lowered):
        raise WeakPassword("A run of keys or digits is among the first passwords guessed.")
    email = email.strip().lower()
    name = email.partition("@")[0]
    if email and (lowered == email or (len(name) >= 4 and name in lowered and len(lowered) - len(name) < 6)):
        raise WeakPassword("Do not use your e-mail address in your password.")
    # the word inside: digits and symbols around it dropped, digits within it read as letters
    middle = re.sub(r"^[^a-z]+|[^a-z]+$", "", lowered).translate(_LEET)
    core = re.sub(r"[^a-z]+", " ", middle).split()
    letters = re.sub(r"[^a-z]", "", lowered)
    if not letters or _is_run(letters) or "".join(core) in COMMON or (len(core) == 1 and core[0] in COMMON):
        raise WeakPassword("This password is among the most common ones. Choose a phrase of your own.")
    if len(core) >= 1 and all(word in COMMON for word in core) and len(letters) < MIN_LENGTH + 4:
        raise WeakPassword("This password is among the most common ones. Choose a phrase of your own.")
