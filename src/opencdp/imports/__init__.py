"""CRM and offline imports: CSV / JSON Lines files (or API rows) → Segment events in the log.

See docs/import.md for the mapping format. Rows go through the collector's `normalise`, with a
messageId derived from the row's key, so imports are ordinary, replayable, idempotent events.
"""

from opencdp.imports.mapping import ImportFailed, ImportMapping, MappingError, load_mapping, parse_mapping
from opencdp.imports.rows import Reject, message_id_for
from opencdp.imports.runner import MAX_API_ROWS, ImportSummary, import_rows, run_import

__all__ = [
    "MAX_API_ROWS",
    "ImportFailed",
    "ImportMapping",
    "ImportSummary",
    "MappingError",
    "Reject",
    "import_rows",
    "load_mapping",
    "message_id_for",
    "parse_mapping",
    "run_import",
]
