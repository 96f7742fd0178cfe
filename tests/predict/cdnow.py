"""The CDNOW sample (2,357 customers, 1997-01-01 … 1998-06-30) that Fader, Hardie & Lee fitted the
BG/NBD and Gamma-Gamma models on, as a CSV of transactions `opencdp import` reads.

The data ships inside the `lifetimes` wheel on PyPI; it is downloaded once (with pip, no
dependencies) into a cache directory and never committed.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

WHEEL = "lifetimes==0.11.3"
MEMBER = "lifetimes/datasets/CDNOW_sample.txt"

#: How `opencdp import` reads the CSV that `write_csv` writes.
MAPPING_TOML = """
kind = "transactions"
key = "line"
timestamp = "date"

[columns.line]
type = "integer"
property = false
[columns.customer]
identifier = "user_id"
[columns.date]
type = "date"
format = "%Y%m%d"
[columns.cds]
type = "integer"
property = "quantity"
[columns.amount]
type = "number"
property = "revenue"
"""


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "opencdp-tests"


def sample_text() -> str:
    """CDNOW_sample.txt: customer id (master), customer id (sample), YYYYMMDD, CDs, dollars.
    Skips the test (with the reason) when the wheel cannot be downloaded."""
    directory = cache_dir()
    wheels = sorted(directory.glob("[Ll]ifetimes-0.11.3-*.whl"))
    if not wheels:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory) as download:  # parallel workers: rename wins
            command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", download]
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
            got = sorted(Path(download).glob("*.whl"))
            if done.returncode != 0 or not got:
                pytest.skip(f"could not download {WHEEL} for the CDNOW data: {done.stderr.strip()[-300:]}")
            os.replace(got[0], directory / got[0].name)
        wheels = sorted(directory.glob("[Ll]ifetimes-0.11.3-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        return wheel.read(MEMBER).decode("ascii")


def write_csv(path: Path) -> int:
    """The sample as a CSV of transactions in date order (imports fastest); returns the rows."""
    rows = [line.split() for line in sample_text().splitlines() if line.strip()]
    rows.sort(key=lambda row: (row[2], row[1]))
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["line", "customer", "date", "cds", "amount"])
        for number, (_master, customer, day, cds, amount) in enumerate(rows, 1):
            out.writerow([number, customer, day, cds, amount])
    return len(rows)
