"""Scanning for dials by USB id: a port on a common USB-serial chip that never says HELLO is
another device (a trigger box, an Arduino): closed after a few seconds and left alone while it
stays plugged in, asked again once it is plugged in again; dials found beside it still connect."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import tty
from collections.abc import Callable

import pytest

from ratedial.config import RunConfig
from ratedial.daemon import run as run_mod
from ratedial.wire import Info, encode_command, encode_frame
from scripted import UID, ScriptedPort, hello, samples

INFO = encode_command(Info())


def _drain(fd: int) -> bytes:
    out = b""
    while select.select([fd], [], [], 0)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


async def _until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll a condition of the running daemon (not a stand-in for one)."""
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_a_scanned_port_that_never_answers_is_left_alone_until_plugged_in_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_mod, "SCAN_GIVE_UP_S", 1.0)
    master, slave = pty.openpty()
    tty.setraw(slave)
    other = os.ttyname(slave)  # the trigger box: reads what it is sent, answers nothing
    dial = ScriptedPort(lambda: iter([(b"\x00" + encode_frame(hello()), 0.0)] + [
        (encode_frame(samples(i)), 0.05 + i / 1000) for i in range(0, 3000, 10)]),
        wait_for_host=True)
    plugged = True
    scans = 0

    def fake_ports() -> list[str]:
        nonlocal scans
        scans += 1
        return ([other] if plugged else []) + [dial.path]

    monkeypatch.setattr(run_mod, "dial_ports", fake_ports)
    said: list[str] = []
    daemon = run_mod.Daemon(RunConfig(scan=True), [], on_message=said.append)
    uid = UID.hex()

    async def scenario() -> None:
        nonlocal plugged
        task = asyncio.create_task(daemon.run())
        await _until(lambda: any(m.startswith(f"{other}: no ratedial dial answered in 1 s: "
                                              "closed and left alone") for m in said),
                     "the port to be given up")
        await _until(lambda: other not in daemon.links and other not in daemon._port_tasks,
                     "the port to be closed")
        assert _drain(master).count(INFO) >= 2  # it was asked, more than once
        n = scans
        await _until(lambda: scans >= n + 3, "three more scans")
        assert _drain(master) == b""  # left alone: not opened, nothing written
        assert other not in daemon._port_tasks
        view = daemon.views[uid]
        assert view.state == "connected" and view.received > 0  # the dial beside it works
        plugged = False  # unplugged ...
        n = scans
        await _until(lambda: scans >= n + 1, "a scan without it")
        plugged = True  # ... and plugged in again: asked again
        await _until(lambda: INFO in _peek(master), "an INFO on the port")
        daemon.stop()
        await task

    pending = b""

    def _peek(fd: int) -> bytes:
        nonlocal pending
        pending += _drain(fd)
        return pending

    try:
        asyncio.run(scenario())
    finally:
        dial.close()
        os.close(master)
        os.close(slave)



@pytest.mark.parametrize(("reason", "waits", "said"), [
    ("no such port", [0.2] * 6, False),  # unplugged: looked for every 0.2 s
    ("port is busy: another program has it open", [0.2, 0.4, 0.8, 1.6, 2.0, 2.0], True),
])
def test_a_lost_port_is_looked_for_again_at_once_and_a_busy_one_is_said(
        monkeypatch: pytest.MonkeyPatch, reason: str, waits: list[float], said: bool) -> None:
    """A dial keeps only its newest 256 bytes (about 30 ms at 1 kHz) while no program has its
    port open: every second of waiting after it is back is a second lost (an audit,
    2026-12-04: 1.4-1.6 s on top of the time unplugged, retries at 0.2, 0.6, 1.4, 3.0 s).
    Another program taking the port meanwhile was not said at all."""
    from ratedial.errors import PortError

    messages: list[str] = []
    daemon = run_mod.Daemon(RunConfig(scan=False), [], on_message=messages.append)
    slept: list[float] = []
    opens = 0

    class LostLink:  # the port was open, then the dial was unplugged
        def __init__(self) -> None:
            self.closed = asyncio.get_running_loop().create_future()
            self.closed.set_result(None)

        def close(self) -> None:
            pass

    async def fake_open(port: str, on_frames: object, *, io: str = "asyncio") -> object:
        nonlocal opens
        opens += 1
        if opens == 1:
            return LostLink()
        raise PortError(f"cannot open {port}: {reason}", gone=reason == "no such port")

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) >= len(waits):
            daemon.stop()

    monkeypatch.setattr(run_mod, "open_link", fake_open)
    monkeypatch.setattr(daemon, "_sleep", fake_sleep)
    asyncio.run(daemon._port_task("/dev/ttyACM9", explicit=True))
    assert slept == waits
    assert [m for m in messages if "ttyACM9" in m] == (
        [f"cannot open /dev/ttyACM9: {reason}: retrying"] if said else [])


def test_a_port_gone_on_windows_is_gone_too():
    """pyserial on Windows: no errno, the reason only in the text (a review, 2026-12-04:
    an unplugged COM port was taken for a busy one and backed off to 2 s)."""
    import serial

    from ratedial.daemon.link import describe_open_error, port_gone

    win = serial.SerialException("could not open port 'COM5': FileNotFoundError(2, 'The "
                                 "system cannot find the file specified.', None, 2)")
    assert port_gone(win) and describe_open_error("COM5", win) == "cannot open COM5: no such port"
    linux = serial.SerialException(2, "could not open port /dev/ttyACM0: [Errno 2] No such "
                                      "file or directory: '/dev/ttyACM0'")
    assert port_gone(linux)
    busy = serial.SerialException("could not open port 'COM5': PermissionError(13, 'Access "
                                  "is denied.', None, 5)")
    assert not port_gone(busy) and "port is busy" in describe_open_error("COM5", busy)


def test_a_port_given_as_a_link_is_not_opened_again_by_the_scan(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A review (2026-12-05): `--port /dev/serial/by-id/...` with the scan on: the scan finds
    the same device as /dev/ttyACM0 and opened it a second time (found busy)."""
    dial = ScriptedPort(lambda: iter([(b"\x00" + encode_frame(hello()), 0.0)] + [
        (encode_frame(samples(i)), 0.05 + i / 1000) for i in range(0, 3000, 10)]),
        wait_for_host=True)
    link = tmp_path / "by-id-dial"
    link.symlink_to(dial.path)
    scans = 0

    def fake_ports() -> list[str]:
        nonlocal scans
        scans += 1
        return [dial.path]  # the device under its own name

    monkeypatch.setattr(run_mod, "dial_ports", fake_ports)
    said: list[str] = []
    daemon = run_mod.Daemon(RunConfig(scan=True, ports=(str(link),)), [],
                            on_message=said.append)
    started: list[str] = []
    start = daemon._start_port

    def counted(tg, port, *, explicit):  # type: ignore[no-untyped-def]
        started.append(port)
        start(tg, port, explicit=explicit)

    monkeypatch.setattr(daemon, "_start_port", counted)

    async def scenario() -> None:
        task = asyncio.create_task(daemon.run())
        await _until(lambda: UID.hex() in daemon.views
                     and daemon.views[UID.hex()].received > 0, "the dial's samples")
        n = scans
        await _until(lambda: scans >= n + 3, "three more scans")
        assert list(daemon._port_tasks) == [str(link)]
        assert dial.path not in started  # never opened under its other name
        daemon.stop()
        await task

    try:
        asyncio.run(scenario())
    finally:
        dial.close()
    assert not any("busy" in m for m in said), said
