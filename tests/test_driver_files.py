"""The file driver: one CSV or JSON Lines file per batch, in a real folder, appearing whole."""

from __future__ import annotations

import csv
import errno
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from opencdp.activation.drivers import DestinationConfigError, Message, Outcome, driver_class
from opencdp.activation.drivers import files as files_module
from opencdp.activation.drivers.files import FileDriver, Now, safe_file_name

MOMENT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _driver(folder: Path | str, **overrides: Any) -> FileDriver:
    return FileDriver(config=FileDriver.validate({"folder": str(folder), **overrides}))


def _audience(n: int, action: str = "add", email: str = "ada@example.com") -> Message:
    context = {
        "kind": "audience",
        "action": action,
        "segment": {"id": 7, "name": "VIP"},
        "profile": {"id": f"p{n}", "traits": {"email": email}, "computed": {"orders": n}, "consent": {}},
        "destination": {"id": 3, "name": "crm drop"},
    }
    body = {"action": action, "profile_id": f"p{n}", "email": email}
    return Message(delivery_id=n, key=f"d{n}-k", context=context, body=body)


def _event(n: int) -> Message:
    event = {"type": "track", "event": "Order Completed", "timestamp": "2026-12-01T09:00:00Z"}
    context = {
        "kind": "event",
        "event": event,
        "profile": {"id": f"p{n}", "traits": {"email": "grace@example.com"}, "computed": {}, "consent": {}},
        "destination": {"id": 3, "name": "crm drop"},
    }
    return Message(delivery_id=n, key=f"e{n}-k", context=context, body={"event": "Order Completed"})


def _send(driver: FileDriver, messages: list[Message]) -> list[Outcome]:
    return anyio.run(driver.send, messages)


def _files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def test_the_kind_is_registered() -> None:
    assert driver_class("file") is FileDriver


