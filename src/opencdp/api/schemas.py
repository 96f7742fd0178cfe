"""Shapes for the OpenAPI schema. The collector validates by hand for speed (see
`collect.messages`); these models document the same rules for client authors and tools."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    userId: str | int | None = Field(
        None, description="Your id for the user; userId or anonymousId is required"
    )
    anonymousId: str | int | None = Field(
        None, description="A device or cookie id for a visitor not yet known"
    )
    messageId: str | None = Field(
        None,
        max_length=256,
        description="Unique per source; generated when missing. "
        "A retry with the same messageId is stored once.",
    )
    timestamp: datetime | None = Field(None, description="When it happened, by the client's clock")
    sentAt: datetime | None = Field(None, description="When the client sent it; used to correct clock skew")
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None


class Identify(_Message):
    type: Literal["identify"] | None = None
    traits: dict[str, Any] | None = None


class Track(_Message):
    type: Literal["track"] | None = None
    event: str = Field(..., min_length=1)
    properties: dict[str, Any] | None = None


class Page(_Message):
    type: Literal["page"] | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class Screen(Page):
    type: Literal["screen"] | None = None  # type: ignore[assignment]


class Group(_Message):
    type: Literal["group"] | None = None
    groupId: str | int
    traits: dict[str, Any] | None = None


class Alias(_Message):
    type: Literal["alias"] | None = None
    previousId: str | int
    userId: str | int


class Batch(BaseModel):
    model_config = ConfigDict(extra="allow")
    batch: list[Identify | Track | Page | Screen | Group | Alias] = Field(
        ..., description="Each message must carry its `type`. Up to 500 KB in all, 32 KB per message."
    )
    sentAt: datetime | None = None
    context: dict[str, Any] | None = Field(None, description="Merged into every message's context")
    integrations: dict[str, Any] | None = None
    writeKey: str | None = Field(None, description="Alternative to HTTP Basic auth")


class Success(BaseModel):
    success: Literal[True] = True


class Problem(BaseModel):
    field: str = Field(..., description="JSON path of the bad value, e.g. batch[3].userId")
    problem: str
    index: int | None = Field(None, description="Which message of a batch")
    messageId: str | None = None


class Error(BaseModel):
    success: Literal[False] = False
    error: str = Field(..., description="A stable machine-readable code")
    message: str = Field(..., description="What went wrong, for people")
    errors: list[Problem] | None = None


DOCUMENTED_MODELS: list[type[BaseModel]] = [Identify, Track, Page, Screen, Group, Alias, Batch, Error]
_BY_TYPE: dict[str, type[BaseModel]] = {
    "identify": Identify,
    "track": Track,
    "page": Page,
    "screen": Screen,
    "group": Group,
    "alias": Alias,
}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def call_request(call_type: str) -> dict[str, Any]:
    return _body(_BY_TYPE[call_type])


def batch_request() -> dict[str, Any]:
    return _body(Batch)


def error_responses() -> dict[int | str, dict[str, Any]]:
    described = {
        200: "Stored durably",
        400: "Invalid input; nothing stored",
        401: "Missing, unknown or disabled write key",
        413: "Body or event too large",
        415: "Unsupported Content-Encoding",
        503: "Could not store; retry",
    }
    return {
        code: {"description": text, "model": Success if code == 200 else Error}
        for code, text in described.items()
    }
