"""A minimal HTTP/1.1 GET over asyncio streams, for the players' web interfaces.

One request per connection (``Connection: close``): VLC's interface answers a fresh
connection in ~21 ms but a kept-alive one in ~64 ms. Only what VLC and MPC send is handled:
``Content-Length``, chunked, or read-to-close bodies; basic authentication.

Invariants: never blocks the event loop; every failure is :class:`OSError` or
:class:`asyncio.TimeoutError`, which the session treats as "player gone"; one after the
connection was made is :class:`NotHttpAnswer` or :class:`HttpError`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket

MAX_BODY = 4 << 20  # a status page is a few KiB


class NotHttpAnswer(OSError):
    """Something accepted the connection but did not answer as a web server does: it reset
    or closed the connection, or sent something that is not HTTP."""


class HttpError(OSError):
    """The server answered, but not with 200."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def http_get(host: str, port: int, target: str, *, authorization: str | None = None,
                   timeout: float = 1.0) -> bytes:
    """GET ``target`` from ``host:port``; returns the body of a 200 answer."""
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
    # coincides with its timeout, and the run would never stop.
    async with asyncio.timeout(timeout):
        return await _get(host, port, target, authorization)


async def _get(host: str, port: int, target: str, authorization: str | None) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        return await _exchange(reader, writer, host, port, target, authorization)
    except ValueError as exc:  # a bad length, a chunk size, a line over the 64 KiB limit
        raise NotHttpAnswer(f"malformed HTTP answer: {exc}") from None
    except (HttpError, TimeoutError):
        raise
    except (OSError, EOFError) as exc:  # reset, closed, not HTTP: after the connection
        if isinstance(exc, OSError) and exc.strerror:
            raise NotHttpAnswer(exc.errno, exc.strerror) from None
        raise NotHttpAnswer(str(exc) or "connection closed") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                    port: int, target: str, authorization: str | None) -> bytes:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
            "User-Agent: ratedial"]
    if authorization:
        head.append(f"Authorization: {authorization}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    status_line = await reader.readline()
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP answer: {status_line[:40]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _chunked(reader)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if not 0 <= length <= MAX_BODY:
            raise ValueError(f"Content-Length {length}")
        body = await reader.readexactly(length)
    else:
        body = await reader.read(MAX_BODY)
    if status != 200:
        raise HttpError(status, parts[2].strip() if len(parts) > 2 else "")
    return body


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size_line = await reader.readline()
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if not 0 <= size <= MAX_BODY - len(out):
            raise ValueError(f"chunk size {size}")
        if size == 0:
            await reader.readline()
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readline()
