"""The Fellegi-Sunter model, with Splink on its embedded DuckDB backend.

Parameters are estimated without labels, as Splink does: the share of matching pairs from
near-certain rules, the u probabilities (chance agreement) from random pairs, the m probabilities
(agreement among true matches) by expectation maximisation in sessions blocked on different
fields. The trained model is Splink's settings JSON, stored with the job, so a later run scores
with the same parameters. Only `build_linker`'s backend is DuckDB-specific: Splink's Spark backend
takes the same settings for data that do not fit one machine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from opencdp import logs
from opencdp.match.config import FieldSpec, MatchConfig
from opencdp.match.records import Records, phonetic_field

log = logs.get("opencdp.match")

#: Candidate pairs scored at once (above it, the left side is split into chunks).
PAIRS_PER_CHUNK = 20_000_000

#: Words for the fields in explanations ("same date of birth").
FIELD_WORDS = {
    "first_name": "first name",
    "last_name": "last name",
    "date_of_birth": "date of birth",
    "street_number": "street number",
    "street": "street",
    "address_2": "address line 2",
    "city": "city",
    "postcode": "postcode",
    "state": "state",
    "email": "e-mail name",
    "phone": "phone",
}


def _word(name: str) -> str:
    return FIELD_WORDS.get(name, name.replace("_", " "))


def comparison_for(name: str, spec: FieldSpec) -> Any:
    """A Splink comparison for one field, by how the field is compared."""
    import splink.comparison_library as cl

    comparison: Any
    if spec.compare == "name":
        comparison = cl.NameComparison(name, dmeta_col_name=phonetic_field(name))
    elif spec.compare == "date":
        comparison = cl.DateOfBirthComparison(
            name, input_is_string=True, datetime_format="%Y-%m-%d", invalid_dates_as_null=False
        )
    elif spec.compare in ("text", "address"):
        comparison = cl.JaroWinklerAtThresholds(name, [0.9, 0.7])
    elif spec.compare in ("short", "postcode", "phone"):
        comparison = cl.LevenshteinAtThresholds(name, [1] if spec.compare == "short" else [1, 2])
    elif spec.compare == "email":
        comparison = cl.JaroWinklerAtThresholds(name, [0.92])
    else:
        comparison = cl.ExactMatch(name)
    if spec.term_frequency:
        comparison = comparison.configure(term_frequency_adjustments=True)
    return comparison


@dataclass
class Plan:
    """What a run can use of the configuration, given the data: fields with enough coverage, and
    the rules whose fields are all among them."""

    fields: list[str]
    blocking: list[list[str]]
    em_blocking: list[list[str]]
    deterministic: list[list[str]]
    left_out: dict[str, float]

    @classmethod
    def of(cls, config: MatchConfig, records: Records) -> Plan:
        floor = config.training.min_coverage
        used = [n for n in config.fields if records.coverage.get(n, 0.0) >= floor]
        left_out = {n: round(records.coverage.get(n, 0.0), 4) for n in config.fields if n not in used}

        def usable(rules: list[list[str]]) -> list[list[str]]:
            return [rule for rule in rules if all(n.removesuffix("_phonetic") in used for n in rule)]

        return cls(
            used,
            usable(config.blocking),
            usable(config.training.em_blocking),
            usable(config.training.deterministic),
            left_out,
        )


class ModelError(Exception):
    """The data cannot support a model (too few fields or records): the message says why."""


def _connection(records: Records) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.register("records_arrow", records.table)
    conn.execute("CREATE TABLE records AS SELECT * FROM records_arrow")
    conn.unregister("records_arrow")
    return conn


def rule_pair_counts(conn: duckdb.DuckDBPyConnection, blocking: list[list[str]]) -> list[int]:
    """Pairs each blocking rule generates on its own (pairs also found by another rule count in
    both): exact, from the block sizes, without building a pair."""
    counts = []
    for rule in blocking:
        cols = ", ".join(f'"{c}"' for c in rule)
        not_null = " AND ".join(f'"{c}" IS NOT NULL' for c in rule)
        row = conn.execute(
            f"SELECT coalesce(sum(n * (n - 1) // 2), 0) FROM "
            f"(SELECT count(*) AS n FROM records WHERE {not_null} GROUP BY {cols})"
        ).fetchall()
        counts.append(int(row[0][0]) if row and row[0][0] is not None else 0)
    return counts


def _settings(plan: Plan, config: MatchConfig) -> Any:
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=[block_on(*rule) for rule in plan.blocking],
        comparisons=[comparison_for(n, config.fields[n]) for n in plan.fields],
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
    )


@dataclass
class Linkage:
    """A Splink linker over one run's records."""

    linker: Any
    conn: duckdb.DuckDBPyConnection
    frame: Any


