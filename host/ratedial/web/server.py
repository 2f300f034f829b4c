"""A tiny read-only HTTP server for the live view (standard library asyncio, Server-Sent Events).

Routes: ``GET /`` the page (a package resource, inline JS and CSS, no external assets),
``GET /events`` an event stream (``snapshot`` once, then ``tick`` every :data:`TICK_S`),
``GET /state`` the snapshot as JSON. Anything else is 404, any other method 405 (also
``HEAD /events``); a request with two ``Host`` headers 400.

Invariants:

* Read-only: no route changes the daemon.
* Bounded: every client has a queue of at most :data:`CLIENT_QUEUE` ticks; a client that falls
  that far behind is disconnected (its browser reconnects and starts from a snapshot), so a
  stalled page never grows the daemon's memory. At most :data:`MAX_CLIENTS` streams.
* One tick message is built per interval and shared by every client; nothing is built when
  nobody watches beyond the sink's own bounded rings.
* Bound to this machine only (a loopback address or ``localhost``), it answers only requests
  whose ``Host`` names this machine: a web page elsewhere cannot read the view through DNS
  rebinding (its name made to resolve to 127.0.0.1).
* Bound to ``::`` (every interface), it serves IPv4 clients too: asyncio sets IPV6_V6ONLY
  on the sockets it makes, so ``::`` alone was IPv6 only and the URL printed with this
  machine's name (an IPv4 address, in most labs) did not open.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
from importlib import resources
from typing import Any

from ..errors import UsageError
from .sink import WebSink

log = logging.getLogger("ratedial.web")

TICK_S = 0.05  # 20 updates a second
CLIENT_QUEUE = 40  # 2 s of ticks
MAX_CLIENTS = 32
MAX_CONNECTIONS = 128  # open at once, streams included: a flood of idle connections beyond
# it is closed at once instead of using up the daemon's file descriptors (and its ports')
REQUEST_TIMEOUT_S = 5.0

_SECURITY_HEADERS = (
    "Cache-Control: no-store\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n"
)


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``HOST`` (an IPv6 address too) or ``PORT`` -> (host,
    port); 127.0.0.1 (also for a blank host, ``:8000``) and port 0 (a free one) by default.
    An empty address is refused: written to mean "off", it started a view."""
    if not addr.strip():
        raise UsageError(f"--web {addr!r}: an empty address is not 'off': leave --web out "
                         "(or give --no-web) for no live view, or give HOST:PORT, HOST or PORT")
    addr = addr.strip()
    host, port = "127.0.0.1", "0"
    if addr.startswith("["):
        end = addr.find("]")
        if end <= 1:  # no "]", or "[]": an empty host bound every interface
            raise UsageError(f"--web {addr}: expected [IPV6]:PORT")
        host, rest = addr[1:end], addr[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"--web {addr}: expected [IPV6]:PORT")
            port = rest[1:]
    elif addr.isdigit():
        port = addr
    elif addr.count(":") > 1 and _is_ipv6(addr):  # a bare IPv6 address: no port in it
        host = addr
    elif ":" in addr:
        host, _, port = addr.rpartition(":")
        host = host.strip() or "127.0.0.1"
    else:
        host = addr
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--web {addr}: the port must be a number 0-65535")
    return host, int(port)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def every_interface(host: str) -> bool:
    """``0.0.0.0``, ``::`` (however written: ``0::0``)."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    name = host.lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hosts_of(head: bytes) -> list[str]:
    """The host names of a request's ``Host`` headers (no port, no brackets, lower case),
    in order; more than one is a bad request (RFC 9112 3.2)."""
    hosts = []
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"host":
            text = value.strip().decode("latin-1").lower()
            if text.startswith("["):
                hosts.append(text[1:text.find("]")] if "]" in text else "")
            else:
                hosts.append(text.rsplit(":", 1)[0] if text.count(":") == 1 else text)
    return hosts


def page_html() -> bytes:
    return resources.files(__package__).joinpath("static/index.html").read_bytes()


class WebServer:
    """Serves one :class:`WebSink` to browsers. ``await start()``, then ``await run(stop)``."""

    def __init__(self, sink: WebSink, addr: str = "127.0.0.1:0", *,
                 tick_s: float = TICK_S) -> None:
        self.sink = sink
        self.host, self.port = parse_addr(addr)
        self._local_only = True  # then Host must name this machine: start() says, by address
        self.tick_s = tick_s
        self._servers: list[asyncio.Server] = []
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._page = page_html()
        self._open = 0  # connections being served
        self.sent = 0

    @property
    def url(self) -> str:
        """Where a browser finds the view: bound to every interface, this machine's name
        (http://0.0.0.0:PORT/ opens nothing on the lab's other computers)."""
        host = socket.gethostname() if every_interface(self.host) else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    async def start(self) -> str:
        """Bind (so the URL with the real port can be printed) and return the URL."""
        try:
            if every_interface(self.host) and _is_ipv6(self.host):
                self._servers = await self._listen_both()
            else:
                self._servers = [await asyncio.start_server(self._connection, self.host,
                                                            self.port)]
        except OSError as exc:
            raise UsageError(f"--web: cannot listen on {self.host}:{self.port}: "
                             f"{exc.strerror}") from None
        sockets = [sock for server in self._servers for sock in server.sockets]
        self.port = sockets[0].getsockname()[1]
        # by the addresses bound, not the name given: a name for 127.0.0.1 (an /etc/hosts
        # alias) is as local as the address itself
        self._local_only = all(is_loopback(str(sock.getsockname()[0])) for sock in sockets)
        return self.url

    async def _listen_both(self) -> list[asyncio.Server]:
        """``::``, IPv6 and IPv4 alike: one dual-stack socket (IPV6_V6ONLY off, as Linux,
        Windows and macOS allow), else one socket of each family on the same port."""
        if socket.has_dualstack_ipv6():
            sock = socket.create_server((self.host, self.port), family=socket.AF_INET6,
                                        backlog=100, dualstack_ipv6=True)
            try:
                return [await asyncio.start_server(self._connection, sock=sock)]
            except BaseException:
                sock.close()
                raise
        v6 = await asyncio.start_server(self._connection, self.host, self.port,
                                        family=socket.AF_INET6)
        try:
            port = v6.sockets[0].getsockname()[1]
            return [v6, await asyncio.start_server(self._connection, "0.0.0.0", port)]
        except BaseException:
            v6.close()
            raise

    async def run(self, stop: asyncio.Event) -> None:
        """Send ticks until ``stop`` is set, then close every stream and the socket."""
        if not self._servers:
            await self.start()
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        try:
            while not stop.is_set():
                self._broadcast(_sse("tick", self.sink.tick()))
                next_t += self.tick_s
                delay = next_t - loop.time()
                if delay < 0:  # fell behind (a busy loop): do not try to catch up
                    next_t, delay = loop.time(), 0.0
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            for q in list(self._clients):
                _offer(q, None)
            for server in self._servers:
                server.close()
            for server in self._servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 2.0)

    def _broadcast(self, msg: bytes) -> None:
        for q in list(self._clients):
            if not _offer(q, msg):
                self._clients.discard(q)  # too slow: drop it, the browser will reconnect
                _offer(q, None)

    # --- HTTP -----------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.transport.abort()  # no answer: a reply would hold the descriptor longer
            return
        self._open += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            hosts = hosts_of(head)
            host = hosts[0] if len(hosts) == 1 else None
            if len(hosts) > 1:  # which one is meant? (a proxy and the server may differ)
                await _respond(writer, "400 Bad Request", "text/plain",
                               b"more than one Host header\n")
            elif self._local_only and not (host is not None and (
                    is_loopback(host) or host == self.host.lower())):
                await _respond(writer, "403 Forbidden", "text/plain",
                               b"this view answers requests for this machine only\n")
            elif method not in ("GET", "HEAD"):
                await _respond(writer, "405 Method Not Allowed", "text/plain", b"read-only\n",
                               extra="Allow: GET, HEAD\r\n")
            elif path == "/":
                await _respond(writer, "200 OK", "text/html; charset=utf-8", self._page,
                               head=method == "HEAD")
            elif path == "/state":
                body = json.dumps(self.sink.snapshot(), separators=(",", ":")).encode()
                await _respond(writer, "200 OK", "application/json", body,
                               head=method == "HEAD")
            elif path == "/events" and method == "GET":
                await self._events(writer)
            elif path == "/events":  # HEAD: a stream has no head to give
                await _respond(writer, "405 Method Not Allowed", "text/plain",
                               b"GET only\n", extra="Allow: GET\r\n")
            else:
                await _respond(writer, "404 Not Found", "text/plain", b"not found\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError, UnicodeDecodeError, ValueError):
            pass  # a client that went away or sent nonsense: nothing to tell anyone
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= MAX_CLIENTS:
            await _respond(writer, "503 Service Unavailable", "text/plain", b"too many views\n")
            return
        writer.write(("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Connection: keep-alive\r\n" + _SECURITY_HEADERS + "\r\n"
                      "retry: 1000\n\n").encode())
        writer.write(_sse("snapshot", self.sink.snapshot()))
        q: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(q)
        try:
            while True:
                await writer.drain()
                msg = await q.get()
                if msg is None:
                    return
                writer.write(msg)
                self.sent += 1
        finally:
            self._clients.discard(q)


def _offer(q: asyncio.Queue[bytes | None], msg: bytes | None) -> bool:
    try:
        q.put_nowait(msg)
    except asyncio.QueueFull:
        if msg is None:  # make room for the end marker
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()
            q.put_nowait(None)
        return False
    return True


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _respond(writer: asyncio.StreamWriter, status: str, ctype: str, body: bytes, *,
                   head: bool = False, extra: str = "") -> None:
    writer.write((f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                  + _SECURITY_HEADERS + extra + "\r\n").encode())
    if not head:
        writer.write(body)
    await writer.drain()