def test_a_batch_is_one_csv_file_with_the_key_first(tmp_path: Path) -> None:
    folder = tmp_path / "drop" / "new"  # created when missing
    driver = _driver(folder)
    outcomes = _send(driver, [_audience(1), _audience(2, "remove", '=HYPERLINK("http://x")'), _event(3)])
    assert outcomes == [Outcome.ok()] * 3

    [path] = _files(folder)
    assert path.name.startswith("opencdp-crm drop-") and path.name.endswith(".csv")
    assert len(path.name) == len("opencdp-crm drop-20261201T093000Z.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["idempotency_key", *files_module.DEFAULT_COLUMNS]
    assert rows[0] == {
        "idempotency_key": "d1-k",
        "kind": "audience",
        "profile_id": "p1",
        "email": "ada@example.com",
        "action": "add",
        "segment_id": "7",
        "segment_name": "VIP",
        "event_type": "",
        "event": "",
        "timestamp": "",
    }
    assert rows[1]["action"] == "remove"
    assert rows[1]["email"] == '\'=HYPERLINK("http://x")', "formula injection neutralised"
    assert rows[2]["kind"] == "event" and rows[2]["segment_id"] == ""
    assert rows[2]["event"] == "Order Completed" and rows[2]["timestamp"] == "2026-12-01T09:00:00Z"
    assert path.read_bytes().count(b"\r\n") == 4


def test_csv_with_chosen_columns_and_file_name(tmp_path: Path) -> None:
    columns = {"E-mail": "{{ profile.traits.email | hash_email }}", "orders": "{{ profile.computed.orders }}"}
    name = "{{ destination.name }}/../{{ now.strftime('%Y-%m-%d') }}"
    driver = _driver(tmp_path, columns=columns, file_name=name)
    assert driver.write([_audience(1), _audience(2)], MOMENT) == [Outcome.ok()] * 2
    [path] = _files(tmp_path)
    assert path.name == "crm drop_.._2026-12-01.csv", "no separators, the format's extension"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "idempotency_key,E-mail,orders"
    assert lines[1].startswith("d1-k,") and lines[1].endswith(",1") and len(lines[1].split(",")[1]) == 64


def test_jsonl_holds_the_body_and_the_key(tmp_path: Path) -> None:
    driver = _driver(tmp_path, format="jsonl")
    assert driver.write([_audience(1), _event(2)], MOMENT) == [Outcome.ok()] * 2
    [path] = _files(tmp_path)
    assert path.name == "opencdp-crm drop-20261201T093000Z.jsonl"
    records = [orjson.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert records == [
        {"idempotency_key": "d1-k", "action": "add", "profile_id": "p1", "email": "ada@example.com"},
        {"idempotency_key": "e2-k", "event": "Order Completed"},
    ]
    assert path.read_text().startswith('{"idempotency_key":"d1-k"')


def test_jsonl_with_columns_keeps_value_types(tmp_path: Path) -> None:
    columns = {
        "orders": "{{ profile.computed.orders }}",
        "segment": "{{ segment }}",
        "note": "n={{ action }}",
    }
    _driver(tmp_path, format="jsonl", columns=columns).write([_audience(5)], MOMENT)
    [path] = _files(tmp_path)
    assert orjson.loads(path.read_bytes()) == {
        "idempotency_key": "d5-k",
        "orders": 5,
        "segment": {"id": 7, "name": "VIP"},
        "note": "n=add",
    }


def test_a_second_batch_in_the_same_second_gets_its_own_file(tmp_path: Path) -> None:
    driver = _driver(tmp_path)
    driver.write([_audience(1)], MOMENT)
    driver.write([_audience(2)], MOMENT)
    driver.write([_audience(3)], MOMENT)
    names = [p.name for p in _files(tmp_path)]
    assert names == [
        "opencdp-crm drop-20261201T093000Z-2.csv",
        "opencdp-crm drop-20261201T093000Z-3.csv",
        "opencdp-crm drop-20261201T093000Z.csv",
    ]
    assert "d1-k" in (tmp_path / names[2]).read_text()


def test_the_file_appears_complete_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen_while_writing: list[list[str]] = []
    real_fsync = os.fsync

    def watching_fsync(fd: int) -> None:
        seen_while_writing.append(sorted(p.name for p in tmp_path.iterdir()))
        real_fsync(fd)

    monkeypatch.setattr(files_module.os, "fsync", watching_fsync)
    messages = [_audience(n) for n in range(2000)]
    assert _driver(tmp_path).write(messages, MOMENT) == [Outcome.ok()] * 2000
    # while the data was being flushed, only the temporary dot-file existed
    [during, *_] = seen_while_writing
    assert len(during) == 1 and during[0].startswith(".") and during[0].endswith(".tmp")
    # afterwards: the final file alone, whole
    [path] = _files(tmp_path)
    assert not path.name.startswith(".")
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2001


def test_a_failed_write_leaves_nothing_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files_module.os, "fsync", disk_full)
    outcomes = _driver(tmp_path).write([_audience(1), _audience(2)], MOMENT)
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert outcomes[0].error is not None and "No space left on device" in outcomes[0].error
    assert _files(tmp_path) == [], "no partial file, no temporary file"


def test_an_unusable_folder_retries_every_message(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    outcomes = _send(_driver(tmp_path / "plain-file" / "drop"), [_audience(1), _audience(2)])
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert outcomes[0].error is not None and "cannot write a file in" in outcomes[0].error


def test_without_hard_links_a_checked_rename_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: Any, target: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(files_module.os, "link", no_links)
    driver = _driver(tmp_path)
    assert driver.write([_audience(1)], MOMENT) == [Outcome.ok()]
    assert driver.write([_audience(2)], MOMENT) == [Outcome.ok()]
    names = [p.name for p in _files(tmp_path)]
    assert names == ["opencdp-crm drop-20261201T093000Z-2.csv", "opencdp-crm drop-20261201T093000Z.csv"]
    assert "d1-k" in (tmp_path / names[1]).read_text(), "the first file was not replaced"


def test_a_row_whose_template_fails_fails_alone(tmp_path: Path) -> None:
    driver = _driver(tmp_path, columns={"ratio": "{{ 10 // profile.computed.orders }}"})
    outcomes = driver.write([_audience(1), _audience(0), _audience(2)], MOMENT)
    assert [o.status for o in outcomes] == ["delivered", "failed", "delivered"]
    assert outcomes[1].error is not None and outcomes[1].error.startswith("template error")
    [path] = _files(tmp_path)
    assert path.read_text().splitlines()[1:] == ["d1-k,10", "d2-k,5"]


def test_an_empty_batch_writes_no_file(tmp_path: Path) -> None:
    assert _send(_driver(tmp_path), []) == []
    assert _files(tmp_path) == []


def test_schedule_and_batch_size() -> None:
    driver = _driver("/srv/drop")
    assert driver.every_seconds() == 86400
    assert driver.batch_size() == 50_000
    assert _driver("/srv/drop", every_seconds=3600, batch_size=1000).every_seconds() == 3600


def test_safe_file_names() -> None:
    now = Now(MOMENT)
    assert safe_file_name("../../etc/passwd", "csv", now) == "_.._etc_passwd.csv"
    assert safe_file_name(".hidden", "jsonl", now) == "hidden.jsonl"
    assert safe_file_name("  ", "csv", now) == "opencdp-20261201T093000Z.csv"
    assert safe_file_name("a\nb\\c:d.CSV", "csv", now) == "a_b_c_d.CSV"
    assert len(safe_file_name("x" * 500, "csv", now)) == 204


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "folder"),
        ({"folder": "drop/here"}, "folder"),
        ({"folder": "/srv/drop", "format": "xlsx"}, "format"),
        ({"folder": "/srv/drop", "file_name": "{{ now"}, "file_name"),
        ({"folder": "/srv/drop", "columns": {"email": "{{ profile.traits.email"}}, "columns.email"),
        ({"folder": "/srv/drop", "columns": {"idempotency_key": "{{ x }}"}}, "columns.idempotency_key"),
        ({"folder": "/srv/drop", "columns": {}}, "columns"),
        ({"folder": "/srv/drop", "columns": ["email"]}, "columns"),
        ({"folder": "/srv/drop", "every_seconds": 0}, "every_seconds"),
        ({"folder": "/srv/drop", "batch_size": 0}, "batch_size"),
        ({"folder": "/srv/drop", "path": "/x"}, "path"),
    ],
)
def test_config_errors_name_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(DestinationConfigError) as caught:
        FileDriver.validate(config)
    assert caught.value.field == field


def test_validate_fills_in_defaults() -> None:
    config = FileDriver.validate({"folder": "/srv/drop/"})
    assert config["folder"] == "/srv/drop"
    assert config["format"] == "csv" and config["columns"] == files_module.DEFAULT_COLUMNS
    assert FileDriver.validate({"folder": "/srv/drop", "format": "jsonl"})["columns"] is None
    assert FileDriver.validate(config) == config
