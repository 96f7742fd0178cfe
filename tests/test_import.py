"""CRM/offline import: files and API rows become events, profiles and a summary, on both engines."""

from __future__ import annotations

import base64
import csv
import io
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opencdp.api.app import create_app
from opencdp.config import Settings
from opencdp.imports import ImportFailed, MappingError, load_mapping, parse_mapping, run_import
from opencdp.imports.cli import import_command
from opencdp.log.reader import EventQuery, count_events, read_events
from opencdp.profiles.reader import get_profile
from opencdp.store.database import open_database
from opencdp.store.schema import sources
from opencdp.system import OpenCDP
from tests.identity_helpers import profile_of

CONTACTS_TOML = """
kind = "contacts"
key = "crm_id"
timestamp = "updated_at"

[columns.crm_id]
identifier = "crm_id"
trait = true
[columns.email]
identifier = "email"
[columns.card]
identifier = "loyalty_card"
[columns.first_name]
trait = "firstName"
[columns.birthday]
type = "date"
format = "%d.%m.%Y"
[columns.vip]
type = "boolean"
[columns.visits]
type = "integer"
[columns.updated_at]
type = "datetime"
"""

CONTACTS_CSV = """crm_id,email,card,first_name,birthday,vip,visits,updated_at
C1,Ann@Example.com,L-1,Ann,01.04.1990,yes,3,2024-03-01T10:00:00+01:00
C2,bob@example.com,,Bob,,no,,2024-03-02T09:00:00
"""

