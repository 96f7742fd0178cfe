"""`opencdp profiles unmerge / rejections / allow`, run as a user runs them, on both engines."""

from __future__ import annotations

import json

import sqlalchemy as sa

from opencdp.store.schema import audit_log, identity_links
from opencdp.system import OpenCDP
from tests.identity_helpers import log_messages, process, profile_of
from tests.serverproc import opencdp
from tests.test_cli import run


def test_unmerge_list_and_allow_from_the_command_line(system: OpenCDP, env_for: dict[str, str]) -> None:
    engine = system.engine
    log_messages(
        engine,
        [
            {
                "type": "identify",
                "userId": "ann",
                "anonymousId": "tablet",
                "messageId": "t1",
                "timestamp": "2026-05-01T10:00:00Z",
            },
            {
                "type": "identify",
                "anonymousId": "tablet",
                "traits": {"email": "bob@example.com"},
                "messageId": "t2",
                "timestamp": "2026-05-02T10:00:00Z",
            },
        ],
    )
    process(engine)
    pid = profile_of(engine, "user_id", "ann")
    history = json.loads(opencdp("profiles", "get", pid, "--history", env=env_for))["merge_history"]
    link = next(x for x in history["links"] if x["left"]["type"] == "email" or x["right"]["type"] == "email")
    out = opencdp(
        "profiles",
        "unmerge",
        pid,
        "--link",
        str(link["id"]),
        "--reason",
        "shared tablet",
        "--yes",
        env=env_for,
    )
    assert out.startswith("rejection 1 (rejected, applied):"), out
    bob = profile_of(engine, "email", "bob@example.com")
    assert bob != pid and f"email:bob@example.com → {bob}" in out and f"anonymous_id:tablet → {pid}" in out
    listing = opencdp("profiles", "rejections", env=env_for)
    assert (
        "anonymous_id:tablet ≠ email:bob@example.com  by cli on" in listing
        and "(applied): shared tablet" in listing
    )
    rows = [
        json.loads(line) for line in opencdp("profiles", "rejections", "--json", env=env_for).splitlines()
    ]
    assert [r["id"] for r in rows] == [1]
    shown = json.loads(opencdp("profiles", "get", bob, "--history", env=env_for))
    assert shown["rejections"][0]["reason"] == "shared tablet"
    assert any(c["rule"] == "rejected" for c in shown["merge_history"]["conflicts"])
    allowed = opencdp("profiles", "allow", "1", env=env_for)
    assert (
        allowed.startswith("rejection 1 withdrawn:") and profile_of(engine, "email", "bob@example.com") == pid
    )
    assert opencdp("profiles", "rejections", env=env_for).strip() == "no rejections"
    with engine.connect() as conn:
        actions = [r.action for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.id))]
    assert "identity.unmerge" in actions and "identity.unmerge_undo" in actions


def test_unmerge_errors_are_one_line(system: OpenCDP, env_for: dict[str, str]) -> None:
    engine = system.engine
    log_messages(
        engine,
        [
            {
                "type": "identify",
                "userId": "ann",
                "anonymousId": "tablet",
                "messageId": "t1",
                "timestamp": "2026-05-01T10:00:00Z",
            }
        ],
    )
    process(engine)
    pid = profile_of(engine, "user_id", "ann")
    with engine.connect() as conn:
        link_id = conn.execute(sa.select(identity_links.c.id)).scalar_one()
    cases = [
        (("profiles", "unmerge", pid, "--link", "999", "--yes"), "link_id: no link 999"),
        (("profiles", "unmerge", "nobody", "--link", str(link_id), "--yes"), "no profile 'nobody'"),
        (
            ("profiles", "unmerge", pid, "--left", "user_id:ann", "--right", "user_id:zed", "--yes"),
            "right: user_id is not an identifier",
        ),
        (
            ("profiles", "unmerge", pid, "--left", "ann", "--right", "user_id:zed", "--yes"),
            "--left: give TYPE:VALUE",
        ),
        (("profiles", "unmerge", pid, "--yes"), "give --link LINK_ID, or --left"),
        (("profiles", "allow", "7"), "no rejection 7"),
    ]
    for args, message in cases:
        result = run(*args, env=env_for)
        assert result.returncode != 0, args
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    declined = run("profiles", "unmerge", pid, "--link", str(link_id), env=env_for)  # no --yes, "n" on stdin
    assert declined.returncode == 1 and "Aborted" in declined.stderr
