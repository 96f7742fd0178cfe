"""Structured logging: key=value lines on a terminal, one JSON object per line in production.

Logs never carry secrets or personal data: tracebacks show code and the exception, never the
values of local variables (which hold CSRF tokens, passwords, e-mail addresses), and SQL errors
show the statement without its parameters (`store/dialect.py`).
"""

from __future__ import annotations

import logging
import sys

import structlog


def processors(fmt: str = "console", colors: bool = False) -> list[structlog.typing.Processor]:
    """The processing chain for `console` or `json` output."""
    chain: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        # A plain traceback string (traceback.format_exception): no locals.
        return [*chain, structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    traceback = structlog.dev.RichTracebackFormatter(
        show_locals=False, color_system="truecolor" if colors else None
    )
    return [*chain, structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=traceback)]


def configure(level: str = "INFO", fmt: str = "console") -> None:
    structlog.configure(
        processors=processors(fmt, colors=sys.stderr.isatty()),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping().get(level, 20)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
