"""The tables. Changes go through an Alembic migration in `store/migrations/versions`."""

from __future__ import annotations

import sqlalchemy as sa

from opencdp.store.dialect import BigId, Json, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("write_key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("retention_days", sa.Integer, nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: The event log: the source of truth. Rows are immutable; `id` gives the global order in
#: which processors consume it: ids only grow, and become visible in order (`log.append`).
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=False),
    sa.Column("message_id", sa.String(256), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("event", sa.Text, nullable=True),
    sa.Column("user_id", sa.Text, nullable=True),
    sa.Column("anonymous_id", sa.Text, nullable=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=True),
    sa.Column("original_timestamp", UTCDateTime, nullable=True),
    sa.Column("timestamp", UTCDateTime, nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.UniqueConstraint("source_id", "message_id", name="uq_events_source_message"),
    # Ids are never reused, even after an erasure deletes the newest events (without AUTOINCREMENT
    # SQLite hands out max(id)+1 again, below a processor's checkpoint).
    sqlite_autoincrement=True,
)


# --- Derived state: identity graph and profiles (rebuilt from the log by `opencdp rebuild`) ---

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Column("profile_id", sa.String(36), nullable=True, index=True),
    sa.Column("first_event_id", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("type", "value", name="uq_identities_type_value"),
)

#: One row per distinct set of identifiers seen together; applied in (ts, message_id, source) order.
identity_edges = sa.Table(
    "identity_edges",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("signature", sa.String(64), nullable=False, unique=True),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.String(32), nullable=False),
    sa.Column("message_id", sa.String(256), nullable=False),
    sa.Column("source_id", sa.Integer, nullable=False),
    sa.Column("rule", sa.String(32), nullable=False),
)

identity_edge_members = sa.Table(
    "identity_edge_members",
    metadata,
    sa.Column("edge_id", sa.BigInteger, primary_key=True),
    sa.Column("identity_id", sa.BigInteger, primary_key=True, index=True),
    sa.Column("position", sa.Integer, nullable=False),
)

#: Which identifier owns each event (its strongest); the profile follows through `identities`.
event_owners = sa.Table(
    "event_owners",
    metadata,
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("identity_id", sa.BigInteger, nullable=False, index=True),
)

profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    #: Indexed only where set (0016): a full index misleads SQLite on "IS NULL AND id IN (…)".
    sa.Column("merged_into", sa.String(36), nullable=True),
    sa.Column("anchor", Json, nullable=False),
    sa.Column("last_edge_key", Json, nullable=False),
    sa.Column("identity_counts", Json, nullable=False),
    sa.Column("traits", Json, nullable=False),
    sa.Column("trait_meta", Json, nullable=False),
    sa.Column("event_counts", Json, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=True),
    sa.Column("last_seen", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("computed", Json, nullable=True),
    sa.Column("consent", Json, nullable=True),
    sa.Column("consent_meta", Json, nullable=True),
    #: When `computed` was last written (the `now` its time windows were measured from; 0012).
    sa.Column("computed_at", UTCDateTime, nullable=True),
    #: Predicted traits {trait: value} written by prediction jobs (0013), and which model version
    #: wrote them when: {model: {"version": n, "at": iso}}. Not written by the processor.
    sa.Column("predicted", Json, nullable=True),
    sa.Column("predicted_meta", Json, nullable=True),
    sa.Index(
        "ix_profiles_merged_into",
        "merged_into",
        sqlite_where=sa.text("merged_into IS NOT NULL"),
        postgresql_where=sa.text("merged_into IS NOT NULL"),
    ),
)

#: Accepted joins: the answer to "why are these one person?".
identity_links = sa.Table(
    "identity_links",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("profile_id", sa.String(36), nullable=False, index=True),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("left_type", sa.String(64), nullable=False),
    sa.Column("left_value", sa.String(256), nullable=False),
    sa.Column("right_type", sa.String(64), nullable=False),
    sa.Column("right_value", sa.String(256), nullable=False),
    sa.Column("ts", sa.String(32), nullable=False),
    sa.Column("message_id", sa.String(256), nullable=False),
    sa.Column("source_id", sa.Integer, nullable=False),
)