TRANSACTIONS_TOML = """
kind = "transactions"
key = ["store", "receipt"]
timestamp = "sold_on"
timezone = "Europe/Berlin"
delimiter = ";"
decimal_separator = ","

[columns.receipt]
property = "order_id"
[columns.store]
[columns.sold_on]
type = "date"
format = "%d.%m.%Y"
[columns.amount]
type = "number"
property = "revenue"
required = true
[columns.currency]
[columns.category]
[columns.card]
identifier = "loyalty_card"
[columns.email]
identifier = "email"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def quiet(engine: sa.Engine, data: Path, mapping: Path | str, source: str = "crm", **kw: Any) -> Any:
    return run_import(engine, data, source, mapping, progress=False, echo=lambda _t: None, **kw)


def import_events(cdp: OpenCDP, source: str) -> list[dict[str, Any]]:
    return read_events(cdp.engine, EventQuery(source=source, limit=10_000))


def test_contacts_import_end_to_end(cdp: OpenCDP, tmp_path: Path) -> None:
    messages: list[str] = []
    data = write(tmp_path / "contacts.csv", CONTACTS_CSV)
    mapping = write(tmp_path / "contacts.toml", CONTACTS_TOML)
    summary = run_import(cdp.engine, data, "crm", mapping, progress=False, echo=messages.append)
    assert (summary.rows_read, summary.accepted, summary.rejected) == (2, 2, 0)
    assert (summary.events_written, summary.duplicates) == (2, 0)
    assert (summary.profiles_created, summary.profiles_merged) == (2, 0)
    assert summary.source_created and "created" in messages[0]
    assert summary.rejects_path == tmp_path / "contacts.csv.rejected.csv"
    assert summary.rejects_path.read_text().splitlines() == [
        "line_number,reason,crm_id,email,card,first_name,birthday,vip,visits,updated_at"
    ]

    ann, bob = import_events(cdp, "crm")
    assert ann["type"] == "identify" and ann["message_id"].startswith("import:")
    assert ann["timestamp"] == datetime(2024, 3, 1, 9, tzinfo=UTC)  # +01:00 respected
    assert bob["timestamp"] == datetime(2024, 3, 2, 9, tzinfo=UTC)  # no offset: the mapping's UTC
    assert ann["payload"]["traits"] == {
        "crm_id": "C1",
        "email": "Ann@Example.com",
        "firstName": "Ann",
        "birthday": "1990-04-01",
        "vip": True,
        "visits": 3,
    }
    assert bob["payload"]["traits"] == {
        "crm_id": "C2",
        "email": "bob@example.com",
        "firstName": "Bob",
        "vip": False,
    }
    assert ann["payload"]["context"]["externalIds"] == [
        {"id": "C1", "type": "crm_id", "collection": "users"},
        {"id": "Ann@Example.com", "type": "email", "collection": "users"},
        {"id": "L-1", "type": "loyalty_card", "collection": "users"},
    ]
    assert ann["payload"]["context"]["import"] == {"file": "contacts.csv", "line": 2}
    assert ann["anonymous_id"].startswith("import-") and ann["user_id"] is None

    profile = get_profile(cdp.engine, profile_of(cdp.engine, "loyalty_card", "L-1"))
    identifiers = {(i["type"], i["value"]) for i in profile["identifiers"]}
    assert {("crm_id", "C1"), ("email", "ann@example.com"), ("loyalty_card", "L-1")} <= identifiers
    assert profile["traits"]["firstName"]["value"] == "Ann"
    assert profile["traits"]["firstName"]["source"] == "crm"


def test_transactions_import_end_to_end(cdp: OpenCDP, tmp_path: Path) -> None:
    data = write(
        tmp_path / "orders.csv",
        "receipt;store;sold_on;amount;currency;category;card;email\n"
        "R1;Berlin;01.07.2024;12,50;EUR;shoes;L-1;\n"
        "R2;Berlin;02.07.2024;99;EUR;bags;L-1;\n"
        "R1;Hamburg;02.07.2024;5,25;EUR;;;eve@example.com\n",
    )
    summary = quiet(cdp.engine, data, write(tmp_path / "orders.toml", TRANSACTIONS_TOML), "stores")
    assert (summary.rows_read, summary.accepted, summary.events_written) == (3, 3, 3)
    assert (summary.profiles_created, summary.profiles_merged) == (2, 0)
    first, second, third = import_events(cdp, "stores")
    assert first["type"] == "track" and first["event"] == "Order Completed"
    assert first["timestamp"] == datetime(2024, 6, 30, 22, tzinfo=UTC)  # midnight in Berlin (CEST)
    assert first["payload"]["properties"] == {
        "order_id": "R1",
        "store": "Berlin",
        "revenue": 12.5,
        "currency": "EUR",
        "category": "shoes",
    }
    assert second["payload"]["properties"]["revenue"] == 99
    assert third["payload"]["properties"] == {
        "order_id": "R1",
        "store": "Hamburg",
        "revenue": 5.25,
        "currency": "EUR",
    }
    assert "traits" not in third["payload"] and "traits" not in third["payload"]["context"]
    card_profile = get_profile(cdp.engine, profile_of(cdp.engine, "loyalty_card", "L-1"))
    assert card_profile["event_counts"] == {"track": 2}


def test_jsonl_import_with_typed_values_and_custom_event(cdp: OpenCDP, tmp_path: Path) -> None:
    mapping = parse_mapping(
        {
            "kind": "transactions",
            "event": "Ticket Bought",
            "key": "id",
            "timestamp": "at",
            "columns": {
                "id": "integer",
                "user": {"identifier": "user_id"},
                "at": {"type": "datetime"},
                "price": {"type": "number", "property": "revenue"},
                "member": {"type": "boolean", "trait": "member"},
            },
        }
    )
    lines = [
        orjson.dumps({"id": 1, "user": "u1", "at": "2024-05-01T12:00:00Z", "price": 20, "member": True}),
        b"",
        b"{not json",
        orjson.dumps({"id": "2", "user": 7, "at": "2024-05-02T12:00:00Z", "price": "7.5", "extra": [1]}),
        orjson.dumps(["a list"]),
        orjson.dumps({"id": 3.5, "user": "u3", "at": "2024-05-03T12:00:00Z"}),
    ]
    data = tmp_path / "tickets.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    summary = quiet(cdp.engine, data, mapping, "tickets")
    assert (summary.rows_read, summary.accepted, summary.rejected) == (5, 2, 3)
    assert summary.ignored_columns == ["extra"]
    one, two = import_events(cdp, "tickets")
    assert one["event"] == "Ticket Bought" and one["user_id"] == "u1"
    assert one["payload"]["properties"] == {"id": 1, "revenue": 20}
    assert one["payload"]["context"]["traits"] == {"member": True}
    assert two["user_id"] == "7" and two["payload"]["properties"] == {"id": 2, "revenue": 7.5}
    rejects = list(csv.reader(summary.rejects_path.read_text().splitlines()))
    assert rejects[0] == ["line_number", "reason", "id", "user", "at", "price", "member", "extra"]
    assert [(r[0], r[1].split(" ")[0]) for r in rejects[1:]] == [("3", "not"), ("5", "must"), ("6", "column")]
    assert "column 'id': 3.5 is not an integer" in rejects[3][1]


def test_crm_contact_merges_with_web_user_and_store_card(
    cdp: OpenCDP, client: TestClient, write_key: str, tmp_path: Path
) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    batch = [
        {"type": "page", "anonymousId": "dev-9", "name": "Home"},
        {
            "type": "identify",
            "anonymousId": "dev-9",
            "userId": "web-9",
            "traits": {"email": "Dana@Example.com"},
        },
    ]
    assert client.post("/v1/batch", json={"batch": batch}, headers=auth).status_code == 200
    cdp.processor.run_until_caught_up()
    web_profile = profile_of(cdp.engine, "user_id", "web-9")

    orders = write(
        tmp_path / "orders.csv",
        "receipt;store;sold_on;amount;currency;category;card;email\nR9;Köln;03.07.2024;40;EUR;toys;L-9;\n",
    )
    first = quiet(cdp.engine, orders, write(tmp_path / "orders.toml", TRANSACTIONS_TOML), "stores")
    assert (first.profiles_created, first.profiles_merged) == (1, 0)
    assert profile_of(cdp.engine, "loyalty_card", "L-9") != web_profile

    contacts = write(
        tmp_path / "contacts.csv",
        "crm_id,email,card,first_name,birthday,vip,visits,updated_at\n"
        "C9,dana@example.com,L-9,Dana,,yes,,2024-07-05T08:00:00Z\n",
    )
    second = quiet(cdp.engine, contacts, write(tmp_path / "contacts.toml", CONTACTS_TOML))
    assert (second.events_written, second.profiles_created, second.profiles_merged) == (1, 0, 1)
    survivor = profile_of(cdp.engine, "user_id", "web-9")
    assert profile_of(cdp.engine, "crm_id", "C9") == survivor == profile_of(cdp.engine, "loyalty_card", "L-9")
    profile = get_profile(cdp.engine, survivor)
    assert profile["event_counts"] == {"page": 1, "identify": 2, "track": 1}
    assert profile["traits"]["firstName"]["value"] == "Dana"
    # The web identify happened now, after the CRM row's updated_at: its e-mail spelling wins.
    assert (profile["traits"]["email"]["value"], profile["traits"]["email"]["source"]) == (
        "Dana@Example.com",
        "web",
    )
    assert {"type": "anonymous_id", "value": "dev-9"} in profile["identifiers"]


def test_rejected_rows_go_to_a_file_with_line_numbers_and_reasons(cdp: OpenCDP, tmp_path: Path) -> None:
    data = write(
        tmp_path / "contacts.csv",
        "crm_id,email,card,first_name,birthday,vip,visits,updated_at\n"  # 1
        'C1,a@example.com,,"Ann\nMarie",,yes,1,2024-01-01T00:00:00\n'  # 2-3: accepted
        "C2,b@example.com,,Bob,31.02.1990,no,,2024-01-01T00:00:00\n"  # 4: no 31 February
        "\n"  # 5: blank, skipped
        "C3,c@example.com,,Cy,,perhaps,,2024-01-01T00:00:00\n"  # 6: not a boolean
        ",d@example.com,,Di,,,,2024-01-01T00:00:00\n"  # 7: empty key
        "C5,e@example.com,,Ed,,,,\n"  # 8: empty timestamp
        "C6,f@example.com,,Fay\n"  # 9: too few fields
        "C1,g@example.com,,Gus,,,,2024-01-01T00:00:00\n"  # 10: key of line 2
        "C8,test@test.com,,Hal,,,,2024-01-01T00:00:00\n"  # 11: accepted: crm_id C8 identifies
        "C9,,,Ida,,,2.5,2024-01-01T00:00:00\n",  # 12: not an integer
    )
    rejects = tmp_path / "out" / "bad.csv"
    rejects.parent.mkdir()
    summary = quiet(cdp.engine, data, write(tmp_path / "c.toml", CONTACTS_TOML), rejects_path=rejects)
    assert (summary.rows_read, summary.accepted, summary.rejected, summary.events_written) == (9, 2, 7, 2)
    rows = list(csv.DictReader(io.StringIO(rejects.read_text(encoding="utf-8"))))
    assert {int(r["line_number"]): r["reason"] for r in rows} == {
        4: "column 'birthday': '31.02.1990' is not a date in the format %d.%m.%Y",
        6: "column 'vip': 'perhaps' is not a boolean (true/false, yes/no, 1/0)",
        7: "column 'crm_id': is empty (part of the key)",
        8: "column 'updated_at': is empty (the timestamp)",
        9: "has 4 fields, the header has 8",
        10: "duplicate key (crm_id='C1'): the same as line 2",
        12: "column 'visits': '2.5' is not an integer",
    }
    assert rows[0]["first_name"] == "Bob" and rows[0]["birthday"] == "31.02.1990"  # the original row
    assert list(rows[0])[:3] == ["line_number", "reason", "crm_id"]


def test_reimport_creates_no_duplicates(cdp: OpenCDP, tmp_path: Path) -> None:
    mapping = write(tmp_path / "contacts.toml", CONTACTS_TOML)
    data = write(tmp_path / "contacts.csv", CONTACTS_CSV)
    quiet(cdp.engine, data, mapping)
    events_before = count_events(cdp.engine)
    again = quiet(cdp.engine, data, mapping)
    assert (again.accepted, again.duplicates, again.events_written) == (2, 2, 0)
    assert (again.profiles_created, again.profiles_merged, again.source_created) == (0, 0, False)
    assert count_events(cdp.engine) == events_before

    changed = write(
        tmp_path / "contacts.csv",
        CONTACTS_CSV.replace(",Ann,", ",Annie,") + "C3,c@example.com,,Cy,,,,2024-03-03T00:00:00\n",
    )
    third = quiet(cdp.engine, changed, mapping)
    assert (third.rows_read, third.duplicates, third.events_written, third.profiles_created) == (3, 2, 1, 1)
    assert count_events(cdp.engine) == events_before + 1
    ann = get_profile(cdp.engine, profile_of(cdp.engine, "crm_id", "C1"))
    assert ann["traits"]["firstName"]["value"] == "Ann"  # same key: the changed row is not imported


def test_header_mismatch_fails_before_anything_is_written(cdp: OpenCDP, tmp_path: Path) -> None:
    data = write(tmp_path / "contacts.csv", CONTACTS_CSV.replace("first_name", "firstname"))
    with pytest.raises(ImportFailed) as caught:
        quiet(cdp.engine, data, write(tmp_path / "c.toml", CONTACTS_TOML))
    message = str(caught.value)
    assert message.startswith(
        "contacts.csv, line 1 (the header): the mapping names column(s) it does not have"
    )
    assert "'first_name' (did you mean 'firstname'?)" in message
    assert "line 1" in message and "\n" not in message
    assert caught.value.problems[0][0] == "columns.first_name"
    assert count_events(cdp.engine) == 0
    assert not (tmp_path / "contacts.csv.rejected.csv").exists()
    with cdp.engine.connect() as conn:
        assert conn.execute(sa.select(sources.c.name)).all() == []  # the source was not created either

    strict = write(
        tmp_path / "strict.toml",
        CONTACTS_TOML.replace('kind = "contacts"', 'kind = "contacts"\nextra_columns = "error"'),
    )
    extra = write(tmp_path / "extra.csv", CONTACTS_CSV.replace("updated_at\n", "updated_at,shoe_size\n", 1))
    with pytest.raises(ImportFailed, match="'shoe_size'"):
        quiet(cdp.engine, extra, strict)


def test_mapping_errors_name_the_field(tmp_path: Path) -> None:
    def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
        with pytest.raises(MappingError) as caught:
            parse_mapping(data)
        return caught.value.problems

    base: dict[str, Any] = {"kind": "contacts", "key": "id", "columns": {"id": {"identifier": "crm_id"}}}
    parse_mapping(base)
    assert (
        problems({**base, "columns": {"id": {"identifier": "crm_id", "type": "text"}}})[0][0]
        == "columns.id.type"
    )
    assert problems({**base, "columns": {"id": {"identifer": "crm_id"}}})[0][0] == "columns.id.identifer"
    assert problems({**base, "key": ["nope"]})[0] == ("key[0]", "column 'nope' is not declared in columns")
    assert problems({**base, "timestamp": "id"})[0][0] == "columns.id.type"
    assert problems({**base, "timezone": "Mars/Olympus"})[0][0] == "timezone"
    bad_format = {"id": {"identifier": "crm_id"}, "at": {"type": "date", "format": "%d.%Q"}}
    assert problems({**base, "columns": bad_format})[0][0] == "columns.at.format"
    assert problems({**base, "columns": {"id": {"trait": "x"}}})[0][0] == "columns"  # no identifier
    assert problems({**base, "event": "X"})[0][0] == "event"
    two_users = {"id": {"identifier": "user_id"}, "other": {"identifier": "user_id"}}
    assert problems({**base, "columns": two_users})[0][0] == "columns.other.identifier"

    write(tmp_path / "bad.toml", 'kind = "contacts"\nkey = = 1\n')
    with pytest.raises(MappingError, match=r"bad\.toml: is not valid TOML.*line"):
        load_mapping(tmp_path / "bad.toml")
    write(
        tmp_path / "m.json",
        orjson.dumps(
            {**base, "columns": {"id": {"type": "date", "format": "%Y", "identifier": "x"}}}
        ).decode(),
    )
    with pytest.raises(
        MappingError, match=r"columns\.id\.type: an identifier column must be string or integer"
    ):
        load_mapping(tmp_path / "m.json")


def summary_numbers(output: str) -> dict[str, int]:
    """The summary table's rows: label → number."""
    out = {}
    for line in output.splitlines():
        label, _, number = line.strip().rpartition(" ")
        if label and number.replace(",", "").isdigit():
            out[label.strip()] = int(number.replace(",", ""))
    return out


