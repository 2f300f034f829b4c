"""How control commands reach a virtual dial's bridge: its Unix socket and an in-process inbox.

``ControlChannel`` turns lines from either source into ``on_line(line, reply)`` calls on
the bridge's thread; the bridge polls the fds it names. ``submit`` (any thread) puts a
line in the inbox and wakes the bridge through a pipe.

Invariants:
- Every line gets exactly one reply through its ``reply``: on the socket one line back to
  the client that sent it, in-process the result of the line's future. Lines still in the
  inbox at ``close`` get ``error virtual dial stopped``.
- A client that sends more than 4 KB without a newline is disconnected.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import socket
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

Reply = Callable[[str], None]
OnLine = Callable[[str, Reply], None]


@dataclass
class _Client:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)


class ControlChannel:
    """The control socket (optional), the inbox and the wake-up pipe."""

    def __init__(self) -> None:
        self.wake_r, self._wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._inbox: queue.SimpleQueue[tuple[str, Future[str]]] = queue.SimpleQueue()
        self._listener: socket.socket | None = None
        self._path: Path | None = None
        self._clients: dict[int, _Client] = {}

    def listen(self, path: Path) -> None:
        """Create the control socket at ``path``. Raises UsageError on failure."""
        if path.exists() and not path.is_socket():
            raise UsageError(f"--control {path}: exists and is not a socket")
        if path.exists() and _answers(path):  # a running dial's: taking it would orphan it
            raise UsageError(f"--control {path}: is the control socket of a running dial; "
                             "choose another path or stop that dial")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale one (its dial was killed)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(str(path))
        except OSError as exc:
            s.close()
            raise UsageError(f"--control {path}: {exc.strerror}") from None
        s.listen(8)
        s.setblocking(False)
        self._listener = s
        self._path = path

    def submit(self, line: str) -> Future[str]:
        """Queue a control command (thread-safe); the future gets its reply line."""
        fut: Future[str] = Future()
        self._inbox.put((line, fut))
        self.wake()
        return fut

    def wake(self) -> None:
        """Wake the bridge's poll (thread-safe)."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def close(self) -> None:
        """Close the socket and its clients, remove it; answer what is left in the inbox."""
        for c in list(self._clients.values()):
            c.sock.close()
        self._clients.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            if self._path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._path.unlink()
        for fd in (self.wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.wake_r = self._wake_w = -1
        while not self._inbox.empty():
            _line, fut = self._inbox.get_nowait()
            if not fut.done():
                fut.set_result("error virtual dial stopped")

    # ------------------------------------------------------------------ the bridge's side

    def drain_inbox(self, on_line: OnLine) -> None:
        with contextlib.suppress(OSError):
            os.read(self.wake_r, 4096)
        while not self._inbox.empty():
            line, fut = self._inbox.get_nowait()

            def reply(text: str, fut: Future[str] = fut) -> None:
                if not fut.done():
                    fut.set_result(text)

            on_line(line, reply)

    def socket_handlers(self, on_line: OnLine) -> dict[int, Callable[[int, int], None]]:
        """The socket's fds to poll now (fd -> handler(events, now)): listener, clients."""
        h: dict[int, Callable[[int, int], None]] = {}
        if self._listener is not None:
            h[self._listener.fileno()] = lambda _ev, _now: self._accept()
        for fd in self._clients:
            h[fd] = functools.partial(self._on_client, fd, on_line)
        return h

    def _on_client(self, fd: int, on_line: OnLine, _ev: int, _now: int) -> None:
        if fd in self._clients:
            self._read_client(fd, on_line)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self._clients[sock.fileno()] = _Client(sock)

    def _client_reply(self, client: _Client) -> Reply:
        def reply(text: str) -> None:
            with contextlib.suppress(OSError):
                client.sock.setblocking(True)
                client.sock.settimeout(1.0)
                client.sock.sendall(text.encode() + b"\n")
                client.sock.setblocking(False)

        return reply

    def _read_client(self, fd: int, on_line: OnLine) -> None:
        c = self._clients[fd]
        try:
            data = c.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            del self._clients[fd]
            c.sock.close()
            return
        c.buf += data
        while (i := c.buf.find(b"\n")) >= 0:
            line = c.buf[:i].decode("utf-8", "replace").strip()
            del c.buf[: i + 1]
            if line:
                on_line(line, self._client_reply(c))
        if len(c.buf) > 4096:
            del self._clients[fd]
            c.sock.close()


def _answers(path: Path) -> bool:
    """Something listens on the Unix socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