#: Refused joins (merge protection).
identity_conflicts = sa.Table(
    "identity_conflicts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("left_type", sa.String(64), nullable=False),
    sa.Column("left_value", sa.String(256), nullable=False),
    sa.Column("right_type", sa.String(64), nullable=False),
    sa.Column("right_value", sa.String(256), nullable=False),
    sa.Column("ts", sa.String(32), nullable=False),
    sa.Column("message_id", sa.String(256), nullable=False),
    sa.Column("source_id", sa.Integer, nullable=False),
    sa.UniqueConstraint(
        "event_id", "left_type", "left_value", "right_type", "right_value", name="uq_identity_conflicts_event"
    ),
)

processor_state = sa.Table(
    "processor_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("last_event_id", sa.BigInteger, nullable=False),
)

#: Each event with the profile that owns it now: what segments and computed traits aggregate.
profile_events = sa.Table(
    "profile_events",
    metadata,
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("profile_id", sa.String(36), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("source_id", sa.Integer, nullable=False),
    sa.Column("properties", Json, nullable=False),
    sa.Index("ix_profile_events_profile_ts", "profile_id", "ts"),
    sa.Index("ix_profile_events_name_ts", "name", "ts"),
)

#: Profiles a chunk changed whose computed traits and memberships are refreshed by any worker, in
#: parallel by `part` (PostgreSQL with several workers; see process/derived.py).
profile_refresh_queue = sa.Table(
    "profile_refresh_queue",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("profile_id", sa.String(36), nullable=False),
    sa.Index("ix_profile_refresh_queue_part_id", "part", "id"),
)

#: Custom computed traits (the built-in ones are defined in code).
computed_trait_definitions = sa.Table(
    "computed_trait_definitions",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("definition", Json, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

segments = sa.Table(
    "segments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("criteria", Json, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

segment_memberships = sa.Table(
    "segment_memberships",
    metadata,
    sa.Column("segment_id", sa.Integer, primary_key=True),
    sa.Column("profile_id", sa.String(36), primary_key=True, index=True),
    sa.Column("entered_at", UTCDateTime, nullable=False),
    sa.Column("exited_at", UTCDateTime, nullable=True),
)

#: Every entry into and exit from a segment, for triggers and reports.
segment_transitions = sa.Table(
    "segment_transitions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("segment_id", sa.Integer, nullable=False),
    sa.Column("profile_id", sa.String(36), nullable=False),
    sa.Column("change", sa.String(8), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_segment_transitions_segment_at", "segment_id", "at"),
)

#: Segments and computed traits that failed to evaluate (0007): skipped by live processing until
#: they are saved again or a scheduled refresh evaluates them; a row exists only while failing.
definition_failures = sa.Table(
    "definition_failures",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),  # "segment" or "trait"
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("failed_at", UTCDateTime, nullable=False),
)

# --- Dashboard: users, sessions, saved reports (0006) ---

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
)

ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("params", Json, nullable=False),
    sa.Column("created_by", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# --- Privacy: consent, suppression, audit (0005) ---

#: Consent purposes, defined as data; consent is opt-in: no record means no consent.
consent_purposes = sa.Table(
    "consent_purposes",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: Every consent change of a profile (derived from events; follows merges like profile_events).
consent_history = sa.Table(
    "consent_history",
    metadata,
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("purpose", sa.String(64), primary_key=True),
    sa.Column("profile_id", sa.String(36), nullable=False, index=True),
    sa.Column("granted", sa.Boolean, nullable=False),
    sa.Column("version", sa.String(100), nullable=True),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("source_id", sa.Integer, nullable=False),
)

#: Salted hashes of erased people's identifiers: their future events are dropped at the collector.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("identifier_hash", sa.String(64), primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: Install-wide secrets and settings (e.g. the suppression salt).
settings_store = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

#: Who read, exported or changed what. Never holds personal data itself.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target_type", sa.String(50), nullable=True),
    sa.Column("target_id", sa.String(200), nullable=True),
    sa.Column("detail", Json, nullable=False),
    sa.Index("ix_audit_log_at", "at"),
)

# --- Activation: destinations, what flows to them, the outbox (0010). Not derived: a rebuild
# must not send anything twice, so none of these is reset with the profiles. ---

#: Where deliveries go. `config` never holds the secret: that is `secret` (encrypted) or the
#: name of an environment variable (`secret_env`). Mutable delivery health lives beside it.
destinations = sa.Table(
    "destinations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("config", Json, nullable=False),
    sa.Column("secret", sa.Text, nullable=True),
    sa.Column("secret_env", sa.String(200), nullable=True),
    #: the consent purpose a profile must have granted to be sent here (None: none needed)
    sa.Column("purpose", sa.String(64), nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("rate_per_second", sa.Float, nullable=True),
    sa.Column("max_retry_seconds", sa.Integer, nullable=False, default=86400),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # health, written by the delivery worker
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("open_until", UTCDateTime, nullable=True),
    sa.Column("next_run_at", UTCDateTime, nullable=True),
    sa.Column("last_success_at", UTCDateTime, nullable=True),
    sa.Column("last_error_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
)

#: Event forwarding: a source's events, filtered, sent to a destination as they are processed.
forwarding_rules = sa.Table(
    "forwarding_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("destination_id", sa.Integer, nullable=False, index=True),
    sa.Column("filter", Json, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    #: events up to this id existed before the rule: never forwarded by it
    sa.Column("after_event_id", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

#: Audience sync: a segment's entries and exits sent to a destination.
audience_syncs = sa.Table(
    "audience_syncs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("segment_id", sa.Integer, nullable=False, index=True),
    sa.Column("destination_id", sa.Integer, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("backfilled_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("segment_id", "destination_id", name="uq_audience_syncs_segment_destination"),
)

#: What each audience sync has told its destination: a change is sent only where it differs.
audience_sync_members = sa.Table(
    "audience_sync_members",
    metadata,
    sa.Column("sync_id", sa.Integer, primary_key=True),
    sa.Column("profile_id", sa.String(36), primary_key=True, index=True),
    sa.Column("member", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

#: The transactional outbox: one row per decision to send, written in the transaction of the
#: state change that caused it; `key` (idempotency key) stays the same across retries.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("destination_id", sa.Integer, nullable=False),
    sa.Column("key", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),  # event, audience, journey
    sa.Column("profile_id", sa.String(36), nullable=True, index=True),
    sa.Column("event_id", sa.BigInteger, nullable=True),
    sa.Column("subject", Json, nullable=False),  # what to render: rule, sync, segment, action, step
    sa.Column("status", sa.String(16), nullable=False),  # pending sending delivered dead skipped
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("claim", sa.String(32), nullable=True),  # the worker that holds the lease
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_deliveries_destination_status_due", "destination_id", "status", "next_attempt_at"),
)

#: High-water marks of activation that survive a rebuild (e.g. the last event forwarded).
activation_marks = sa.Table(
    "activation_marks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# --- Journeys (0011): definitions (versioned), each profile's way through them, and its history.
# Not derived: a rebuild must not send a journey's messages again. ---

journeys = sa.Table(
    "journeys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("definition", Json, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # draft, active, paused
    #: events up to this id were logged before the journey was activated: they enter no one
    sa.Column("after_event_id", sa.BigInteger, nullable=False),
    sa.Column("next_run_at", UTCDateTime, nullable=True),  # a scheduled entry's next occurrence
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

journey_versions = sa.Table(
    "journey_versions",
    metadata,
    sa.Column("journey_id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("definition", Json, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
)

#: One profile's way through one journey: where it is and when it goes on.
journey_instances = sa.Table(
    "journey_instances",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("journey_id", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("profile_id", sa.String(36), nullable=False, index=True),
    #: the step it goes on with when `next_at` comes (or an awaited event does)
    sa.Column("step", sa.String(100), nullable=False),
    #: the wait it is in meanwhile (wait, wait_for, quiet hours), for people: "here now"
    sa.Column("at_step", sa.String(100), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # active, done
    sa.Column("outcome", sa.String(16), nullable=True),  # completed, exited, converted
    sa.Column("next_at", UTCDateTime, nullable=False),
    sa.Column("waiting_for", Json, nullable=True),  # a wait_for step: the event and where to go
    sa.Column("steps_done", sa.Integer, nullable=False),
    sa.Column("entered_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Index("ix_journey_instances_status_next_at", "status", "next_at"),
    sa.Index("ix_journey_instances_journey_profile", "journey_id", "profile_id"),
)

#: What happened on the way, per instance and step: entered, waiting, sent, capped, branched, …
journey_history = sa.Table(
    "journey_history",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("journey_id", sa.Integer, nullable=False),
    sa.Column("profile_id", sa.String(36), nullable=False, index=True),
    sa.Column("step", sa.String(100), nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(50), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("detail", Json, nullable=False),
    sa.Index("ix_journey_history_journey_step", "journey_id", "step", "action"),
)

#: Prediction jobs and their fitted models (0013): parameters and quality as JSON, no pickles, so a
#: stored model scores the same profiles the same way after a restart or a rebuild.
prediction_models = sa.Table(
    "prediction_models",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("options", Json, nullable=False),
    #: 0 until the first fit; every fit adds one.
    sa.Column("version", sa.Integer, nullable=False),
    #: "new", "ready", "refused" (too little data: `reason` says why) or "failed" (an error).
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("trained_at", UTCDateTime, nullable=True),
    sa.Column("window", Json, nullable=True),
    sa.Column("features", Json, nullable=True),
    sa.Column("params", Json, nullable=True),
    sa.Column("quality", Json, nullable=True),
    sa.Column("traits", Json, nullable=True),
    #: The time the last scoring run measured profiles at, and how many it scored.
    sa.Column("scored_at", UTCDateTime, nullable=True),
    sa.Column("scored_count", sa.Integer, nullable=False),
    #: Refit after this many days (scores are refreshed every day with the current fit).
    sa.Column("refit_days", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

#: Links an operator rejected (0014): an input to the canonical resolution, like the log, so no
#: edge ever joins these two identifiers again and `rebuild` keeps them apart. The pair is stored
#: in `Identifier` order. `applied_at` is set when a processor has re-resolved their component.
identity_rejections = sa.Table(
    "identity_rejections",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("left_type", sa.String(64), nullable=False),
    sa.Column("left_value", sa.String(256), nullable=False),
    sa.Column("right_type", sa.String(64), nullable=False),
    sa.Column("right_value", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint(
        "left_type", "left_value", "right_type", "right_value", name="uq_identity_rejections_pair"
    ),
)

#: Probabilistic matching models (0014): the matching configuration (fields, blocking rules,
#: comparisons, thresholds) and the trained Fellegi-Sunter parameters as Splink's settings JSON.
match_models = sa.Table(
    "match_models",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("config", Json, nullable=False),
    sa.Column("model", Json, nullable=True),
    sa.Column("trained_at", UTCDateTime, nullable=True),
    sa.Column("trained_records", sa.Integer, nullable=True),
    sa.Column("last_run_at", UTCDateTime, nullable=True),
    sa.Column("last_summary", Json, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

#: Candidate pairs a match run scored above the review threshold (0014), named by identifiers (the
#: profiles' anchors when scored; profiles move, identifiers do not), in `Identifier` order.
#: status: "pending" (the review queue), "merged" (auto-merged), "accepted", "rejected", "skipped".
#: A decided pair is respected by later runs. `event_id`: the `Identity Matched` event that merged.
match_candidates = sa.Table(
    "match_candidates",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("left_type", sa.String(64), nullable=False),
    sa.Column("left_value", sa.String(256), nullable=False),
    sa.Column("right_type", sa.String(64), nullable=False),
    sa.Column("right_value", sa.String(256), nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("match_weight", sa.Float, nullable=False),
    #: [{"field", "label", "level", "bayes_factor"}] per comparison, and the sentence built from them
    sa.Column("comparisons", Json, nullable=False),
    sa.Column("explanation", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("scored_at", UTCDateTime, nullable=False),
    sa.Column("decided_by", sa.String(200), nullable=True),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("event_id", sa.BigInteger, nullable=True),
    sa.UniqueConstraint(
        "model", "left_type", "left_value", "right_type", "right_value", name="uq_match_candidates_pair"
    ),
)

#: Personalisation (personalise/): an experience decides what a placement on the brand's site shows
#: (variants with audiences, a strategy, a holdout share, default and fallback content). `definition`
#: is the validated document (personalise/experiences.py); `version` grows with every change and is
#: logged with each decision (`Experience Viewed`), so reports know which definition decided.
experiences = sa.Table(
    "experiences",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("placement", sa.String(100), nullable=False, index=True),
    sa.Column("definition", Json, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

#: Imported weather by region and day (external context for decisions; no network at run time).
#: `region`: what the decide request's context names (a country code "DE" or a region "DE-BE");
#: `day`: "YYYY-MM-DD" in the region's local calendar.
weather = sa.Table(
    "weather",
    metadata,
    sa.Column("region", sa.String(64), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("condition", sa.String(32), nullable=False),
    sa.Column("temperature_c", sa.Float, nullable=True),
    sa.Column("imported_at", UTCDateTime, nullable=False),
)

# --- Customer accounts (0018): credentials, sessions and the OpenID provider's state; never
# profile data (names, consent and the verified e-mail reach profiles as events) ---

#: A customer's login: `id` ("acct_…") is the user id its events carry.
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    #: NULL for an account made by a social login whose provider gave no address it vouches for
    #: (0020); PostgreSQL and SQLite both let several rows have NULL in a unique column
    sa.Column("email", sa.String(320), nullable=True, unique=True),
    #: NULL for an account that signs in only through social logins (0020)
    sa.Column("password_hash", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("email_verified_at", UTCDateTime, nullable=True),
    #: part of every password reset link, so a link dies once the password changed
    sa.Column("password_changed_at", UTCDateTime, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
)

#: Single sign-on sessions of the provider. `id`: SHA-256 of the cookie; `sid`: the public
#: session id named in ID tokens (so logout can find the session without the cookie).
account_sessions = sa.Table(
    "account_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("sid", sa.String(64), nullable=False, unique=True),
    sa.Column("account_id", sa.String(40), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("auth_time", UTCDateTime, nullable=False),
    #: how the customer signed in (RFC 8176, space-separated: "pwd", "pwd otp mfa"); None: "pwd" (0020)
    sa.Column("amr", sa.String(40), nullable=True),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

#: Relying parties: the brand's sites and services. Public clients have no secret (PKCE instead).
account_clients = sa.Table(
    "account_clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=True),
    sa.Column("redirect_uris", Json, nullable=False),
    sa.Column("post_logout_redirect_uris", Json, nullable=False),
    sa.Column("scopes", Json, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    #: OpenID Connect Back-Channel Logout: where a signed logout token is posted when a customer
    #: signs out of a session this client took part in (0019)
    sa.Column("backchannel_logout_uri", sa.String(2000), nullable=True),
)

#: Authorization codes (SHA-256 of the code), single use, minutes long.
account_codes = sa.Table(
    "account_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("sid", sa.String(64), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("scope", sa.String(400), nullable=False),
    sa.Column("nonce", sa.String(400), nullable=True),
    sa.Column("code_challenge", sa.String(200), nullable=True),
    sa.Column("code_challenge_method", sa.String(10), nullable=True),
    sa.Column("auth_time", UTCDateTime, nullable=False),
    sa.Column("amr", sa.String(40), nullable=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

#: Access and refresh tokens (SHA-256 of each). A refresh rotates: the old row is revoked.
account_tokens = sa.Table(
    "account_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("access_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("refresh_hash", sa.String(64), nullable=True, unique=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("account_id", sa.String(40), nullable=False, index=True),
    sa.Column("sid", sa.String(64), nullable=False, index=True),
    sa.Column("scope", sa.String(400), nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("access_expires_at", UTCDateTime, nullable=False),
    sa.Column("refresh_expires_at", UTCDateTime, nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

#: The provider's signing keys: the newest live key signs, every live key verifies (JWKS);
#: a retired key is gone from the JWKS. The private key is sealed like destination secrets.
account_signing_keys = sa.Table(
    "account_signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("algorithm", sa.String(10), nullable=False),
    sa.Column("public_jwk", Json, nullable=False),
    sa.Column("private_key", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("retired_at", UTCDateTime, nullable=True),
)

#: Social logins linked to an account (0020): the provider's name and its subject, nothing about
#: the person (their claims reach the profile as events). `proof` says how the link was proven:
#: `signup` (the account was made by this login), `session` (linked while signed in) or
#: `verified_email` (the provider vouched for the account's verified address).
account_logins = sa.Table(
    "account_logins",
    metadata,
    sa.Column("provider", sa.String(40), primary_key=True),
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False, index=True),
    sa.Column("proof", sa.String(20), nullable=False),
    sa.Column("linked_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime, nullable=False),
)

# --- Second factor and progressive profiling (0021): credentials and page state only ---

#: A customer's TOTP secret, sealed like destination secrets. `confirmed_at` is None while set-up
#: waits for the first code; `last_step` is the newest time step accepted, so a code (or an older
#: one) is never accepted twice.
account_second_factors = sa.Table(
    "account_second_factors",
    metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("confirmed_at", UTCDateTime, nullable=True),
    sa.Column("last_step", sa.BigInteger, nullable=True),
)

#: Recovery codes (SHA-256 of each, 80 random bits), shown once at set-up, each usable once.
account_recovery_codes = sa.Table(
    "account_recovery_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False, index=True),
    sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("used_at", UTCDateTime, nullable=True),
)

#: A sign-in between its password and its code: `id` is the SHA-256 of the cookie; minutes long.
account_challenges = sa.Table(
    "account_challenges",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(40), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("next_url", sa.Text, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

#: Progressive profiling: a question the customer skipped, and when (asked again only later).
account_skipped_questions = sa.Table(
    "account_skipped_questions",
    metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("question", sa.String(40), primary_key=True),
    sa.Column("skipped_at", UTCDateTime, nullable=False),
)

DERIVED_TABLES = (
    identities,
    identity_edges,
    identity_edge_members,
    event_owners,
    profiles,
    identity_links,
    identity_conflicts,
    processor_state,
    profile_events,
    profile_refresh_queue,
    segment_memberships,
    segment_transitions,
    consent_history,
)

#: Links to the preference centre, sent to a customer (e-mail footer, journey step). The URL holds
#: a random token; only its SHA-256 is stored (`id`), so a copy of the database opens no page.
#: `csrf_token` guards the page's forms; the link ends at `expires_at` or when the person is erased.
preference_links = sa.Table(
    "preference_links",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("profile_id", sa.String(36), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

#: Surveys defined as data (zero-party data): questions whose answers become traits with source
#: `zero-party`. `definition` is what `accounts.surveys.parse_survey` accepts.
surveys = sa.Table(
    "surveys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("definition", Json, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