def test_cli_import(env_for: dict[str, str], tmp_path: Path) -> None:
    data = write(
        tmp_path / "contacts.csv", CONTACTS_CSV + "C3,c@example.com,,Cy,,perhaps,,2024-01-01T00:00:00\n"
    )
    mapping = write(tmp_path / "contacts.toml", CONTACTS_TOML)
    runner = CliRunner()
    args = [str(data), "--source", "crm", "--mapping", str(mapping)]
    result = runner.invoke(import_command, [*args, "--no-progress"], env=env_for)
    assert result.exit_code == 0, result.output
    assert "source 'crm' did not exist: created it" in result.stderr
    numbers = summary_numbers(result.stdout)
    assert numbers == {
        "rows read": 3,
        "accepted": 2,
        "rejected": 1,
        "already imported": 0,
        "events written": 2,
        "profiles created": 2,
        "profiles merged": 0,
    }
    assert f"rejected rows (line number, reason, the row): {data}.rejected.csv" in result.stdout

    again = runner.invoke(import_command, args, env=env_for)  # with the progress bar
    assert again.exit_code == 0, again.output
    assert summary_numbers(again.stdout)["already imported"] == 2
    assert summary_numbers(again.stdout)["events written"] == 0

    records = tmp_path / "contacts.txt"
    records.write_bytes(orjson.dumps({"crm_id": "C7", "email": "x@example.com", "updated_at": "2024-01-01"}))
    rejects = tmp_path / "r.csv"
    extra_args = ["--format", "jsonl", "--rejects", str(rejects), "--no-progress"]
    jsonl = runner.invoke(import_command, [str(records), *args[1:], *extra_args], env=env_for)
    assert (
        jsonl.exit_code == 1 and "contacts.txt: the mapping names column(s) it does not have" in jsonl.output
    )
    loose_mapping = {
        "kind": "contacts",
        "key": "crm_id",
        "timestamp": "updated_at",
        "columns": {
            "crm_id": {"identifier": "crm_id"},
            "email": {"identifier": "email"},
            "updated_at": "datetime",
        },
    }
    loose_json = write(tmp_path / "loose.json", orjson.dumps(loose_mapping).decode())
    jsonl = runner.invoke(
        import_command, [str(records), *args[1:3], "--mapping", str(loose_json), *extra_args], env=env_for
    )
    assert jsonl.exit_code == 0, jsonl.output
    assert summary_numbers(jsonl.stdout)["events written"] == 1 and rejects.exists()

    missing = runner.invoke(import_command, [str(tmp_path / "nope.csv"), *args[1:]], env=env_for)
    assert missing.exit_code == 1 and "nope.csv: no such file" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    bad = write(tmp_path / "bad.toml", CONTACTS_TOML.replace('type = "boolean"', 'type = "bool"'))
    invalid = runner.invoke(import_command, [*args[:3], "--mapping", str(bad)], env=env_for)
    assert invalid.exit_code == 1 and "columns.vip.type" in invalid.output
    header = write(tmp_path / "h.csv", "crm_id,mail\nC1,a@example.com\n")
    mismatch = runner.invoke(import_command, [str(header), *args[1:]], env=env_for)
    assert mismatch.exit_code == 1 and "line 1" in mismatch.output and "'email'" in mismatch.output
    assert len(mismatch.output.strip().splitlines()) == 1


