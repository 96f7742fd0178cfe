"""Every error leaves as JSON that says what went wrong and, where it can, which field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from opencdp.api.responses import FastJSONResponse


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.errors = errors
        self.headers = headers

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"success": False, "error": self.error, "message": self.message}
        if self.errors:
            out["errors"] = self.errors
        return out


async def api_error_handler(_request: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, ApiError)
    return FastJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def http_error_handler(_request: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error = ApiError(exc.status_code, "http_error", str(exc.detail), headers=exc.headers)
    return FastJSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)


async def validation_error_handler(_request: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(p) for p in err["loc"] if p not in ("query", "path", "body")) or "body",
            "problem": err["msg"],
        }
        for err in exc.errors()
    ]
    error = ApiError(400, "invalid_request", errors[0]["field"] + ": " + errors[0]["problem"], errors)
    return FastJSONResponse(error.body(), status_code=400)
