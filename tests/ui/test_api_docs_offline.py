"""/docs names only this server's assets, and they are served (from the fastapi-offline package)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs_page_refers_only_to_assets_of_this_server(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert sorted(urls) == [
        "/docs-assets/favicon.png",
        "/docs-assets/swagger-ui-bundle.js",
        "/docs-assets/swagger-ui.css",
        "/openapi.json",
    ]
    assert "https://" not in page.text and "http://" not in page.text
    assert '"validatorUrl": null' in page.text  # no schema sent to swagger.io's validator
    for asset, kind in [("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")]:
        served = client.get(f"/docs-assets/{asset}")
        assert served.status_code == 200 and kind in served.headers["content-type"]
        assert len(served.content) > 100_000
    assert client.get("/redoc").status_code == 404  # switched off: ReDoc loads its logo from a CDN
