"""A real OpenID Provider for the social-login tests: `oidc-provider` (panva's certified OpenID
provider, from the npm registry) run with Node by tests/social_provider.mjs.

The package is installed at test set-up into a cache outside the repository, like the browser
tests' analytics-next: `<OPENCDP_TEST_NPM_DIR or ~/.cache/opencdp-tests/npm>/oidc-provider` (its
own npm prefix, so that neither install prunes the other's `--no-save` packages). Without `node`
or `npm` the tests skip, saying so.
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.serverproc import free_port

NPM_DIR = Path(os.environ.get("OPENCDP_TEST_NPM_DIR") or Path.home() / ".cache" / "opencdp-tests" / "npm")
PREFIX = NPM_DIR / "oidc-provider"
PACKAGE = "oidc-provider@9"
SCRIPT = Path(__file__).with_name("social_provider.mjs")
CLIENT_ID, CLIENT_SECRET = "opencdp-shop", "shop-secret-for-tests-only"

#: The script's accounts (tests/social_provider.mjs): login → (password, claims).
ALICE = ("alice", "alice-password")
MALLORY = ("mallory", "mallory-password")
ALICE_SUB, MALLORY_SUB = "alice-0001", "mallory-0002"


@dataclass
class OpenIdProvider:
    issuer: str
    redirect_uri: str
    signing_key: RSAKey  # the provider's private key: lets a test sign as the provider would
    log: Path


def oidc_provider_module() -> Path:
    """oidc-provider's entry point, installed on first use; skips without Node and npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed: the social-login tests run the npm package oidc-provider")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    if int(version.strip().lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"oidc-provider 9 needs Node 20 or later, found {version.strip()}")
    module = PREFIX / "node_modules" / "oidc-provider" / "lib" / "index.js"
    PREFIX.mkdir(parents=True, exist_ok=True)
    with (PREFIX / ".install-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: one installs, the others wait for it
        if not module.exists():
            done = subprocess.run(
                [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(PREFIX), PACKAGE],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert done.returncode == 0, f"npm install {PACKAGE} failed:\n{done.stdout}\n{done.stderr}"
    return module


@pytest.fixture(scope="session")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    """One provider process for every social-login test of a worker (the modules are in the
    xdist group "social-provider")."""
    yield from start_provider(tmp_path_factory.mktemp("social-provider"))


def register_client(op: OpenIdProvider, *redirect_uris: str) -> tuple[str, str]:
    """A client of its own for one test (its server's callback URLs), by OpenID Connect Dynamic
    Client Registration at the provider: (client_id, client_secret)."""
    answer = httpx.post(
        f"{op.issuer}/reg",
        json={"redirect_uris": list(redirect_uris), "grant_types": ["authorization_code"],
              "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic"},
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    return answer.json()["client_id"], answer.json()["client_secret"]


def start_provider(workdir: Path) -> Iterator[OpenIdProvider]:
    """Start the provider on a free port, wait for its discovery document, stop it afterwards."""
    module, node = oidc_provider_module(), shutil.which("node")
    assert node is not None
    key = RSAKey.generate_key(2048, parameters={"kid": "provider-key-1", "use": "sig", "alg": "RS256"})
    for _attempt in range(3):
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        redirect_uri = f"http://127.0.0.1:{port}/never-served/callback"  # the test reads the redirect
        config = workdir / "provider.json"
        config.write_text(
            json.dumps(
                {
                    "module": str(module),
                    "port": port,
                    "issuer": issuer,
                    "jwks": {"keys": [key.as_dict(private=True)]},
                    "client": {
                        "client_id": CLIENT_ID,
                        "client_secret": CLIENT_SECRET,
                        "redirect_uris": [redirect_uri],
                    },
                }
            )
        )
        log = workdir / "provider.log"
        with log.open("w") as out:
            proc = subprocess.Popen([node, str(SCRIPT), str(config)], stdout=out, stderr=subprocess.STDOUT)
        try:
            if _wait_for_discovery(proc, issuer, log):
                yield OpenIdProvider(issuer, redirect_uri, key, log)
                return
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if "EADDRINUSE" not in log.read_text():
            raise AssertionError(f"the OpenID provider did not start:\n{log.read_text()}")
    raise AssertionError("the OpenID provider found no free port in three attempts")


def _wait_for_discovery(proc: subprocess.Popen[bytes], issuer: str, log: Path) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no discovery document from {issuer} within 30 s:\n{log.read_text()}")


async def sign_in_at_provider(
    authorization_url: str,
    redirect_uri: str,
    account: tuple[str, str],
    share: Sequence[str] | None = None,
    form_post: bool = False,
) -> dict[str, str]:
    """Do what the customer's browser does at the provider: follow the redirects, fill in the
    sign-in form and the consent form (ticking `share`, or every scope asked for), and return the
    query of the final redirect to `redirect_uri` (or the fields of the auto-submitted form, with
    `response_mode=form_post`): the callback opencdp would receive."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
        response = await browser.get(authorization_url)
        for _step in range(12):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if target.startswith(redirect_uri):
                    assert not form_post, "expected the callback as a posted form, got a redirect"
                    return dict(parse_qsl(urlsplit(target).query))
                response = await browser.get(target)
                continue
            form = re.search(r'<form method="post" action="([^"]+)">', response.text)
            if response.status_code != 200 or form is None:
                raise AssertionError(
                    f"unexpected page at the provider ({response.status_code}): {response.text}"
                )
            action = urljoin(str(response.url), html.unescape(form.group(1)))
            if action.startswith(redirect_uri):  # response_mode=form_post: the callback as a form
                assert form_post, "expected the callback as a redirect, got a posted form"
                fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"/>', response.text)
                return {name: html.unescape(value) for name, value in fields}
            data: dict[str, Any]
            if action.endswith("/login"):
                data = {"login": account[0], "password": account[1]}
            else:
                offered = re.findall(r'name="scope" value="([^"]+)"', response.text)
                data = {"scope": list(offered if share is None else share)}
            response = await browser.post(action, data=data)
    raise AssertionError("the provider never redirected back")