@pytest.fixture
def api(cdp: OpenCDP) -> Iterator[TestClient]:
    """The app, as `opencdp serve` builds it."""
    with TestClient(create_app(cdp)) as test_client:
        yield test_client


def test_api_import(api: TestClient, cdp: OpenCDP, admin_key: str) -> None:
    admin = {"Authorization": f"Bearer {admin_key}"}
    mapping = {
        "kind": "contacts",
        "key": "crm_id",
        "columns": {
            "crm_id": {"identifier": "crm_id"},
            "email": {"identifier": "email"},
            "first_name": {"trait": "firstName"},
            "visits": "integer",
        },
    }
    rows = [
        {"crm_id": "C1", "email": "ann@example.com", "first_name": "Ann", "visits": 3},
        {"crm_id": "", "email": "bob@example.com", "first_name": "Bob"},
        {"crm_id": "C3", "email": "cy@example.com", "visits": "many"},
    ]
    body = {"source": "crm-api", "mapping": mapping, "rows": rows}
    response = api.post("/api/imports", json=body, headers=admin)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["source_created"] is True
    assert {k: result[k] for k in ("rows_read", "accepted", "rejected", "duplicates", "events_written")} == {
        "rows_read": 3,
        "accepted": 1,
        "rejected": 2,
        "duplicates": 0,
        "events_written": 1,
    }
    assert result["profiles_created"] == 1
    assert result["rejected_rows"] == [
        {"index": 1, "reason": "column 'crm_id': is empty (part of the key)", "column": "crm_id"},
        {"index": 2, "reason": "column 'visits': 'many' is not an integer", "column": "visits"},
    ]
    ann = get_profile(cdp.engine, profile_of(cdp.engine, "crm_id", "C1"))
    assert ann["traits"]["visits"]["value"] == 3 and ann["traits"]["email"]["source"] == "crm-api"

    again = api.post("/api/imports", json=body, headers=admin).json()
    assert (again["duplicates"], again["events_written"], again["source_created"]) == (1, 0, False)

    assert api.post("/api/imports", json=body).status_code == 401
    bad_type = {**body, "mapping": {**mapping, "columns": {**mapping["columns"], "email": {"type": "mail"}}}}
    error = api.post("/api/imports", json=bad_type, headers=admin)
    assert error.status_code == 400
    assert error.json()["errors"][0]["field"] == "mapping.columns.email.type"
    bad_key = api.post("/api/imports", json={**body, "mapping": {**mapping, "key": "id"}}, headers=admin)
    assert bad_key.status_code == 400 and bad_key.json()["errors"] == [
        {"field": "mapping.key[0]", "problem": "column 'id' is not declared in columns"}
    ]
    unknown = {**body, "rows": [{"crm_id": "C1", "email": "a@example.com", "visits": 1}]}
    missing = api.post("/api/imports", json=unknown, headers=admin)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "mapping.columns.first_name"
    too_many = api.post("/api/imports", json={**body, "rows": [rows[0]] * 10_001}, headers=admin)
    assert too_many.status_code == 400 and too_many.json()["errors"][0]["field"] == "rows"
    assert "/api/imports" in api.get("/openapi.json").json()["paths"]


