"""`opencdp match review/show/accept/reject/skip/dismiss`, run as a user runs them (a subprocess),
on both engines: accept leaves the profiles merged when it returns, errors are one line."""

from __future__ import annotations

import json

from opencdp.system import OpenCDP
from tests.identity_helpers import profile_of
from tests.match.review_data import candidate, people
from tests.serverproc import opencdp
from tests.test_cli import run


def test_review_and_decide_from_the_command_line(system: OpenCDP, env_for: dict[str, str]) -> None:
    engine = system.engine
    people(engine)
    anna = candidate(engine, ("user_id", "u-anna"), ("anonymous_id", "anon-1"), 0.9)
    bob = candidate(engine, ("user_id", "u-bob"), ("user_id", "u-carl"), 0.95)
    dora = candidate(engine, ("user_id", "u-dora"), ("anonymous_id", "anon-dora"), 0.85)

    table = opencdp("match", "review", env=env_for)
    assert "3 pending · 0 skipped · 0 accepted · 0 rejected · 0 merged" in table
    lines = [line for line in table.splitlines() if "user_id:" in line]
    assert [line.split()[0] for line in lines] == [str(bob), str(anna), str(dora)]
    assert "0.950" in lines[0] and "user_id:u-bob" in lines[0] and "name similar" in lines[0]
    listed = json.loads(opencdp("match", "review", "--json", "--limit", "1", env=env_for))
    assert [c["id"] for c in listed["candidates"]] == [bob]
    assert listed["total"] == 3

    shown = opencdp("match", "show", str(anna), env=env_for)
    assert "* first_name" in shown and "Ana" in shown and "Anna" in shown
    assert f"opencdp match accept {anna}" in shown
    assert json.loads(opencdp("match", "show", str(dora), "--json", env=env_for))["allowed"] == ["dismiss"]

    accepted = opencdp("match", "accept", str(anna), env=env_for)
    survivor = profile_of(engine, "user_id", "u-anna")
    assert profile_of(engine, "anonymous_id", "anon-1") == survivor  # merged when the command returned
    assert accepted.startswith(f"candidate {anna}: accepted and merged into profile {survivor} (event ")

    again = run("match", "reject", str(anna), env=env_for)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.strip() == f"Error: candidate {anna} is already decided: accepted by cli"
    refused = run("match", "accept", str(bob), env=env_for)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"Error: candidate {bob}: merge protection refuses it: together they have 2 user_id (at most 1)"
    )
    missing = run("match", "skip", "999999", env=env_for)
    assert (missing.returncode, missing.stderr.strip()) == (1, "Error: there is no match candidate 999999")
    assert run("match", "accept", "0", env=env_for).returncode == 2  # not an id: a usage error

    assert opencdp("match", "skip", str(bob), env=env_for).strip() == f"candidate {bob}: skipped"
    assert opencdp("match", "reject", str(bob), env=env_for).strip() == f"candidate {bob}: rejected"
    assert opencdp("match", "dismiss", str(dora), env=env_for).strip() == f"candidate {dora}: merged"
    assert "no pending pairs" in opencdp("match", "review", env=env_for)
    assert "rejected" in opencdp("match", "review", "--status", "all", env=env_for)
