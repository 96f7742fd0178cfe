"""`opencdp users …`: dashboard accounts (sign-in at `/` of `opencdp serve`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import sqlalchemy as sa

from opencdp.ui import users


def _engine() -> sa.Engine:
    from opencdp.cli.common import _engine as open_engine  # late: `opencdp.cli` imports this module

    engine: sa.Engine = open_engine()
    return engine


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _password(from_stdin: bool) -> str:
    """From standard input (one line, for scripts) or typed twice without echo."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise click.ClickException("no password on standard input")
        return line
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group("users")
def users_group() -> None:
    """Dashboard users and their roles: admin, marketer (may change segments and reports) and
    analyst (read-only)."""


@users_group.command("create")
@click.option("--email", required=True, help="Sign-in e-mail address")
@click.option("--role", type=click.Choice(users.ROLES), required=True, help="What the user may do")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
@_friendly
def create(email: str, role: str, password_stdin: bool) -> None:
    """Create a user (asks for the password twice unless --password-stdin)."""
    password = _password(password_stdin)
    user = users.create_user(_engine(), email, password, role)
    click.echo(f"user {user.email} created with role {user.role} (id {user.id})")


@users_group.command("list")
def list_users() -> None:
    """List users (never their password hashes)."""
    for user in users.list_users(_engine()):
        state = "disabled" if user.disabled else "enabled"
        click.echo(f"{user.id}\t{user.email}\t{user.role}\t{state}\t{user.created_at.isoformat()}")


@users_group.command("disable")
@click.argument("email")
@_friendly
def disable(email: str) -> None:
    """Disable a user: they cannot sign in and their open sessions end at once."""
    users.set_disabled(_engine(), email, True)
    click.echo(f"user {email} disabled")


@users_group.command("enable")
@click.argument("email")
@_friendly
def enable(email: str) -> None:
    """Enable a disabled user again."""
    users.set_disabled(_engine(), email, False)
    click.echo(f"user {email} enabled")


@users_group.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
@_friendly
def set_password(email: str, password_stdin: bool) -> None:
    """Set a new password (ends the user's open sessions)."""
    users.set_password(_engine(), email, _password(password_stdin))
    click.echo(f"password of {email} changed")


@users_group.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(users.ROLES))
@_friendly
def set_role(email: str, role: str) -> None:
    """Change a user's role (applies to their next request)."""
    users.set_role(_engine(), email, role)
    click.echo(f"{email} is now {role}")
