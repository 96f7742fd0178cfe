"""Client applications of the customer accounts' OpenID provider over the admin API (admin key):
list, register and remove the brand's sites and services (docs/identity.md). A confidential
client's secret is in the answer to its registration and never again; the audit log records who
registered or removed which client."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import AfterValidator, BaseModel, Field

from opencdp.access.audit import record
from opencdp.accounts import clients
from opencdp.api.auth import AdminKey, storable
from opencdp.api.errors import ApiError
from opencdp.system import OpenCDP

router = APIRouter(prefix="/api/accounts", tags=["accounts"])
Scope = Literal["openid", "profile", "email", "phone"]
ALL_SCOPES: tuple[Scope, ...] = ("openid", "profile", "email", "phone")
ClientId = Annotated[str, Path(min_length=1, max_length=64, description="The client's id")]


Text = Annotated[str, AfterValidator(storable)]


class ClientIn(BaseModel):
    name: Text = Field(..., min_length=1, max_length=200, examples=["shop"])
    type: Literal["confidential", "public"] = Field(
        "confidential",
        description="confidential: a server that keeps a secret; "
        "public: a browser or mobile app (PKCE, no secret)",
    )
    redirect_uris: list[Text] = Field(
        ...,
        min_length=1,
        max_length=20,
        description="Matched exactly",
        examples=[["https://shop.example/callback"]],
    )
    post_logout_redirect_uris: list[Text] = Field(default_factory=list, max_length=20)
    scopes: list[Scope] = Field(
        default_factory=lambda: list(ALL_SCOPES),
        description="Allowed scopes; openid is required",
    )
    client_id: Text | None = Field(None, max_length=64, description="Chosen id (else one is made)")
    backchannel_logout_uri: Text | None = Field(
        None,
        max_length=2000,
        description="Where a signed logout token is posted when a customer signs out of a session "
        "this client took part in (OpenID Connect Back-Channel Logout 1.0)",
    )


class ClientOut(BaseModel):
    client_id: str
    name: str
    type: Literal["confidential", "public"]
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    scopes: list[str]
    backchannel_logout_uri: str | None
    created_at: datetime


class ClientCreated(ClientOut):
    client_secret: str | None = Field(..., description="Shown once; null for a public client")


def _cdp(request: Request) -> OpenCDP:
    cdp: OpenCDP = request.app.state.cdp
    return cdp


@router.get("/clients", response_model=list[ClientOut], summary="List the client applications")
def list_clients(request: Request, key: AdminKey) -> list[dict[str, Any]]:
    return [c.describe() for c in clients.list_all(_cdp(request).engine)]


@router.post(
    "/clients", response_model=ClientCreated, status_code=201, summary="Register a client application"
)
def add_client(request: Request, key: AdminKey, body: ClientIn) -> dict[str, Any]:
    engine = _cdp(request).engine
    try:
        client, secret = clients.add(
            engine,
            body.name,
            body.redirect_uris,
            public=body.type == "public",
            scopes=list(body.scopes),
            post_logout_redirect_uris=body.post_logout_redirect_uris,
            client_id=body.client_id,
            backchannel_logout_uri=body.backchannel_logout_uri,
        )
    except clients.ClientError as exc:
        raise ApiError(400, "invalid_client", str(exc)) from None
    record(
        engine,
        f"key:{key.id}",
        "accounts.client.add",
        "account_client",
        client.client_id,
        {"name": client.name},
    )
    return {**client.describe(), "client_secret": secret}


@router.delete(
    "/clients/{client_id}", status_code=204, summary="Remove a client application (its tokens stop working)"
)
def remove_client(request: Request, key: AdminKey, client_id: ClientId) -> Response:
    engine = _cdp(request).engine
    if not clients.remove(engine, client_id):
        raise ApiError(404, "not_found", f"no client {client_id!r}")
    record(engine, f"key:{key.id}", "accounts.client.remove", "account_client", client_id)
    return Response(status_code=204)
