"""The API documentation page (/docs, Swagger UI) with every asset from this server.

FastAPI's defaults load Swagger UI and ReDoc from a public CDN: blank without internet access, and
each visit tells a third party that an admin is reading the docs. Swagger UI's script and style
come instead from the `fastapi-offline` package (a dependency, pinned in pyproject.toml), which
ships them inside its wheel; they are served under /docs-assets/. ReDoc is switched off: even from
a local script it fetches its logo from its vendor's CDN, and Swagger UI shows the same schema.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
#: Swagger UI asks swagger.io's online validator about the schema unless told not to.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def assets_directory() -> str:
    return str(files("fastapi_offline") / "static")


def add_docs(app: FastAPI) -> None:
    """Call on an app created with docs_url=None and redoc_url=None (/redoc answers 404)."""
    app.mount(ASSETS, StaticFiles(directory=assets_directory()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} API",
            oauth2_redirect_url=root + oauth2_redirect,
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
