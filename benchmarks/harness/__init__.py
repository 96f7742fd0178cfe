"""What every benchmark script shares: real `opencdp` processes on scratch databases, load over
keep-alive HTTP, CPU accounting, percentiles and result tables.

The scripts in `benchmarks/` are run as files (`.venv/bin/python benchmarks/ingest.py`), so this
package is imported as `harness` from the script's own directory. Its modules, one concept each:

- `machine`: CPU seconds per process and for the whole machine, the CPU model, the measured revision;
- `scratch`: scratch databases (SQLite directory or PostgreSQL database), the CLI, `serve` and
  `worker` child processes, and reading the event log's size and the processor's backlog;
- `load`: keep-alive HTTP clients, load at a fixed rate or flat out, probes of accepted -> visible;
- `browser`: a browser on a raw connection (cookies, forms, redirects left to the caller);
- `mailbox`: a local SMTP server that keeps the links of the e-mails it receives;
- `signin`: customer accounts' registration and OpenID Connect sign-in, one or many at once;
- `report`: percentiles and tables for the console and for BENCHMARKS.md.
"""