def build_linker(records: Records, settings: Any) -> Linkage:
    from splink import DuckDBAPI, Linker

    conn = _connection(records)
    db_api = DuckDBAPI(conn)
    frame = db_api.register("records")
    return Linkage(Linker(frame, settings, log_level=logging.ERROR), conn, frame)


def train(
    records: Records, config: MatchConfig, plan: Plan, step: Callable[[str], None] | None = None
) -> tuple[Linkage, dict[str, Any]]:
    """Estimate the model's parameters from the records; the linker and Splink's model JSON."""
    from splink import block_on

    if len(records) < 20:
        raise ModelError(f"{len(records)} profiles: at least 20 are needed to estimate a model")
    if len(plan.fields) < 2:
        raise ModelError(
            f"only {plan.fields or 'no fields'} present on enough profiles; matching needs at least "
            f"two of: {', '.join(config.fields)} (coverage: {plan.left_out})"
        )
    if not plan.blocking:
        raise ModelError("no blocking rule has all its fields present; add rules over the fields present")
    linkage = build_linker(records, _settings(plan, config))
    training = linkage.linker.training
    say = step or (lambda _: None)
    say("the share of pairs that match")
    if plan.deterministic:
        training.estimate_probability_two_random_records_match(
            [block_on(*rule) for rule in plan.deterministic], recall=config.training.deterministic_recall
        )
    say("chance agreement (u) from random pairs")
    training.estimate_u_using_random_sampling(max_pairs=config.training.max_pairs, seed=1)
    estimated: set[str] = set()
    tried: list[list[str]] = []
    for rule in plan.em_blocking:
        tried.append(rule)
        if set(plan.fields) - set(rule) <= estimated:
            continue  # every field this session could estimate is estimated already
        say("agreement among matches (m) by EM, blocked on " + " + ".join(rule))
        if _expectation_maximisation(linkage, rule):
            estimated |= set(plan.fields) - set(rule)
    for name in plan.fields:
        if name in estimated:
            continue  # every rule above blocked on it: estimate it from a rule that does not
        extra = next((r for r in plan.blocking if name not in r and r not in tried), None)
        if extra is None:
            continue  # Splink keeps its default m for this field, and says so in the log
        tried.append(extra)
        say("agreement among matches (m) by EM, blocked on " + " + ".join(extra))
        if _expectation_maximisation(linkage, extra):
            estimated |= set(plan.fields) - set(extra)
    if not estimated:
        raise ModelError(
            "no expectation-maximisation session converged on these profiles (too few candidate "
            "pairs that look alike?): add blocking rules in training.em_blocking"
        )
    model: dict[str, Any] = linkage.linker.misc.save_model_to_json()
    return linkage, model


def _expectation_maximisation(linkage: Linkage, rule: list[str]) -> bool:
    """One EM session; False when it degenerated (on small or odd data Splink can drive an m
    probability to exactly 0, which it then refuses): the linker is restored to the estimates
    before the session (a failed session would leave its blocked comparisons switched off)."""
    from splink import Linker, block_on

    before = linkage.linker.misc.save_model_to_json()
    try:
        linkage.linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(*rule), estimate_without_term_frequencies=True
        )
    except ValueError as exc:
        log.warning("EM session skipped", blocked_on=rule, reason=str(exc)[:120])
        linkage.linker = Linker(linkage.frame, before, log_level=logging.ERROR)
        return False
    return True


def untrained(model: dict[str, Any]) -> list[str]:
    """Fields with a comparison level whose m or u the data did not estimate (too few pairs of
    that kind): Splink scores those levels with its defaults."""
    return [
        comparison["output_column_name"]
        for comparison in model.get("comparisons", [])
        if any(
            not level.get("is_null_level") and ("m_probability" not in level or "u_probability" not in level)
            for level in comparison.get("comparison_levels", [])
        )
    ]


def reuse(records: Records, model: dict[str, Any]) -> Linkage:
    """A linker with a stored model's parameters (no training)."""
    return build_linker(records, model)


@dataclass
class ScoredPair:
    left: str
    right: str
    probability: float
    match_weight: float
    comparisons: list[dict[str, Any]]
    explanation: str