def write_transactions(path: Path, rows: int, customers: int, bad_every: int) -> tuple[int, set[int]]:
    """A chronological store export; every `bad_every`-th amount is unreadable. Returns (bad
    rows, customers of the good rows)."""
    rng = random.Random(7)
    start, bad, seen = date(2023, 1, 1), 0, set()
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle, delimiter=";")
        out.writerow(["receipt", "store", "sold_on", "amount", "currency", "category", "card", "email"])
        for i in range(rows):
            customer = rng.randrange(customers)
            amount = f"{rng.randint(100, 99_999) / 100:.2f}".replace(".", ",")
            if i % bad_every == bad_every - 1:
                amount, bad = "n/a", bad + 1
            else:
                seen.add(customer)
            day = start + timedelta(days=i * 700 // rows)
            category = rng.choice(["shoes", "bags", "toys"])
            out.writerow(
                [
                    f"R{i}",
                    f"S{i % 40}",
                    day.strftime("%d.%m.%Y"),
                    amount,
                    "EUR",
                    category,
                    f"L{customer}",
                    f"c{customer}@example.com",
                ]
            )
    return bad, seen


#: Rows of the large-import test: 20,000 in the suite (about 30 s on SQLite); set
#: OPENCDP_TEST_IMPORT_ROWS=100000 for the scale run.
LARGE_IMPORT_ROWS = int(os.environ.get("OPENCDP_TEST_IMPORT_ROWS", "20000"))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_large_import(settings: Settings, tmp_path: Path) -> None:
    """Tens of thousands of rows (mostly identity resolution time), on SQLite only."""
    rows = LARGE_IMPORT_ROWS
    engine = open_database(settings)
    data = tmp_path / "orders.csv"
    bad, customers = write_transactions(data, rows, rows // 5, 4_000 if rows >= 40_000 else 1_000)
    mapping = write(tmp_path / "orders.toml", TRANSACTIONS_TOML)
    started = time.monotonic()
    summary = quiet(engine, data, mapping, "stores")
    took = time.monotonic() - started
    print(f"\n{rows:,}-row import on {engine.dialect.name}: {took:.1f} s")
    assert (summary.rows_read, summary.rejected, summary.accepted) == (rows, bad, rows - bad)
    assert (summary.events_written, summary.duplicates) == (rows - bad, 0)
    assert (summary.profiles_created, summary.profiles_merged) == (len(customers), 0)
    assert count_events(engine) == rows - bad
    assert len(summary.rejects_path.read_text().splitlines()) == bad + 1

    again = quiet(engine, data, mapping, "stores")
    print(f"re-import of the same {rows:,} rows: {again.seconds:.1f} s")
    assert (again.duplicates, again.events_written, again.profiles_created) == (rows - bad, 0, 0)
    assert count_events(engine) == rows - bad
    engine.dispose()
