r"""mpv's JSON IPC endpoint: a Unix socket on Linux and macOS, a named pipe
(``\\.\pipe\NAME``) on Windows (mpv's ``--input-ipc-server`` takes either).

Invariants:

* One endpoint name works for both sides of ratedial: the live session
  (:func:`connect_ipc`, an asyncio transport and protocol) and the review player
  (:func:`connect_sync`, a blocking channel whose every read has a timeout).
* A name that does not exist yet is an ``OSError`` (callers retry while mpv starts).
* On Windows the pipe is opened for overlapped I/O, so a pending read never blocks a write.
  The daemon's loop there waits in ``select`` (aiomqtt needs ``add_reader``, which the
  Proactor loop lacks), which cannot wait on a pipe: a thread reads it and hands the bytes
  to the protocol (:class:`_ChannelTransport`). That thread path runs on any OS with
  ``connect_ipc(..., thread=True)``, so it is tested on Linux over a Unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import select
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar


def is_named_pipe(path: str) -> bool:
    return path.replace("/", "\\").lower().startswith("\\\\.\\pipe\\")


def private_endpoint(prefix: str = "ratedial-mpv") -> tuple[str, str | None]:
    """A fresh endpoint for an mpv we start: (path, directory to remove afterwards)."""
    if sys.platform == "win32":
        return f"\\\\.\\pipe\\{prefix}-{secrets.token_hex(8)}", None
    tmpdir = tempfile.mkdtemp(prefix=f"{prefix}-")
    return os.path.join(tmpdir, "ipc.sock"), tmpdir


def endpoint_ready(path: str) -> bool:
    """True once mpv has created the endpoint. A named pipe cannot be looked at without
    taking one of its instances, so for those the caller just tries to connect."""
    return is_named_pipe(path) or os.path.exists(path)


def remove_stale(path: str) -> None:
    """mpv leaves its Unix socket behind on exit; a named pipe vanishes by itself."""
    if not is_named_pipe(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


_P = TypeVar("_P", bound=asyncio.Protocol)


async def connect_ipc(path: str, protocol_factory: Callable[[], _P], *,
                      thread: bool | None = None) -> tuple[asyncio.Transport, _P]:
    """An asyncio transport to mpv's endpoint driving ``protocol_factory()``'s protocol;
    ``thread`` (default: for named pipes) reads it from a thread instead of the event loop.
    On the loop's own path the transport's ``socket`` extra is the connected socket."""
    if thread is None:
        thread = is_named_pipe(path)
    loop = asyncio.get_running_loop()
    if not thread:
        if sys.platform == "win32":
            raise OSError(f"{path}: on Windows mpv's IPC is a named pipe, \\\\.\\pipe\\NAME")
        transport, protocol = await loop.create_unix_connection(protocol_factory, path)
        return transport, protocol
    channel = await asyncio.to_thread(connect_sync, path)
    protocol = protocol_factory()
    ch_transport = _ChannelTransport(channel, protocol, loop)
    protocol.connection_made(ch_transport)
    ch_transport.start()
    return ch_transport, protocol


class _ChannelTransport(asyncio.Transport):
    """A blocking :class:`Channel` as an asyncio transport: a thread reads (waking every
    :data:`POLL_S` to notice :meth:`close`), the loop writes (small JSON lines)."""

    POLL_S = 0.2

    def __init__(self, channel: Channel, protocol: asyncio.Protocol,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._channel = channel
        self._protocol = protocol
        self._loop = loop
        self._closing = False
        self._lost = False
        self._thread = threading.Thread(target=self._read, name="ipc reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        error: Exception | None = None
        try:
            while not self._closing:
                try:
                    data = self._channel.recv(65536, self.POLL_S)
                except TimeoutError:
                    continue
                if not data:
                    break
                self._loop.call_soon_threadsafe(self._data, data)
        except OSError as exc:
            error = None if self._closing else exc
        finally:
            with contextlib.suppress(OSError):
                self._channel.close()
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._connection_lost, error)

    def _data(self, data: bytes) -> None:
        if not self._lost:
            self._protocol.data_received(data)

    def _connection_lost(self, error: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._closing = True
            self._protocol.connection_lost(error)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        try:
            self._channel.sendall(bytes(data))
        except OSError:
            self.close()  # the reader thread reports the loss

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:  # mpv's output is bounded by what we ask for
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._closing

    def get_write_buffer_size(self) -> int:
        return 0


class Channel(Protocol):
    """A connected, blocking byte channel."""

    def recv(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` bytes; b"" at end of stream; TimeoutError after ``timeout`` s."""
        ...

    def sendall(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class _SocketChannel:
    _sock: socket.socket

    def __init__(self, path: str) -> None:
        if sys.platform == "win32":
            raise OSError(f"{path}: on Windows mpv's IPC is a named pipe, \\\\.\\pipe\\NAME")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            raise
        self._sock = s

    def recv(self, size: int, timeout: float) -> bytes:
        # select, not settimeout: another thread may be writing on this socket meanwhile
        readable, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
        if not readable:
            raise TimeoutError
        return self._sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close(self) -> None:
        self._sock.close()


if sys.platform == "win32":
    import _winapi

    class _PipeChannel:
        """A named pipe opened for overlapped I/O (CPython's ``_winapi``, as multiprocessing's
        ``PipeConnection`` does): reads wait on their event with a timeout, then cancel."""

        def __init__(self, path: str) -> None:
            self._h = _winapi.CreateFile(
                path, _winapi.GENERIC_READ | _winapi.GENERIC_WRITE, 0, _winapi.NULL,
                _winapi.OPEN_EXISTING, _winapi.FILE_FLAG_OVERLAPPED, _winapi.NULL)

        def recv(self, size: int, timeout: float) -> bytes:
            ov, err = _winapi.ReadFile(self._h, size, overlapped=True)
            if err == _winapi.ERROR_IO_PENDING:
                waited = _winapi.WaitForMultipleObjects([ov.event], False,
                                                        max(0, int(timeout * 1000)))
                if waited != _winapi.WAIT_OBJECT_0:
                    ov.cancel()
            _, err = ov.GetOverlappedResult(True)
            if err in (0, _winapi.ERROR_MORE_DATA):
                return bytes(ov.getbuffer() or b"")
            if err == _winapi.ERROR_OPERATION_ABORTED:
                raise TimeoutError
            if err == _winapi.ERROR_BROKEN_PIPE:
                return b""
            raise OSError(err, f"reading mpv's pipe failed (Windows error {err})")

        def sendall(self, data: bytes) -> None:
            ov, _ = _winapi.WriteFile(self._h, data, overlapped=True)
            written, err = ov.GetOverlappedResult(True)
            if err or written != len(data):
                raise OSError(err, f"writing mpv's pipe failed (Windows error {err})")

        def close(self) -> None:
            _winapi.CloseHandle(self._h)

else:
    class _PipeChannel:
        def __init__(self, path: str) -> None:
            raise OSError(f"{path}: named pipes exist on Windows only")

        def recv(self, size: int, timeout: float) -> bytes:
            raise NotImplementedError

        def sendall(self, data: bytes) -> None:
            raise NotImplementedError

        def close(self) -> None:
            raise NotImplementedError


def connect_sync(path: str) -> Channel:
    """Connect to mpv's endpoint; OSError if it is not there (yet)."""
    if is_named_pipe(path):
        return _PipeChannel(path)
    return _SocketChannel(path)
