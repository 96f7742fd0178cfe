"""What every command needs: settings, the database, readable errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from opencdp.config import ConfigError, Settings


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _engine() -> Any:
    from opencdp.store.database import open_database

    return open_database(_settings())


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one readable line instead of a traceback."""
    from opencdp.access.keys import AccessError
    from opencdp.activation.destinations import DestinationError
    from opencdp.journeys.store import JourneyError
    from opencdp.privacy.consent import ConsentError
    from opencdp.segments.language import CriteriaError
    from opencdp.segments.store import SegmentError
    from opencdp.traits.store import TraitDefinitionError

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CriteriaError as exc:
            lines = [f"  {p['path'] or '(root)'}: {p['problem']}" for p in exc.problems]
            raise click.ClickException("invalid criteria:\n" + "\n".join(lines)) from None
        except (AccessError, ConsentError, SegmentError, TraitDefinitionError) as exc:
            raise click.ClickException(str(exc)) from None
        except (DestinationError, JourneyError) as exc:
            raise click.ClickException(f"{exc.field}: {exc.message}") from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper
