"""Client applications through the admin API and the CLI, signing keys through the CLI, the
password policy and the choice of texts per locale."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.accounts import clients, keys, policy
from opencdp.accounts.config import Brand
from opencdp.accounts.texts import Texts, negotiate
from opencdp.cli import main
from opencdp.config import Settings
from opencdp.system import OpenCDP


def test_clients_over_the_admin_api(client: TestClient, admin_key: str, cdp: OpenCDP) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    body = {"name": "shop", "redirect_uris": ["https://shop.example/callback"], "scopes": ["openid", "email"]}
    assert client.post("/api/accounts/clients", json=body).status_code == 401
    created = client.post("/api/accounts/clients", json=body, headers=auth)
    assert created.status_code == 201, created.text
    shop = created.json()
    assert shop["type"] == "confidential" and shop["client_secret"].startswith("cs_")
    found = clients.get(cdp.engine, shop["client_id"])
    assert found is not None and found.check_client_secret(shop["client_secret"])
    assert not found.check_client_secret(shop["client_secret"] + "x")
    app = client.post(
        "/api/accounts/clients",
        json={
            "name": "app",
            "type": "public",
            "redirect_uris": ["http://localhost:3000/cb"],
            "client_id": "mobile",
        },
        headers=auth,
    ).json()
    assert app["client_id"] == "mobile" and app["client_secret"] is None
    listed = client.get("/api/accounts/clients", headers=auth).json()
    assert {c["client_id"] for c in listed} == {shop["client_id"], "mobile"}
    assert all("client_secret" not in c for c in listed)
    for bad, problem in (
        ({**body, "redirect_uris": ["http://shop.example/cb"]}, "https"),
        ({**body, "redirect_uris": ["https://shop.example/cb#x"]}, "fragment"),
        ({**body, "scopes": ["email"]}, "openid"),
        ({**body, "client_id": "mobile"}, "exists"),
    ):
        refused = client.post("/api/accounts/clients", json=bad, headers=auth)
        assert refused.status_code == 400 and problem in refused.json()["message"], refused.text
    assert client.delete("/api/accounts/clients/mobile", headers=auth).status_code == 204
    assert client.delete("/api/accounts/clients/mobile", headers=auth).status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/accounts/clients"])
    assert "/accounts/token" not in paths  # the protocol is documented by discovery, not here


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_clients_and_keys_over_the_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCDP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("OPENCDP_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("OPENCDP_LOG_LEVEL", "WARNING")
    runner = CliRunner()
    added = runner.invoke(
        main,
        [
            "accounts",
            "clients",
            "add",
            "help desk",
            "--redirect-uri",
            "https://help.example/cb",
            "--client-id",
            "helpdesk",
        ],
    )
    assert added.exit_code == 0, added.output
    assert "client_id:     helpdesk" in added.output and "client_secret: cs_" in added.output
    public = runner.invoke(
        main,
        [
            "accounts",
            "clients",
            "add",
            "spa",
            "--public",
            "--redirect-uri",
            "https://spa.example/cb",
            "--scope",
            "openid",
            "--scope",
            "profile",
        ],
    )
    assert public.exit_code == 0 and "PKCE" in public.output
    listed = runner.invoke(main, ["accounts", "clients", "list"])
    assert "helpdesk  help desk  confidential" in listed.output and "scopes=openid profile" in listed.output
    refused = runner.invoke(main, ["accounts", "clients", "add", "x", "--redirect-uri", "ftp://x.example"])
    assert refused.exit_code == 1 and "https://" in refused.output
    assert runner.invoke(main, ["accounts", "clients", "remove", "helpdesk"]).exit_code == 0
    assert runner.invoke(main, ["accounts", "clients", "remove", "helpdesk"]).exit_code == 1

    first = runner.invoke(main, ["accounts", "keys", "rotate"])
    second = runner.invoke(main, ["accounts", "keys", "rotate"])
    assert first.exit_code == second.exit_code == 0
    old_kid, new_kid = first.output.split()[3], second.output.split()[3]
    listed_keys = runner.invoke(main, ["accounts", "keys", "list"]).output
    assert f"{new_kid}  RS256  signing" in listed_keys and f"{old_kid}  RS256  verifying" in listed_keys
    assert runner.invoke(main, ["accounts", "keys", "retire", new_kid]).exit_code == 1
    assert runner.invoke(main, ["accounts", "keys", "retire", old_kid]).exit_code == 0
    from opencdp.store.database import open_database

    engine = open_database(settings)
    assert [k.kid for k in keys.list_keys(engine) if k.retired_at is None] == [new_kid]
    engine.dispose()


@pytest.mark.parametrize(
    "password",
    [
        "short",
        "Password123!",
        "P4ssw0rd!!1",
        "qwerty2024!",
        "1234567890",
        "aaaaaaaaaaaa",
        "iloveyou!!",
        "ada.lovelace@example.com",
        "ada.lovelace99",
    ],
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(policy.WeakPassword):
        policy.check(password, "ada.lovelace@example.com")


@pytest.mark.parametrize("password", ["correct horse battery", "Tr0ub4dor&3x!", "a long walk by the river"])
def test_good_passwords_pass(password: str) -> None:
    policy.check(password, "ada.lovelace@example.com")


def test_texts_per_locale_replace_the_english_ones() -> None:
    brand = Brand(name="Shop", texts={"de": {"sign_in": "Anmelden", "sign_in_title": "Bei {brand} anmelden"}})
    assert negotiate(brand, None, "de-DE,de;q=0.9,en;q=0.8") == "de"
    assert negotiate(brand, "fr de", None) == "de"
    assert negotiate(brand, None, "fr-FR") == "en"
    german = Texts(brand, "de")
    assert german("sign_in") == "Anmelden" and german("sign_in_title") == "Bei Shop anmelden"
    assert german("register") == "Create an account"  # not translated: English
