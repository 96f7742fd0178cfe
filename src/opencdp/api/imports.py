"""The import over the admin API: `POST /api/imports` with a mapping and up to 10,000 rows.

The same import as `opencdp import` (same mapping, same deterministic messageIds, so the API and
the CLI never duplicate each other). The call answers after the rows are processed into profiles,
which is why it takes at most `MAX_API_ROWS` rows: send a larger file in several calls.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from opencdp.api.audit import audit
from opencdp.api.auth import AdminKey, storable, storable_rows
from opencdp.api.errors import ApiError
from opencdp.imports.mapping import ImportFailed, ImportMapping, MappingError
from opencdp.imports.runner import MAX_API_ROWS, import_rows
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api", tags=["imports"])


class ImportRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source": "crm",
                    "mapping": {
                        "kind": "contacts",
                        "key": "crm_id",
                        "columns": {
                            "crm_id": {"identifier": "crm_id"},
                            "email": {"identifier": "email"},
                            "first_name": {"trait": "firstName"},
                        },
                    },
                    "rows": [{"crm_id": "C1", "email": "ann@example.com", "first_name": "Ann"}],
                }
            ]
        }
    )

    source: Annotated[str, AfterValidator(storable)] = Field(
        ..., min_length=1, max_length=200, description="Source name; created if it does not exist"
    )
    mapping: Annotated[ImportMapping, AfterValidator(storable)] = Field(
        ..., description="The mapping, as in a mapping file (docs/import.md)"
    )
    rows: Annotated[list[dict[str, Any]], AfterValidator(storable_rows)] = Field(
        ...,
        min_length=1,
        max_length=MAX_API_ROWS,
        description=f"Column → value objects (text, numbers, booleans or null); at most {MAX_API_ROWS}",
    )


class ImportRejectedRow(BaseModel):
    index: int = Field(..., description="0-based position in `rows`")
    reason: str = Field(..., description="Why it was not imported, naming the column")
    column: str | None = Field(None, description="The column at fault, when there is one")


class ImportResult(BaseModel):
    source: str
    source_created: bool
    kind: str
    rows_read: int
    accepted: int = Field(..., description="rows_read - rejected")
    rejected: int
    duplicates: int = Field(..., description="Accepted rows whose key was imported before: skipped")
    suppressed: int = Field(
        0, description="Accepted rows of erased people (on the suppression list): never stored"
    )
    events_written: int = Field(..., description="accepted - duplicates - suppressed")
    profiles_created: int
    profiles_merged: int
    ignored_columns: list[str] = Field(..., description="Columns the mapping does not use")
    seconds: float
    rejected_rows: list[ImportRejectedRow]


@router.post(
    "/imports",
    response_model=ImportResult,
    summary="Import CRM/offline rows as events (contacts → identify, transactions → track)",
    responses={400: {"description": "Invalid mapping or rows; `errors` name each field"}},
)
def create_import(request: Request, key: AdminKey, body: ImportRequest) -> dict[str, Any]:
    cdp: OpenCDP = request.app.state.cdp
    try:
        summary, rejected = import_rows(
            cdp.engine, body.rows, body.source, body.mapping, processor=cdp.processor, limits=cdp.limits
        )
    except ImportFailed as exc:
        errors = [
            {"field": f"mapping.{field}" if field else "mapping", "problem": p} for field, p in exc.problems
        ]
        code = "invalid_mapping" if isinstance(exc, MappingError) or errors else "import_failed"
        raise ApiError(400, code, str(exc), errors or None) from None
    out = summary.as_dict()
    counts = (
        "kind",
        "rows_read",
        "accepted",
        "rejected",
        "duplicates",
        "suppressed",
        "events_written",
        "source_created",
    )
    audit(request, key, "import.run", "source", summary.source, {name: out[name] for name in counts})
    out.pop("rejects_path")
    out["rejected_rows"] = [{"index": r.position, "reason": r.reason, "column": r.column} for r in rejected]
    return out
