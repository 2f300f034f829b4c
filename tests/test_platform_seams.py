"""Each platform seam (ratedial._platform) with both of its sides: the Windows side wherever
it can run on Linux (the thread keyboard reader, the signal.signal path), and where it cannot
(msvcrt.locking, named pipes), the choice of side and the facts it relies on."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import serial

from ratedial._platform import default_serial_io, port_key
from ratedial._platform import lock as lockmod
from ratedial._platform.keys import read_chunks
from ratedial._platform.pipes import connect_ipc, connect_sync, is_named_pipe, private_endpoint
from ratedial._platform.signals import stop_on_signals
from ratedial.daemon.link import describe_open_error
from ratedial.players.manual import ManualSession
from ratedial.recording.writer import Recorder, try_lock

# --- keyboard -----------------------------------------------------------------------------


@pytest.mark.parametrize("thread", [False, True], ids=["add_reader", "thread"])
def test_typed_chunks_are_stamped_after_they_were_written_and_end_at_eof(thread):
    async def main() -> list[tuple[int, bytes]]:
        r, w = os.pipe()
        got: list[tuple[int, bytes]] = []
        arrived = asyncio.Event()

        def on_chunk(host_ns: int, data: bytes) -> None:
            assert threading.current_thread() is threading.main_thread()
            got.append((host_ns, data))
            arrived.set()

        task = asyncio.create_task(read_chunks(r, on_chunk, time.monotonic_ns, thread=thread))
        written = []
        for line in (b"12.5\n", b"p\n"):
            arrived.clear()
            written.append(time.monotonic_ns())
            os.write(w, line)
            await asyncio.wait_for(arrived.wait(), 10)
        os.close(w)
        await asyncio.wait_for(task, 10)  # EOF ends the reader
        os.close(r)
        return [(t - sent, data) for (t, data), sent in zip(got, written, strict=True)]

    chunks = asyncio.run(main())
    assert [d for _, d in chunks] == [b"12.5\n", b"p\n"]
    assert all(0 <= lag < 5e9 for lag, _ in chunks), chunks


def test_manual_player_marks_typed_times_through_the_thread_reader():
    class Out:
        def __init__(self) -> None:
            self.events: list[str] = []

        def event(self, kind: str, data: dict, host_ns: int) -> None:
            self.events.append(kind)

        def add_media(self, *args: object) -> int:
            return 1

        def observation(self, *args: object) -> None:
            pass

    async def main() -> tuple[list[str], float | None]:
        r, w = os.pipe()
        with os.fdopen(r, "r") as stdin, open(os.devnull, "w") as say:
            session = ManualSession(seconds=5.0, stdin=stdin, say=say, thread=True)
            out = Out()
            task = asyncio.create_task(session.run(out))
            os.write(w, b"754.2\n")
            deadline = time.monotonic() + 10
            while not out.events and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # polling a condition
            pos = session.clock.position_now(time.monotonic_ns())
            os.close(w)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return out.events, pos

    events, pos = asyncio.run(main())
    assert events == ["media_load", "media_play"]  # the video followed, then the mark
    assert pos is not None and 754.2 <= pos < 754.2 + 10


# --- signals ------------------------------------------------------------------------------


@pytest.mark.parametrize("portable", [False, True], ids=["add_signal_handler", "signal.signal"])
@pytest.mark.parametrize("sig", [s for s in (signal.SIGINT, signal.SIGTERM,
                                              getattr(signal, "SIGHUP", None)) if s is not None],
                         ids=lambda s: signal.Signals(s).name)
def test_a_stop_signal_stops_on_the_loop_thread_and_handlers_are_restored(portable, sig):
    before = signal.getsignal(sig)

    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        calls: list[bool] = []

        def stop() -> None:
            calls.append(threading.current_thread() is threading.main_thread())
            stopped.set()

        undo = stop_on_signals(loop, stop, portable=portable)
        try:
            # sent from another thread, as the OS delivers Ctrl+C on Windows
            threading.Thread(target=os.kill, args=(os.getpid(), sig)).start()
            await asyncio.wait_for(stopped.wait(), 10)
        finally:
            undo()
        return calls

    assert asyncio.run(main()) == [True]
    assert signal.getsignal(sig) == before


# --- recording lock -----------------------------------------------------------------------


def test_the_lock_side_is_chosen_by_platform():
    assert lockmod.locker_for("win32") is lockmod._windows_lock
    assert lockmod.locker_for("linux") is lockmod.locker_for("darwin") is lockmod._posix_lock
    with pytest.raises(OSError, match="Windows only"):
        lockmod._windows_lock(0)


def test_the_windows_lock_byte_is_one_sqlite_never_touches(tmp_path):
    off = lockmod.WINDOWS_LOCK_OFFSET
    # past SQLite's own lock bytes (PENDING, RESERVED, 510 SHARED) ...
    assert off >= lockmod.SQLITE_PENDING_BYTE + lockmod.SQLITE_LOCK_BYTES
    # ... and inside the lock-byte page, which SQLite never reads or writes
    rec = Recorder(tmp_path / "r.ratedial", meta={})
    rec.close()
    (page_size,) = sqlite3.connect(tmp_path / "r.ratedial").execute(
        "PRAGMA page_size").fetchone()
    assert off < lockmod.SQLITE_PENDING_BYTE + page_size
    assert off < lockmod.SQLITE_PENDING_BYTE + 1024  # for every page size from 1024 up


def test_the_posix_lock_keeps_out_another_process_until_released(tmp_path):
    path = tmp_path / "r.ratedial"
    Recorder(path, meta={}).close()
    probe = [sys.executable, "-c", "import sys; from pathlib import Path; "
             "from ratedial.recording.writer import try_lock; "
             "print(try_lock(Path(sys.argv[1])) is None)", str(path)]
    fd = try_lock(path)
    assert fd is not None
    held = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    os.close(fd)
    free = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
    assert (held, free) == ("True", "False")


# --- mpv endpoints ------------------------------------------------------------------------


def test_endpoint_names():
    assert is_named_pipe(r"\\.\pipe\mpvsocket") and is_named_pipe("//./pipe/mpv")
    assert not is_named_pipe("/tmp/mpvsocket")
    path, tmpdir = private_endpoint()
    assert tmpdir is not None and path.startswith(tmpdir) and os.path.isdir(tmpdir)
    os.rmdir(tmpdir)


def test_a_named_pipe_on_linux_is_a_clear_oserror():
    with pytest.raises(OSError, match="Windows only"):
        connect_sync(r"\\.\pipe\mpvsocket")

    async def main() -> None:
        await connect_ipc(r"\\.\pipe\mpvsocket", asyncio.Protocol)

    with pytest.raises(OSError, match="Windows only"):
        asyncio.run(main())


def test_the_blocking_channel_times_out_then_reads(tmp_path):
    path = str(tmp_path / "ipc.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    ch = connect_sync(path)
    peer, _ = server.accept()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        ch.recv(100, 0.2)
    assert time.monotonic() - t0 >= 0.19
    ch.sendall(b'{"command": []}\n')
    assert peer.recv(100) == b'{"command": []}\n'
    peer.sendall(b"ok\n")
    assert ch.recv(100, 5) == b"ok\n"
    peer.close()
    assert ch.recv(100, 5) == b""
    ch.close()
    server.close()


# --- serial -------------------------------------------------------------------------------


def test_a_busy_com_port_is_explained_in_one_line():
    exc = serial.SerialException(
        "could not open port 'COM4': PermissionError(13, 'Access is denied.', None, 5)")
    text = describe_open_error("COM4", exc)
    assert text.startswith("cannot open COM4: port is busy: another program has it open")
    assert "\n" not in text


def test_serial_io_defaults_by_platform():
    assert default_serial_io() == ("thread" if sys.platform == "win32" else "asyncio")


def test_dial_ports_by_vendor_id_and_the_cu_side_on_macos():
    from serial.tools.list_ports_common import ListPortInfo

    from ratedial.daemon.run import dial_ports

    def port(device: str, vid: int | None) -> ListPortInfo:
        info = ListPortInfo(device, skip_link_detection=True)
        info.vid = vid
        return info

    mac = [port("/dev/cu.usbmodem1101", 0x2E8A), port("/dev/tty.usbmodem1101", 0x2E8A),
           port("/dev/tty.usbserial-10", 0x1A86), port("/dev/cu.Bluetooth-Incoming-Port", None)]
    assert dial_ports(mac, platform="darwin") == ["/dev/cu.usbmodem1101",
                                                  "/dev/cu.usbserial-10"]
    win = [port("COM4", 0x2E8A), port("COM1", None), port("COM7", 0x303A)]
    assert dial_ports(win, platform="win32") == ["COM4", "COM7"]
    linux = [port("/dev/ttyACM0", 0x2E8A), port("/dev/ttyS0", None)]
    assert dial_ports(linux, platform="linux") == ["/dev/ttyACM0"]


# --- recording privacy --------------------------------------------------------------------


def test_privacy_note_on_windows_only_outside_the_user_folder(tmp_path):
    from ratedial._platform.privacy import privacy_warning

    home = tmp_path / "Users" / "rater"
    assert privacy_warning(home / "recordings" / "a.ratedial", platform="win32",
                           home=home) is None
    note = privacy_warning(tmp_path / "shared" / "a.ratedial", platform="win32", home=home)
    assert note is not None and "outside your user folder" in note and "\n" not in note
    assert privacy_warning(tmp_path / "shared" / "a.ratedial", platform="linux",
                           home=home) is None


def test_the_clock_note_names_the_python_that_fixes_it():
    from ratedial._platform import clock_note

    note = clock_note("win32", (3, 12))
    assert note is not None and "3.13" in note and "\n" not in note
    assert clock_note("win32", (3, 13)) is None
    assert clock_note("linux", (3, 11)) is None and clock_note("darwin", (3, 11)) is None


def test_mqtt_commands_get_a_loop_with_add_reader():
    from ratedial._platform.loops import selector_loop

    loop = selector_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        r, w = socket.socketpair()
        loop.add_reader(r.fileno(), lambda: None)  # what aiomqtt does with paho's socket
        assert loop.remove_reader(r.fileno())
        r.close()
        w.close()
    finally:
        loop.close()


def test_install_hints_name_the_source_folder_ratedial_runs_from():
    """ratedial is not on PyPI (an audit, 2026-12-04: every hint said pip install
    'ratedial[X]', which fails): from the clone, an editable install of its extra."""
    from pathlib import Path

    import ratedial
    from ratedial._paths import install_hint

    root = Path(ratedial.__file__).resolve().parent.parent.parent
    assert (root / "pyproject.toml").is_file()
    assert install_hint("lsl") == f'pip install -e "{root}[lsl]"'


def test_one_serial_port_written_two_ways_is_one_key(tmp_path):
    # Windows: COM3 in any case, with or without the \\.\ device prefix, is one port
    keys = {port_key(p, "win32") for p in ("COM3", "com3", r"\\.\COM3", r"\\?\com3", " COM3")}
    assert keys == {"com3"}
    assert port_key("COM13", "win32") != port_key("COM3", "win32")
    # POSIX: a link and its target, relative and absolute
    dev = tmp_path / "ttyACM0"
    dev.touch()
    (tmp_path / "by-id").symlink_to(dev)
    assert port_key(str(tmp_path / "by-id"), "linux") == port_key(str(dev), "linux")
    assert port_key("/dev/ttyACM0", "linux") != port_key("/dev/ttyACM1", "linux")
    # macOS: a device's call-in side (tty.) is its call-out side (cu., what the scan opens)
    assert port_key("/dev/tty.usbmodem101", "darwin") == "/dev/cu.usbmodem101"
    assert port_key("/dev/cu.usbmodem101", "darwin") == "/dev/cu.usbmodem101"
    assert port_key("/dev/tty.usbmodem102", "darwin") != port_key("/dev/cu.usbmodem101",
                                                                   "darwin")
