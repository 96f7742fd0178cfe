"""`opencdp accounts …`: the client applications of the customer accounts' OpenID provider and its
signing keys (docs/identity.md). Changes are recorded in the audit log as done by "cli"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import orjson

from opencdp.cli.common import _engine, _settings

ACTOR = "cli"


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    from opencdp.accounts.clients import ClientError
    from opencdp.accounts.keys import SigningKeyError

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ClientError, SigningKeyError) as exc:
            raise click.ClickException(str(exc)) from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@click.group("accounts")
def accounts_group() -> None:
    """Customer accounts: opencdp as the brand's OpenID Connect provider (client applications,
    signing keys). The hosted pages are on when OPENCDP_ACCOUNTS_ISSUER is set."""


@accounts_group.group("clients")
def clients_group() -> None:
    """Client applications: the brand's sites and services where customers sign in."""


@clients_group.command("add")
@click.argument("name")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    required=True,
    help="Where codes are sent (matched exactly); repeat for several",
)
@click.option(
    "--post-logout-redirect-uri", "logout_uris", multiple=True, help="Where to return after sign-out"
)
@click.option(
    "--backchannel-logout-uri",
    default=None,
    help="Where a signed logout token is posted when a customer signs out (OIDC Back-Channel Logout)",
)
@click.option("--public", is_flag=True, help="A browser or mobile app: no secret, PKCE (S256) required")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(["openid", "profile", "email", "phone"]),
    help="Allowed scope; repeat [default: all four]",
)
@click.option("--client-id", default=None, help="Choose the client id [default: made up]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON")
@_errors
def add(
    name: str,
    redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...],
    backchannel_logout_uri: str | None,
    public: bool,
    scopes: tuple[str, ...],
    client_id: str | None,
    as_json: bool,
) -> None:
    """Register a client application. A confidential client's secret is printed once."""
    from opencdp.access.audit import record
    from opencdp.accounts import clients

    engine = _engine()
    client, secret = clients.add(
        engine,
        name,
        list(redirect_uris),
        public=public,
        scopes=list(scopes) or None,
        post_logout_redirect_uris=list(logout_uris),
        client_id=client_id,
        backchannel_logout_uri=backchannel_logout_uri,
    )
    record(engine, ACTOR, "accounts.client.add", "account_client", client.client_id, {"name": client.name})
    if as_json:
        click.echo(orjson.dumps({**client.describe(), "client_secret": secret}, default=str).decode())
        return
    click.echo(f"client_id:     {client.client_id}")
    if secret:
        click.echo(f"client_secret: {secret}")
        click.echo("Keep the secret now: it is not shown again.")
    else:
        click.echo("public client: no secret; it must use PKCE (S256)")


@clients_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def list_(as_json: bool) -> None:
    """List the client applications."""
    from opencdp.accounts import clients

    found = clients.list_all(_engine())
    if as_json:
        click.echo(orjson.dumps([c.describe() for c in found], default=str).decode())
        return
    if not found:
        click.echo("no client applications yet: opencdp accounts clients add NAME --redirect-uri URL")
    for c in found:
        kind = "public" if c.public else "confidential"
        scopes, uris = " ".join(c.scopes), " ".join(c.redirect_uris)
        click.echo(f"{c.client_id}  {c.name}  {kind}  scopes={scopes}  redirect={uris}")


@clients_group.command("remove")
@click.argument("client_id")
@_errors
def remove(client_id: str) -> None:
    """Remove a client application; its tokens stop working."""
    from opencdp.access.audit import record
    from opencdp.accounts import clients

    engine = _engine()
    if not clients.remove(engine, client_id):
        raise click.ClickException(f"no client {client_id!r}")
    record(engine, ACTOR, "accounts.client.remove", "account_client", client_id)
    click.echo(f"removed {client_id}")


@accounts_group.group("keys")
def keys_group() -> None:
    """Signing keys of ID tokens: the newest live key signs, every live key is in the JWKS."""


@keys_group.command("list")
def keys_list() -> None:
    """List the keys: which signs, which only verify, which are retired."""
    from opencdp.accounts.keys import list_keys

    for k in list_keys(_engine()):
        state = "signing" if k.signing else ("retired" if k.retired_at else "verifying")
        click.echo(f"{k.kid}  {k.algorithm}  {state}  created {k.created_at:%Y-%m-%d %H:%M}")


@keys_group.command("rotate")
def keys_rotate() -> None:
    """Make a new key that signs from now on; older keys still verify until retired."""
    from opencdp.access.audit import record
    from opencdp.accounts.keys import rotate

    engine = _engine()
    kid = rotate(engine, _settings())
    record(engine, ACTOR, "accounts.key.rotate", "account_key", kid)
    click.echo(f"new signing key {kid} (servers use it within seconds)")


@keys_group.command("retire")
@click.argument("kid")
@_errors
def keys_retire(kid: str) -> None:
    """Remove a key from the JWKS: tokens it signed stop verifying. Wait out the longest token
    lifetime after a rotation first."""
    from opencdp.access.audit import record
    from opencdp.accounts.keys import retire

    engine = _engine()
    retire(engine, kid)
    record(engine, ACTOR, "accounts.key.retire", "account_key", kid)
    click.echo(f"retired {kid}")


@accounts_group.command("social")
@click.option("--check", is_flag=True, help="Fetch each provider's discovery document and keys now")
def social_list(check: bool) -> None:
    """The social logins offered on the hosted pages (OPENCDP_ACCOUNTS_SOCIAL…), with the callback
    URL to register at each provider; --check fetches their discovery documents and keys."""
    import asyncio

    from opencdp.accounts.config import AccountSettings
    from opencdp.accounts.social import Discovery, SocialLoginError
    from opencdp.config import ConfigError

    try:
        settings = AccountSettings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.social:
        click.echo("no social logins (set OPENCDP_ACCOUNTS_SOCIAL)")
        return
    discovery, failed = Discovery(timeout=10), 0
    for p in settings.social:
        trust = ", ".join(
            k for k, v in (("e-mail", p.trusted_for_email), ("phone", p.trusted_for_phone)) if v
        )
        callback = f"{settings.issuer or '<OPENCDP_ACCOUNTS_ISSUER>'}/accounts/social/{p.name}/callback"
        click.echo(
            f"{p.name}  {settings.social_labels[p.name]!r}  {p.issuer}  trusted for: {trust or 'nothing'}"
        )
        click.echo(f"    callback: {callback}")
        if check:
            try:
                asyncio.run(discovery.keys(p))
                click.echo("    discovery and keys: ok")
            except SocialLoginError as exc:
                failed += 1
                click.echo(f"    discovery and keys: FAILED: {exc}")
    if failed:
        raise click.ClickException(f"{failed} provider(s) cannot be reached or are not usable")
