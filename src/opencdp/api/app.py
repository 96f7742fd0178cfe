"""The ASGI application: collection API, admin API, OpenAPI schema at /openapi.json, its
documentation at /docs (Swagger UI), served without any CDN (api/docs.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from opencdp import __version__
from opencdp.access.ratelimit import RateLimit, TokenBuckets
from opencdp.access.throttle import SignInThrottle
from opencdp.accounts import endpoints as account_endpoints
from opencdp.accounts import pages as account_pages
from opencdp.accounts import preference_pages, profiling_pages, second_factor_pages
from opencdp.accounts import social_pages as account_social_pages
from opencdp.accounts.admission import CustomerFaceAdmission
from opencdp.accounts.config import AccountSettings
from opencdp.accounts.service import AccountsService
from opencdp.api import (
    accounts,
    activation,
    admin,
    audit,
    browser,
    collect,
    decide,
    experiences,
    forms,
    identity,
    imports,
    journeys,
    matching,
    metrics,
    predictions,
    preferences,
    privacy,
    profiles,
    segments,
    weather,
)
from opencdp.api import uplift as uplift_api
from opencdp.api.body_guard import BodyGuard
from opencdp.api.cors import Cors
from opencdp.api.docs import add_docs
from opencdp.api.errors import ApiError, api_error_handler, http_error_handler, validation_error_handler
from opencdp.api.responses import FastJSONResponse
from opencdp.api.schemas import DOCUMENTED_MODELS
from opencdp.system import OpenCDP
from opencdp.ui import router as ui_router
from opencdp.ui.web import page_errors


def create_app(cdp: OpenCDP, account_settings: AccountSettings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        cdp.start()
        try:
            yield
        finally:
            cdp.stop()

    app = FastAPI(
        title="opencdp",
        version=__version__,
        description="Segment-compatible collection API (/v1) and admin API (/api) of opencdp.",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
        docs_url=None,  # served by add_docs with assets from a package, not a CDN
        redoc_url=None,
    )
    app.state.cdp = cdp
    limit = RateLimit.from_env()  # OPENCDP_RATE_LIMIT, per write key
    app.state.rate_limits = TokenBuckets(limit) if limit else None
    app.state.sign_in_throttle = SignInThrottle()
    # issue 16: customer accounts, the OpenID provider (on when OPENCDP_ACCOUNTS_ISSUER is set)
    accounts_settings = account_settings or AccountSettings.from_env()
    app.state.accounts = AccountsService(cdp, accounts_settings)
    app.include_router(collect.router)
    app.include_router(browser.router)
    app.include_router(decide.router)
    app.include_router(admin.router)
    app.include_router(profiles.router)
    app.include_router(identity.router)
    app.include_router(segments.router)
    app.include_router(activation.router)
    app.include_router(journeys.router)
    app.include_router(experiences.router)
    app.include_router(predictions.router)
    app.include_router(forms.router)
    app.include_router(matching.router)
    app.include_router(imports.router)
    app.include_router(weather.router)
    app.include_router(ui_router)
    app.include_router(privacy.router)
    app.include_router(preferences.router)
    app.include_router(preference_pages.router)
    app.include_router(audit.router)
    app.include_router(metrics.router)
    # issue 10: uplift report and segment performance (api/uplift.py)
    app.include_router(uplift_api.router)
    app.include_router(accounts.router)
    app.include_router(account_endpoints.api)
    app.include_router(account_endpoints.pages)
    app.include_router(account_pages.router)
    app.include_router(account_social_pages.router)
    app.include_router(second_factor_pages.router)
    app.include_router(profiling_pages.router)
    add_docs(app)
    app.add_middleware(decide.DecideFastPath)  # innermost: guarded, CORS'd and timed as any route
    app.add_middleware(
        CustomerFaceAdmission, concurrency=accounts_settings.concurrency, queue=accounts_settings.queue
    )
    app.add_middleware(BodyGuard, timeout_seconds=cdp.settings.body_timeout_seconds)
    app.add_middleware(Cors, origins=cdp.settings.cors_origins)  # /v1/* only
    app.add_middleware(metrics.RequestTimer)  # outermost: times everything, BodyGuard's 408s too
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(StarletteHTTPException, page_errors(http_error_handler))
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in DOCUMENTED_MODELS:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
