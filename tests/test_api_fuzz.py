"""Fuzzing every operation of the HTTP API from its own OpenAPI schema (schemathesis), in-process.

Three callers: an admin key, a read key of a different actor, and a write key for /v1. For every
operation and input, valid and invalid: no 5xx; no key secret or key hash in any response; and
nothing the read key may not see — no success from an operation outside the read scope, no
admin-only audit entry. Bounded: a few examples per operation and caller, no shrinking, ~10-20 s
per engine. Every failing operation is reported at once, with a curl command and the traceback.
Each run draws a new seed (fuzzing); OPENCDP_FUZZ_SEED=<seed from a failure> replays it, and
OPENCDP_FUZZ_EXAMPLES=50 searches deeper.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi

from opencdp.access.audit import record
from opencdp.access.keys import create_api_key, create_source
from opencdp.api.app import create_app
from opencdp.journeys import store as journey_store
from opencdp.segments import store as segment_store
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process
from tests.match.review_data import candidate

EXAMPLES = int(os.environ.get("OPENCDP_FUZZ_EXAMPLES") or 6)  # per operation, caller and mode
SEED = int(os.environ.get("OPENCDP_FUZZ_SEED") or random.randrange(2**32))
#: What a read key may succeed at (the spec of the read scope; everything else must fail for it).
READ_SCOPE = {
    ("GET", "/api/health"),
    ("GET", "/api/events"),
    ("GET", "/api/profiles/lookup"),
    ("GET", "/api/profiles/{profile_id}"),
    ("GET", "/api/profiles/{profile_id}/events"),
    ("GET", "/api/profiles/{profile_id}/merges"),
    ("GET", "/api/identity/rejections"),  # identifier pairs, like a profile's identifiers
    ("GET", "/api/segments"),
    ("GET", "/api/segments/{name}"),
    ("GET", "/api/segments/{name}/reach"),  # counts only, like a segment's member count
    ("POST", "/api/segments/validate"),
    ("POST", "/api/segments/preview"),
    ("GET", "/api/traits/computed"),
    ("GET", "/api/consent/purposes"),
    ("GET", "/api/destinations"),
    ("GET", "/api/destinations/{destination_id}"),
    ("GET", "/api/forwarding"),
    ("GET", "/api/audience-syncs"),
    ("GET", "/api/deliveries"),
    ("GET", "/api/journeys"),
    ("GET", "/api/predictions"),
    ("GET", "/api/forms"),  # form analytics: counts per form and field, like a report
    ("GET", "/api/forms/{form_id}"),
    ("GET", "/api/predictions/{name}"),
    ("GET", "/api/match/candidates"),  # the review queue reads profiles, like the profile reads
    ("GET", "/api/match/candidates/{candidate_id}"),
    ("GET", "/api/journeys/{journey_id}"),
    ("GET", "/api/journeys/{journey_id}/versions"),
    ("GET", "/api/profiles/{profile_id}/journeys"),
    ("GET", "/api/experiences"),
    ("GET", "/api/experiences/{name_or_id}"),
    ("GET", "/api/profiles/{profile_id}/sessions"),
    ("GET", "/api/weather"),  # imported weather by region and day: no personal data
    ("GET", "/api/experiences/{name}/uplift"),  # issue 10: reports of counts, read scope
    ("GET", "/api/reports/segment-performance"),
    ("GET", "/metrics"),
    ("GET", "/api/surveys"),  # survey definitions: questions, no answers (those are traits)
    ("GET", "/api/surveys/{name}"),
}


@pytest.fixture
def world(cdp: OpenCDP) -> Iterator[dict[str, Any]]:
    """Keys, a profile, a segment, an active journey and an audit entry the read key must never see."""
    admin_key, admin_secret = create_api_key(cdp.engine, "admin", "fuzz admin")
    _read_key, read_secret = create_api_key(cdp.engine, "read", "fuzz read")
    write_key = create_source(cdp.engine, "web")[1]
    consent = {"consent": {"purposes": {"email_marketing": True}}}
    traits = {"email": "fuzz@example.com", "country": "DE"}
    log_messages(cdp.engine, [{"type": "identify", "userId": "f1", "context": consent, "traits": traits}])
    process(cdp.engine)
    segment_store.save(cdp.engine, "de", {"trait": "country", "op": "eq", "value": "DE"}, "")
    with cdp.engine.begin() as conn:
        journey = {"entry": {"segment": "de"}, "steps": [{"id": "a", "wait": {"days": 1}}]}
        journey_store.set_status(conn, journey_store.save(conn, "welcome", journey)["id"], "active")
    candidate(cdp.engine, ("user_id", "f1"), ("anonymous_id", "f2"), 0.9)  # a pair to read and decide
    canary = f"audit-canary-{uuid.uuid4().hex}"
    record(cdp.engine, admin_key.actor, "canary.read", "canary", canary)
    secrets = [admin_secret, read_secret, write_key]
    yield {
        "admin": {"Authorization": f"Bearer {admin_secret}"},
        "read": {"Authorization": f"Bearer {read_secret}"},
        "write": {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()},
        "never": secrets + [hashlib.sha256(s.encode()).hexdigest() for s in secrets],
        "admin_only": [canary],
    }
    asgi.shutdown_lifespans()  # schemathesis keeps the app's lifespan running until told


def _problems(caller: str, operation: Any, response: Any, world: dict[str, Any]) -> list[str]:
    text = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    found = []
    if response.status_code >= 500:
        found.append(f"{response.status_code}: {response.text[:500]}")
    found += [f"a secret or key hash ({s[:6]}…) in the response" for s in world["never"] if s in text]
    if caller == "read":
        found += ["an admin-only audit entry in the response" for s in world["admin_only"] if s in text]
        allowed = (operation.method.upper(), operation.path) in READ_SCOPE
        if not allowed and response.status_code < 400:
            found.append(f"{response.status_code} for the read key outside its scope")
    return found


def _fuzz(operation: Any, caller: str, world: dict[str, Any]) -> None:
    """Valid and invalid requests for one operation as one caller; raises on the first problem."""
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=EXAMPLES * 2,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # shrinking could take minutes; the curl command reproduces
        suppress_health_check=list(HealthCheck),
    )
    @seed(SEED)
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(headers=world[caller])
        problems = _problems(caller, operation, response, world)
        assert not problems, f"{problems}\n{case.as_curl_command(headers=world[caller])}"

    run()


@pytest.mark.slow
def test_no_operation_fails_or_leaks(cdp: OpenCDP, world: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(cdp))
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for caller in ["write"] if operation.path.startswith("/v1/") else ["admin", "read"]:
            try:
                _fuzz(operation, caller, world)
            except Exception as exc:
                detail = "".join(traceback.format_exception(exc)[-12:])
                failures.append(f"{operation.method.upper()} {operation.path} as {caller}:\n{detail}")
    assert not failures, f"OPENCDP_FUZZ_SEED={SEED}\n\n" + "\n\n".join(failures)
