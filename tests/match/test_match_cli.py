"""`opencdp match run`, run as a user runs it (a subprocess): a dry run writes nothing and shows
the reasons, `--yes --json` merges and reports, a bad configuration is one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencdp.match.synthetic import records
from opencdp.system import OpenCDP
from tests.match.test_match_run import _import, _partition
from tests.serverproc import opencdp
from tests.test_cli import run


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_match_run_from_the_command_line(system: OpenCDP, env_for: dict[str, str], tmp_path: Path) -> None:
    rows = list(records(400, duplicate_share=0.25, seed=3))
    _import(system.engine, rows)

    dry = opencdp("match", "run", "--dry-run", env=env_for)
    assert "would merge crm_id:" in dry or "would merge anonymous_id:" in dry
    assert "match probability" in dry and "nothing was written" in dry
    assert "candidate pairs: first_name + last_name" in dry
    assert len(set(_partition(system.engine).values())) == 400

    refused = run("match", "run", env=env_for)  # no terminal to ask: nothing merged
    assert refused.returncode == 0 and "nothing merged (pass --yes" in refused.stdout

    summary = json.loads(opencdp("match", "run", "--yes", "--json", env=env_for).splitlines()[-1])
    assert summary["auto_merges"] > 50 and summary["profiles_before"] == 400
    assert summary["profiles_after"] == 400 - summary["auto_merges"]
    assert len(set(_partition(system.engine).values())) == summary["profiles_after"]
    assert {b["rule"] for b in summary["blocking"]} >= {"date_of_birth", "first_name + last_name"}

    config = tmp_path / "match.json"
    config.write_text(json.dumps({"blocking": [["nickname"]]}))
    bad = run("match", "run", "--config", str(config), env=env_for)
    assert bad.returncode == 1
    assert "match.json: blocking[0] names the unknown field 'nickname'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    config.write_text(json.dumps({"thresholds": {"auto_merge": 2}}))
    bad = run("match", "run", "--config", str(config), env=env_for)
    assert "thresholds.auto_merge: Input should be less than or equal to 1" in bad.stderr