def _levels(linker: Any) -> dict[str, dict[int, str]]:
    """Per field, the label of each comparison level (by its gamma value)."""
    labels: dict[str, dict[int, str]] = {}
    for comparison in linker._settings_obj.comparisons:
        name = comparison.output_column_name
        labels[name] = {
            lvl.comparison_vector_value: lvl.label_for_charts for lvl in comparison.comparison_levels
        }
    return labels


def _phrase(name: str, kind: str, level: int, top: int, label: str, measure: float | None) -> str:
    word = _word(name)
    if level == 0:
        return f"{word} differs"
    if level == top:
        return f"same {word}"
    if "intersect" in label.lower():
        return f"{word} sounds alike"
    if kind in ("name", "text", "address", "email") and measure is not None:
        return f"{word} similar (JW {measure:.2f})"
    if kind == "date" and measure is not None:
        return f"{word} {int(measure)} days apart" if measure >= 1 else f"{word} one typo apart"
    if measure is not None:
        return f"{word} {int(measure)} edit{'s' if measure != 1 else ''} apart"
    return f"{word} similar"


def predict(
    linkage: Linkage,
    config: MatchConfig,
    plan: Plan,
    threshold: float,
    candidate_pairs: int,
    ids: list[str],
) -> list[ScoredPair]:
    """Every candidate pair at or above `threshold`, with the comparisons that decided it. Many
    candidate pairs are scored in chunks of the left side, so memory stays bounded."""
    chunks = max(1, math.ceil(candidate_pairs / PAIRS_PER_CHUNK))
    result = linkage.linker.inference.predict(
        threshold_match_probability=threshold, num_chunks_left=chunks, num_chunks_right=1
    )
    table = result.physical_name
    measures = []
    for name in plan.fields:
        kind = config.fields[name].compare
        left, right = f'"{name}_l"', f'"{name}_r"'
        if kind in ("name", "text", "address", "email"):
            measures.append(f"jaro_winkler_similarity({left}, {right}) AS m_{name}")
        elif kind == "date":
            measures.append(
                f"abs(date_diff('day', try_strptime({left}, '%Y-%m-%d'), try_strptime({right}, '%Y-%m-%d')))"
                f" AS m_{name}"
            )
        else:
            measures.append(f"levenshtein({left}, {right}) AS m_{name}")
    present = {row[0] for row in linkage.conn.execute(f"DESCRIBE {table}").fetchall()}
    columns = ["unique_id_l", "unique_id_r", "match_probability", "match_weight"]
    for prefix in ("gamma", "mw"):
        columns += [f'"{prefix}_{n}"' if f"{prefix}_{n}" in present else "NULL" for n in plan.fields]
    rows = linkage.conn.execute(f"SELECT {', '.join(columns + measures)} FROM {table}").fetchall()
    labels = _levels(linkage.linker)
    n = len(plan.fields)
    pairs = []
    for row in rows:
        gammas, weights, values = row[4 : 4 + n], row[4 + n : 4 + 2 * n], row[4 + 2 * n :]
        parts: list[tuple[float, str]] = []
        comparisons = []
        for name, gamma, weight, measure in zip(plan.fields, gammas, weights, values, strict=True):
            if gamma is None or gamma < 0:
                continue  # one side has no value: no evidence either way
            top = max(labels[name])
            label = labels[name].get(int(gamma), "")
            comparisons.append(
                {
                    "field": name,
                    "level": int(gamma),
                    "label": label,
                    "match_weight": round(float(weight), 4),
                    "bayes_factor": round(2.0 ** float(weight), 4),
                }
            )
            phrase = _phrase(name, config.fields[name].compare, int(gamma), top, label, measure)
            parts.append((float(weight), phrase))
        for_ = [p for w, p in sorted(parts, key=lambda item: -item[0]) if w > 0]
        against = [p for w, p in sorted(parts, key=lambda item: item[0]) if w < 0]
        sentence = ", ".join(for_) or "no field agrees"
        if against:
            sentence += "; " + ", ".join(against)
        probability = float(row[2])
        pairs.append(
            ScoredPair(
                ids[row[0]],
                ids[row[1]],
                probability,
                float(row[3]),
                comparisons,
                f"{sentence}: match probability {_probability_text(probability)}",
            )
        )
    result.drop_table_from_database_and_remove_from_cache()
    return pairs


def _probability_text(probability: float) -> str:
    """0.998, or 0.99997 where three decimals would round a near-certain match up to 1."""
    if probability < 0.9995:
        return f"{probability:.3f}"
    text = f"{probability:.6f}".rstrip("0").rstrip(".")
    return "1.0" if text == "1" else text
