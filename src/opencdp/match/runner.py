"""A matching run: read the profiles, train or reuse the model, score candidate pairs, merge those
above the auto-merge threshold and queue those above the review threshold.

Merges are `Identity Matched` events (`match.merges`), so processing applies them through the
identity graph with its merge protection. Decisions stand: a pair decided before (merged, accepted,
rejected, skipped or pending review) is not proposed again, nor is a pair an operator split apart.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from opencdp import logs
from opencdp.background import OnePerName
from opencdp.identity.graph import MATCH_SOURCE
from opencdp.identity.identifiers import Identifier, IdentityRules
from opencdp.log.append import LogAppender
from opencdp.log.lock import lock_log
from opencdp.match.config import MatchConfig
from opencdp.match.merges import merge_event_row, merge_properties
from opencdp.match.model import (
    ModelError,
    Plan,
    ScoredPair,
    predict,
    reuse,
    rule_pair_counts,
    train,
    untrained,
)
from opencdp.match.records import Records, read_records
from opencdp.privacy.consent_events import system_source_id
from opencdp.store.dialect import insert_ignoring_duplicates
from opencdp.store.schema import (
    events,
    identities,
    identity_rejections,
    match_candidates,
    match_models,
)

log = logs.get("opencdp.match")

DEFAULT_MODEL = "people"
#: Merges written per transaction (each holds the log's append lock briefly, as an import does).
WRITE_BATCH = 1_000


class MatchError(Exception):
    """A run that cannot go on; the message says why and what to change."""


@dataclass
class Hooks:
    """How a run reports progress (the CLI draws bars; the API and tests pass nothing)."""

    start: Callable[[str, int | None], None] = lambda label, total: None
    advance: Callable[[int], None] = lambda n: None
    step: Callable[[str], None] = lambda text: None


@dataclass
class Summary:
    model: str
    profiles: int = 0
    fields: list[str] = field(default_factory=list)
    fields_left_out: dict[str, float] = field(default_factory=dict)
    #: fields with a level the data did not estimate (scored with Splink's default parameters)
    fields_with_defaults: list[str] = field(default_factory=list)
    #: [{"rule": "first_name + last_name", "pairs": n}] as the rules are listed
    blocking: list[dict[str, Any]] = field(default_factory=list)
    trained: bool = False
    scored_pairs: int = 0
    auto_merges: int = 0
    #: pairs above the threshold already joined through other merges of this run
    redundant: int = 0
    queued_for_review: int = 0
    decided_before: int = 0
    rejected_by_operator: int = 0
    merge_protection: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    dry_run: bool = False
    #: the operator said no when asked to confirm: nothing was written
    cancelled: bool = False
    #: with --dry-run: the merges that would be made, [{"left", "right", "probability", "explanation"}]
    would_merge: list[dict[str, Any]] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "would_merge" or self.dry_run}


def stored_config(engine: sa.Engine, name: str) -> tuple[MatchConfig | None, dict[str, Any] | None]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(match_models).where(match_models.c.name == name)).first()
    if row is None:
        return None, None
    return MatchConfig.model_validate(row.config), row.model


def _save(engine: sa.Engine, name: str, config: MatchConfig, values: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        exists = conn.execute(sa.select(match_models.c.name).where(match_models.c.name == name)).first()
        if exists is None:
            conn.execute(
                match_models.insert().values(
                    name=name, config=config.model_dump(), created_at=now, updated_at=now, **values
                )
            )
        else:
            conn.execute(
                match_models.update()
                .where(match_models.c.name == name)
                .values(config=config.model_dump(), updated_at=now, **values)
            )


def _decided_pairs(conn: sa.Connection, name: str) -> set[frozenset[Identifier]]:
    rows = conn.execute(
        sa.select(
            match_candidates.c.left_type,
            match_candidates.c.left_value,
            match_candidates.c.right_type,
            match_candidates.c.right_value,
        ).where(match_candidates.c.model == name)
    )
    return {frozenset((Identifier(r[0], r[1]), Identifier(r[2], r[3]))) for r in rows}


def _split_profiles(conn: sa.Connection) -> set[frozenset[str]]:
    """Profile pairs an operator split apart (a rejected link between their identifiers)."""
    left, right = identities.alias("l"), identities.alias("r")
    rows = conn.execute(
        sa.select(left.c.profile_id, right.c.profile_id)
        .select_from(identity_rejections)
        .join(
            left,
            sa.and_(
                left.c.type == identity_rejections.c.left_type,
                left.c.value == identity_rejections.c.left_value,
            ),
        )
        .join(
            right,
            sa.and_(
                right.c.type == identity_rejections.c.right_type,
                right.c.value == identity_rejections.c.right_value,
            ),
        )
    )
    return {frozenset((a, b)) for a, b in rows if a and b and a != b}


class _Clusters:
    """Union-find over the profiles this run merges, with their identifier counts, so that the
    run proposes no merge that merge protection would refuse."""

    def __init__(self, counts: dict[str, dict[str, int]], limits: dict[str, int]) -> None:
        self.parent: dict[str, str] = {}
        self.counts = counts
        self.limits = limits

    def find(self, item: str) -> str:
        root = item
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(item, item) != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def allowed(self, a: str, b: str) -> bool:
        ca, cb = self.counts.get(a, {}), self.counts.get(b, {})
        return all(ca.get(k, 0) + cb.get(k, 0) <= limit for k, limit in self.limits.items())

    def union(self, a: str, b: str) -> None:
        ca, cb = self.counts.get(a, {}), self.counts.get(b, {})
        self.counts[a] = {k: ca.get(k, 0) + cb.get(k, 0) for k in ca.keys() | cb.keys()}
        self.parent[b] = a


def run(
    engine: sa.Engine,
    name: str = DEFAULT_MODEL,
    config: MatchConfig | None = None,
    retrain: bool = False,
    dry_run: bool = False,
    hooks: Hooks | None = None,
    rules: IdentityRules | None = None,
    confirm: Callable[[Summary], bool] | None = None,
) -> Summary:
    """One matching run; see the module docstring. Processing applies the merges afterwards."""
    hooks = hooks or Hooks()
    rules = rules or IdentityRules.from_env()
    clock = time.perf_counter()
    stored, model = stored_config(engine, name)
    if config is None:
        config = stored or MatchConfig()
    if stored is not None and stored != config:
        retrain = True  # the stored parameters belong to another configuration
    summary = Summary(name, dry_run=dry_run, thresholds=config.thresholds.model_dump())

    with engine.connect() as conn:
        total = int(
            conn.execute(sa.text("SELECT count(*) FROM profiles WHERE merged_into IS NULL")).scalar_one()
        )
    hooks.start("reading profiles", total)
    records = read_records(engine, config, hooks.advance)
    summary.profiles = len(records)
    clock = _lap(summary, "read", clock)

    plan = Plan.of(config, records)
    summary.fields, summary.fields_left_out = plan.fields, plan.left_out
    if model is None or retrain:
        hooks.start("training the model", None)
        linkage, model = train(records, config, plan, hooks.step)
        summary.trained = True
        if not dry_run:
            _save(
                engine,
                name,
                config,
                {"model": model, "trained_at": datetime.now(UTC), "trained_records": len(records)},
            )
    else:
        stored_fields = [c["output_column_name"] for c in model.get("comparisons", [])]
        if sorted(stored_fields) != sorted(plan.fields):
            raise MatchError(
                f"the stored model compares {stored_fields} but the profiles now have {plan.fields}; "
                "run with --retrain"
            )
        linkage = reuse(records, model)
    summary.fields_with_defaults = untrained(model)
    clock = _lap(summary, "train" if summary.trained else "load model", clock)

    counts = rule_pair_counts(linkage.conn, plan.blocking)
    summary.blocking = [
        {"rule": " + ".join(r), "pairs": n} for r, n in zip(plan.blocking, counts, strict=True)
    ]
    hooks.start("scoring candidate pairs", None)
    hooks.step(f"scoring {sum(counts):,} candidate pairs (before removing pairs found by several rules)")
    pairs = predict(linkage, config, plan, config.thresholds.review, sum(counts), records.ids)
    linkage.conn.close()
    summary.scored_pairs = len(pairs)
    clock = _lap(summary, "score", clock)

    merges, review = _decide(engine, name, config, records, pairs, rules, summary)
    if dry_run:
        summary.would_merge = [
            {
                "left": str(records.anchors[p.left]),
                "right": str(records.anchors[p.right]),
                "probability": p.probability,
                "explanation": p.explanation,
            }
            for p in merges
        ]
    elif confirm is not None and (merges or review) and not confirm(summary):
        summary.cancelled = True
    else:
        hooks.start("writing merges and the review queue", len(merges) + len(review))
        _write(engine, name, records, merges, review, rules, hooks)
    _lap(summary, "write", clock)
    summary.peak_memory_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if not dry_run and not summary.cancelled:
        _save(engine, name, config, {"last_run_at": datetime.now(UTC), "last_summary": summary.as_dict()})
        log.info("match run", model=name, merges=summary.auto_merges, review=summary.queued_for_review)
    return summary


def _lap(summary: Summary, stage: str, since: float) -> float:
    now = time.perf_counter()
    summary.seconds[stage] = round(now - since, 2)
    return now


def _decide(
    engine: sa.Engine,
    name: str,
    config: MatchConfig,
    records: Records,
    pairs: list[ScoredPair],
    rules: IdentityRules,
    summary: Summary,
) -> tuple[list[ScoredPair], list[ScoredPair]]:
    """Which pairs merge now and which wait for review, strongest first."""
    with engine.connect() as conn:
        decided = _decided_pairs(conn, name)
        split = _split_profiles(conn)
    clusters = _Clusters({pid: dict(c) for pid, c in records.counts.items()}, rules.limits)
    merges: list[ScoredPair] = []
    review: list[ScoredPair] = []
    for pair in sorted(pairs, key=lambda p: (-p.probability, p.left, p.right)):
        if frozenset((records.anchors[pair.left], records.anchors[pair.right])) in decided:
            summary.decided_before += 1
            continue
        if frozenset((pair.left, pair.right)) in split:
            summary.rejected_by_operator += 1
            continue
        a, b = clusters.find(pair.left), clusters.find(pair.right)
        if a == b:
            summary.redundant += 1
            continue
        if pair.probability < config.thresholds.auto_merge:
            review.append(pair)
            continue
        if not clusters.allowed(a, b):
            summary.merge_protection += 1
            continue
        clusters.union(a, b)
        merges.append(pair)
    summary.auto_merges, summary.queued_for_review = len(merges), len(review)
    return merges, review


def _candidate_row(
    name: str, records: Records, pair: ScoredPair, status: str, now: datetime
) -> dict[str, Any]:
    left, right = sorted((records.anchors[pair.left], records.anchors[pair.right]))
    return {
        "model": name,
        "left_type": left.type,
        "left_value": left.value,
        "right_type": right.type,
        "right_value": right.value,
        "probability": pair.probability,
        "match_weight": pair.match_weight,
        "comparisons": pair.comparisons,
        "explanation": pair.explanation,
        "status": status,
        "scored_at": now,
        "decided_by": "match" if status == "merged" else None,
        "decided_at": now if status == "merged" else None,
    }


def _write(
    engine: sa.Engine,
    name: str,
    records: Records,
    merges: list[ScoredPair],
    review: list[ScoredPair],
    rules: IdentityRules,
    hooks: Hooks,
) -> None:
    appender = LogAppender.for_engine(engine, rules)
    now = datetime.now(UTC)
    keys = ["model", "left_type", "left_value", "right_type", "right_value"]
    for start in range(0, len(review), WRITE_BATCH):
        part = review[start : start + WRITE_BATCH]
        with engine.begin() as conn:
            conn.execute(
                insert_ignoring_duplicates(conn.dialect.name, match_candidates, keys),
                [_candidate_row(name, records, p, "pending", now) for p in part],
            )
        hooks.advance(len(part))
    for start in range(0, len(merges), WRITE_BATCH):
        part = merges[start : start + WRITE_BATCH]
        with engine.begin() as conn:
            lock_log(conn)  # first, as every appender (and the review's accept) takes it
            source_id = system_source_id(conn, MATCH_SOURCE)
            inserted = conn.execute(
                match_candidates.insert().returning(match_candidates, sort_by_parameter_order=True),
                [_candidate_row(name, records, p, "merged", now) for p in part],
            ).all()
            rows = []
            for candidate, pair in zip(inserted, part, strict=True):
                properties = merge_properties(candidate, "match")
                rows.append(
                    merge_event_row(
                        source_id, records.anchors[pair.left], records.anchors[pair.right], properties, now
                    )
                )
            appender.append(conn, rows)
            stored = dict(
                conn.execute(
                    sa.select(events.c.message_id, events.c.id).where(
                        events.c.source_id == source_id,
                        events.c.message_id.in_([r["message_id"] for r in rows]),
                    )
                ).all()
            )
            conn.execute(
                match_candidates.update()
                .where(match_candidates.c.id == sa.bindparam("cid"))
                .values(event_id=sa.bindparam("eid")),
                [
                    {"cid": c.id, "eid": stored.get(r["message_id"])}
                    for c, r in zip(inserted, rows, strict=True)
                ],
            )
        hooks.advance(len(part))


_RUNS = OnePerName("match")


def running(name: str = DEFAULT_MODEL) -> bool:
    return name in _RUNS.running()


def run_in_background(
    engine: sa.Engine, name: str = DEFAULT_MODEL, retrain: bool = False, rules: IdentityRules | None = None
) -> bool:
    """A run (merging without asking: whoever starts it from the API or dashboard has decided) in
    a thread, one per model at a time; False if one is running. A run that cannot go on leaves its
    reason as the model's last summary (`{"error": …}`); processing applies the merges."""

    def work() -> None:
        try:
            run(engine, name, retrain=retrain, rules=rules)
        except (ModelError, MatchError) as exc:
            _save_error(engine, name, str(exc))
        except Exception as exc:
            log.exception("match run failed", model=name)
            _save_error(engine, name, f"the run failed: {type(exc).__name__}")

    return _RUNS.start(name, work)


def _save_error(engine: sa.Engine, name: str, message: str) -> None:
    stored, _ = stored_config(engine, name)
    _save(
        engine,
        name,
        stored or MatchConfig(),
        {"last_run_at": datetime.now(UTC), "last_summary": {"error": message}},
    )
