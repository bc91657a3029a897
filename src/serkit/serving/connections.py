"""How `serkit serve` handles connections: uvicorn's h11 protocol with two timers added.

uvicorn 0.54's h11 protocol lacks two things a public upload service needs:

* **A deadline for the request head.** It arms no timer before a connection's first request,
  and any byte cancels its keep-alive timer, so a client that connects and sends nothing (or a
  header a byte a minute) would hold its socket forever. Here a complete request head must
  arrive within ``header_timeout_s`` of connecting or of the previous response.
* **A lingering close.** When the app answers before reading the body (413 from
  Content-Length, 408, 503) uvicorn closes the socket at once; request bytes still arriving
  then make the kernel send a reset, which can discard the answer before the client reads it
  (the client sees "connection reset" instead of 413). Here the server stops writing (FIN
  after the answer), discards what still arrives for at most ``linger_s``, then closes: the
  "lingering close" of HTTP/1.1 servers (RFC 9112, section 9.6; nginx's ``lingering_close``).

uvicorn and h11 are imported inside the functions, so importing serkit never needs them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["server_options"]

logger = logging.getLogger("serkit.serving")


class _LingeringTransport:
    """The connection's transport as uvicorn sees it; `close` lingers while a body is unread."""

    def __init__(self, transport: Any, protocol: Any) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        if not self._protocol.begin_lingering():
            self._transport.close()

    def is_closing(self) -> bool:
        # Lingering counts as closing, so uvicorn arms no keep-alive timer and reads no request.
        return self._protocol.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _protocol_class(header_timeout_s: float, linger_s: float) -> type:
    """uvicorn's h11 protocol with a request-head deadline and a lingering close."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class SerkitH11(H11Protocol):
        lingering = False
        _head_timer: asyncio.TimerHandle | None = None
        _linger_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(_LingeringTransport(transport, self))
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            if self.lingering:
                return  # the rest of a body nobody will read: discarded
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is complete
                self._disarm_head_timer()

        def eof_received(self) -> bool | None:
            if self.lingering:
                self._close_now()  # the client has sent everything
                return None
            return super().eof_received()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()  # for the next request's head

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_timer()
            if self._linger_timer is not None:
                self._linger_timer.cancel()
            super().connection_lost(exc)

        def begin_lingering(self) -> bool:
            """Stop writing but keep reading if the request body is still arriving.

            Returns:
                Whether the connection now lingers (False: close it as usual).
            """
            raw = self.transport._transport
            if self.lingering or raw.is_closing() or self.conn.their_state is not h11.SEND_BODY:
                return self.lingering
            if not raw.can_write_eof():
                return False
            self.lingering = True
            self._disarm_head_timer()
            raw.write_eof()  # sent once the answer has been flushed
            if not raw.is_reading():
                raw.resume_reading()
            self._linger_timer = self.loop.call_later(linger_s, self._close_now)
            return True

        def _close_now(self) -> None:
            self._linger_timer = None
            self.transport._transport.close()

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                where = "%s:%d" % self.client if self.client else "a client"
                logger.info(
                    "closed the connection of %s: no complete request head within %g s", where, header_timeout_s
                )
                self.transport.close()

    return SerkitH11


def _check_seconds(**seconds: float) -> None:
    for name, value in seconds.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")


def server_options(
    *, keep_alive_s: float = 5.0, header_timeout_s: float = 10.0, linger_s: float = 2.0
) -> dict[str, Any]:
    """`uvicorn.Config` keyword arguments for serkit's connection timeouts.

    Args:
        keep_alive_s: Close a connection idle this long after a response (uvicorn's
            ``timeout_keep_alive``).
        header_timeout_s: Close a connection whose request head has not fully arrived this
            long after it connected or after the previous response.
        linger_s: After an answer sent before the request body was read, keep discarding the
            body for at most this long before closing, so the client reads the answer
            instead of a reset.

    Returns:
        ``http`` (the protocol class) and ``timeout_keep_alive``.

    Raises:
        ValueError: A duration that is not a positive number.
    """
    _check_seconds(keep_alive_s=keep_alive_s, header_timeout_s=header_timeout_s, linger_s=linger_s)
    return {"http": _protocol_class(header_timeout_s, linger_s), "timeout_keep_alive": keep_alive_s}
