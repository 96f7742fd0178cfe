"""Journeys: automated campaigns defined as data. A profile enters on an event, a segment change,
a computed-trait change or a schedule, then walks the steps (waits, waits for an event, branches,
sends, trait and tag changes) until it exits, converts or completes (docs/journeys.md).

Entries, exits and awaited events are decided by the processor in its transaction
(`triggers`); the steps are run by the runner (`runner`), whose decisions to send go to the
activation outbox in the same transaction as the step they belong to."""
