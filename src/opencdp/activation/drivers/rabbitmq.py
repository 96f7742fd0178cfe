"""RabbitMQ (AMQP 0-9-1): each delivery is published to an exchange with publisher confirms.

A delivery counts as delivered only once the broker has confirmed it (it is in every queue it was
routed to, on disk for a persistent message in a durable queue). Messages are `mandatory`, so one
that no queue takes comes back and fails instead of vanishing. The idempotency key is the AMQP
`message_id` (and the `x-idempotency-key` header): RabbitMQ does not de-duplicate, but a consumer
that remembers the ids it has processed does not act twice on a retry.

A batch is published in order on one channel without waiting for each confirm in turn.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
from yarl import URL

from opencdp import logs
from opencdp.activation.drivers import common
from opencdp.activation.drivers.base import DestinationConfigError, Driver, Message, Outcome
from opencdp.activation.templates import TemplateProblem, render_text

log = logs.get(__name__)

DEFAULTS: dict[str, Any] = {
    "url": "amqp://guest@127.0.0.1:5672/",
    "exchange": "",
    "body": None,
    "declare_queue": None,
    "bind_key": None,
    "persistent": True,
    "mandatory": True,
    "timeout_seconds": 10.0,
}
MAX_ROUTING_KEY_BYTES = 255  # an AMQP short string


@dataclass
class RabbitMQDriver(Driver):
    """Publishes to a RabbitMQ exchange; `secret` is the password of the URL's user."""

    kind: ClassVar[str] = "rabbitmq"

    _connection: aio_pika.abc.AbstractConnection | None = field(default=None, init=False, repr=False)
    _channel: aio_pika.abc.AbstractChannel | None = field(default=None, init=False, repr=False)
    _exchange: aio_pika.abc.AbstractExchange | None = field(default=None, init=False, repr=False)

    @classmethod
    def validate(cls, config: dict[str, Any]) -> dict[str, Any]:
        out = common.settings(config, DEFAULTS, required=("routing_key",))
        try:
            url = URL(out["url"]) if isinstance(out["url"], str) else None
        except ValueError:
            url = None
        if url is None or url.scheme not in ("amqp", "amqps") or not url.host:
            raise DestinationConfigError("url", "must be an amqp://user@host:port/vhost URL")
        if url.password is not None:
            raise DestinationConfigError("url", "no password in the URL: it is the destination's secret")
        if not isinstance(out["exchange"], str):
            raise DestinationConfigError("exchange", "must be an exchange name ('' is the default exchange)")
        routing_key = common.text_template(out, "routing_key")
        if "{" not in routing_key and len(routing_key.encode()) > MAX_ROUTING_KEY_BYTES:
            raise DestinationConfigError("routing_key", f"at most {MAX_ROUTING_KEY_BYTES} bytes")
        out["body"] = common.body_template(out)
        queue = common.optional_text(out, "declare_queue")
        if out["bind_key"] is not None:
            if queue is None or not out["exchange"]:
                raise DestinationConfigError("bind_key", "only used with declare_queue and a named exchange")
            common.optional_text(out, "bind_key")
        elif queue is not None and out["exchange"]:
            if "{" in routing_key:
                raise DestinationConfigError(
                    "bind_key", "give the key that binds the queue (the routing key is a template)"
                )
            out["bind_key"] = routing_key
        common.flag(out, "persistent")
        common.flag(out, "mandatory")
        out["timeout_seconds"] = common.timeout(out)
        return out

    def batch_size(self) -> int:
        return 500

    @property
    def _timeout(self) -> float:
        return float(self.config["timeout_seconds"])

    async def send(self, messages: list[Message]) -> list[Outcome]:
        try:
            exchange = await self._open()
        except aio_pika.exceptions.ChannelNotFoundEntity:
            name = self.config["exchange"]
            return [Outcome.fail(f"exchange {name!r} does not exist: declare it") for _ in messages]
        except Exception as exc:
            connected = self._connection is not None and not self._connection.is_closed
            step = "open a channel (or declare) on" if connected else "connect to"
            error = f"cannot {step} RabbitMQ at {self.config['url']}: {self._describe(exc)}"
            return [Outcome.again(error) for _ in messages]
        prepared = [self._prepare(message) for message in messages]
        # The publishes start in order and take the channel's (first come, first served) lock in
        # turn to write their frames, so the broker sees the batch in order; the confirms are
        # awaited together.
        published = iter(
            await asyncio.gather(*(self._publish(exchange, *p) for p in prepared if isinstance(p, tuple)))
        )
        return [p if isinstance(p, Outcome) else next(published) for p in prepared]

    def _prepare(self, message: Message) -> tuple[aio_pika.Message, str] | Outcome:
        try:
            routing_key = render_text(self.config["routing_key"], message.context)
            body = common.payload(self.config, message)
        except TemplateProblem as exc:
            return Outcome.fail(str(exc))
        if len(routing_key.encode()) > MAX_ROUTING_KEY_BYTES:
            return Outcome.fail(f"the routing key has more than {MAX_ROUTING_KEY_BYTES} bytes")
        mode = (
            aio_pika.DeliveryMode.PERSISTENT
            if self.config["persistent"]
            else aio_pika.DeliveryMode.NOT_PERSISTENT
        )
        amqp = aio_pika.Message(
            body,
            content_type="application/json",
            message_id=message.key,
            headers={"x-idempotency-key": message.key},
            delivery_mode=mode,
            app_id="opencdp",
        )
        return amqp, routing_key

    async def _publish(
        self, exchange: aio_pika.abc.AbstractExchange, message: aio_pika.Message, routing_key: str
    ) -> Outcome:
        try:
            await exchange.publish(
                message, routing_key, mandatory=self.config["mandatory"], timeout=self._timeout
            )
        except aio_pika.exceptions.PublishError:
            where = f"exchange {exchange.name!r}" if exchange.name else "the default exchange"
            return Outcome.fail(f"unroutable: no queue is bound to {where} for routing key {routing_key!r}")
        except aio_pika.exceptions.DeliveryError:
            return Outcome.again("the broker refused the message (nack), e.g. a full queue")
        except Exception as exc:
            return Outcome.again(f"publishing to RabbitMQ failed: {self._describe(exc)}")
        return Outcome.ok()

    async def _open(self) -> aio_pika.abc.AbstractExchange:
        """The driver's one connection and channel, (re)opened when the broker or the network has
        closed them; the exchange is checked to exist each time the channel is opened."""
        if self._connection is None or self._connection.is_closed:
            self._connection, self._channel, self._exchange = await self._connect(), None, None
        if self._channel is None or self._channel.is_closed or self._exchange is None:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            try:
                self._exchange = await self._declare(channel)
            except BaseException:
                if not channel.is_closed:
                    await channel.close()
                raise
            self._channel = channel
        return self._exchange

    async def _declare(self, channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractExchange:
        name = self.config["exchange"]
        exchange = channel.default_exchange
        if name:
            exchange = await asyncio.wait_for(channel.get_exchange(name, ensure=True), self._timeout)
        if self.config["declare_queue"]:
            queue = await channel.declare_queue(
                self.config["declare_queue"], durable=True, timeout=self._timeout
            )
            if name:
                await queue.bind(exchange, self.config["bind_key"], timeout=self._timeout)
        return exchange

    async def _connect(self) -> aio_pika.abc.AbstractConnection:
        url = URL(self.config["url"])
        if self.secret:
            url = url.with_user(url.user or "guest").with_password(self.secret)
        return await asyncio.wait_for(
            aio_pika.connect(url, timeout=self._timeout, client_properties={"connection_name": "opencdp"}),
            self._timeout,
        )

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, asyncio.TimeoutError):
            return f"timed out after {self._timeout:g} s"
        return common.describe(exc, self.secret)

    async def close(self) -> None:
        connection, self._connection, self._channel, self._exchange = self._connection, None, None, None
        if connection is not None and not connection.is_closed:
            try:
                await asyncio.wait_for(connection.close(), self._timeout)
            except Exception as exc:
                log.debug("rabbitmq close failed", error=self._describe(exc))
