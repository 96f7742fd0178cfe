"""What a matching job compares, how it finds candidates and when it merges: data, with defaults
for people.

A *field* is a person attribute read from profile traits under any of several common names
(`firstName`, `first_name`, `given_name` …), normalised, and compared in a way that suits it
(names by Jaro-Winkler with term-frequency adjustment, dates of birth with typo and distance
levels, postcodes by edits …). Fields that too few profiles have are left out of the model. A
*blocking rule* lists fields that must be equal for two profiles to be compared at all; a pair is a
candidate when any rule holds. The thresholds are match probabilities: at or above `auto_merge`
a pair is merged, from `review` up to it a pair waits in the review queue.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: How a field is compared (see `match.model.comparison_for`).
Compare = Literal["name", "date", "text", "address", "short", "postcode", "exact", "email", "phone"]


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Trait paths tried in order; the first non-empty value is the field's value.
    traits: list[str] = Field(min_length=1)
    compare: Compare
    #: Adjust a match on this field by how common the value is ("smith" counts less than "zappa").
    term_frequency: bool = False


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_merge: float = Field(0.95, gt=0, le=1)
    review: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.auto_merge:
            raise ValueError("review must not be above auto_merge")
        return self


class Training(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Random pairs drawn to estimate how often fields agree by chance (the u parameters).
    max_pairs: int = Field(5_000_000, ge=10_000, le=1_000_000_000)
    #: Blocking rules of the expectation-maximisation sessions (each estimates the fields it does
    #: not block on; rules whose fields are absent are skipped).
    em_blocking: list[list[str]] = Field(
        default_factory=lambda: [
            ["first_name", "last_name"],
            ["date_of_birth"],
            ["postcode", "street_number"],
            ["email"],
        ]
    )
    #: Fields that, all equal, almost surely mean the same person: used to estimate the share of
    #: pairs that match (the prior) with the recall below.
    deterministic: list[list[str]] = Field(
        default_factory=lambda: [
            ["first_name", "last_name", "date_of_birth"],
            ["first_name", "last_name", "postcode", "street_number"],
        ]
    )
    deterministic_recall: float = Field(0.7, gt=0, le=1)
    #: A field is used only if at least this share of profiles has it.
    min_coverage: float = Field(0.01, ge=0, le=1)


def _default_fields() -> dict[str, FieldSpec]:
    def spec(compare: Compare, *traits: str, tf: bool = False) -> FieldSpec:
        return FieldSpec(traits=list(traits), compare=compare, term_frequency=tf)

    return {
        "first_name": spec(
            "name", "firstName", "first_name", "given_name", "givenName", "firstname", "forename", tf=True
        ),
        "last_name": spec(
            "name", "lastName", "last_name", "surname", "family_name", "familyName", "lastname", tf=True
        ),
        "date_of_birth": spec(
            "date", "birthday", "date_of_birth", "dateOfBirth", "dob", "birth_date", "birthDate"
        ),
        "street_number": spec(
            "short",
            "address.street_number",
            "address.streetNumber",
            "street_number",
            "streetNumber",
            "house_number",
            "houseNumber",
        ),
        "street": spec(
            "address",
            "address.street",
            "address.line1",
            "street",
            "address_1",
            "address1",
            "address_line1",
            "addressLine1",
            "address",
        ),
        "address_2": spec(
            "text",
            "address.street2",
            "address.line2",
            "address_2",
            "address2",
            "address_line2",
            "addressLine2",
        ),
        "city": spec("text", "address.city", "city", "suburb", "town", "locality", tf=True),
        "postcode": spec(
            "postcode",
            "address.postalCode",
            "address.postal_code",
            "address.zip",
            "postalCode",
            "postal_code",
            "postcode",
            "zip",
            "zipcode",
            "zip_code",
        ),
        "state": spec("exact", "address.state", "state", "region", "province"),
        # identifiers already join profiles that share them: what is compared is the e-mail's
        # local part (without dots and +tags) and the phone's last nine digits
        "email": spec("email", "email"),
        "phone": spec("phone", "phone", "mobile", "phone_number", "phoneNumber"),
    }


class MatchConfig(BaseModel):
    """A matching job, as stored in `match_models.config` and accepted by `--config`."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, FieldSpec] = Field(default_factory=_default_fields)
    blocking: list[list[str]] = Field(
        default_factory=lambda: [
            ["date_of_birth"],
            ["first_name", "last_name"],
            ["postcode", "street_number"],
            ["last_name", "postcode"],
            ["first_name", "postcode"],
            ["first_name", "street_number"],
            ["last_name", "street_number"],
            ["street", "street_number"],
            ["street", "city"],
            ["email"],
            ["first_name_phonetic", "last_name_phonetic", "city"],
        ]
    )
    thresholds: Thresholds = Field(default_factory=Thresholds)
    training: Training = Field(default_factory=Training)

    @model_validator(mode="after")
    def _known_fields(self) -> MatchConfig:
        for where, rules in (
            ("blocking", self.blocking),
            ("training.em_blocking", self.training.em_blocking),
        ):
            for n, rule in enumerate(rules):
                if not rule:
                    raise ValueError(f"{where}[{n}] is empty")
                for name in rule:
                    base = name.removesuffix("_phonetic")
                    known = base in self.fields and (base == name or self.fields[base].compare == "name")
                    if not known:
                        raise ValueError(f"{where}[{n}] names the unknown field {name!r}")
        return self
