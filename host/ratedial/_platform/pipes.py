r"""mpv's JSON IPC endpoint: a Unix socket on Linux and macOS, a named pipe
(``\\.\pipe\NAME``) on Windows (mpv's ``--input-ipc-server`` takes either).

Invariants:

* One endpoint name works for both sides of ratedial: the live session
  (:func:`open_ipc`, asyncio streams) and the review player (:func:`connect_sync`, a
  blocking channel whose every read has a timeout).
* A name that does not exist yet is an ``OSError`` (callers retry while mpv starts).
* On Windows the pipe is opened for overlapped I/O, so a pending read never blocks a write;
  the asyncio side needs a loop with ``create_pipe_connection`` (the Proactor loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import tempfile
from typing import Protocol


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


async def open_ipc(path: str, *, limit: int) -> tuple[asyncio.StreamReader,
                                                     asyncio.StreamWriter]:
    if not is_named_pipe(path):
        if sys.platform == "win32":
            raise OSError(f"{path}: on Windows mpv's IPC is a named pipe, \\\\.\\pipe\\NAME")
        return await asyncio.open_unix_connection(path, limit=limit)
    loop = asyncio.get_running_loop()
    connect = getattr(loop, "create_pipe_connection", None)
    if connect is None:
        raise OSError(f"{path}: named pipes need asyncio's Proactor event loop (Windows)")
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await connect(lambda: protocol, path)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


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
        self._sock.settimeout(timeout)
        return self._sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(None)
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
