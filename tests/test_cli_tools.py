"""`ratedial devices` and `ratedial monitor` against a virtual dial and a real mosquitto."""

from __future__ import annotations

import subprocess
import sys

import pytest
import serial

from brokers import mosquitto
from daemonrun import finish, query, start_daemon
from ratedial.virtual import VirtualDial

pytestmark = pytest.mark.slow


def ratedial(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_devices_lists_a_dial_by_its_id_and_explains_a_bad_port(tmp_path):
    with VirtualDial(seed=71, subprocess=True) as dial:
        missing = str(tmp_path / "ttyGONE")
        proc = ratedial("devices", "--port", dial.port, "--port", missing)
        found = ratedial("devices", "--port", dial.port)
    assert found.returncode == 0, found.stderr
    assert proc.returncode == 1, proc.stderr  # a port asked for has no dial: status 1
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    (row,) = [ln for ln in lines if dial.port in ln]
    uid = row.split()[0]
    assert len(uid) == 16 and int(uid, 16) >= 0  # the dial's hardware id, first
    assert "board=virtual" in row and "firmware=0.1.0" in row
    assert f"{missing}: no such port" in lines


def test_monitor_shows_every_dial_seen_on_the_broker(tmp_path):
    with mosquitto(tmp_path / "broker") as broker, VirtualDial(seed=72, subprocess=True) as dial:
        mon = subprocess.Popen([sys.executable, "-m", "ratedial", "monitor", "--broker",
                                broker.url, "--duration", "8"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        daemon = start_daemon("--port", dial.port, "--broker", broker.url, "--record",
                              str(tmp_path / "m.ratedial"), "--duration", "5",
                              "--rater", f"client={dial.port}")
        finish(daemon)
        out, err = mon.communicate(timeout=60)
    assert mon.returncode == 0, err
    uid = query(tmp_path / "m.ratedial", "SELECT uid FROM dials")[0][0]
    assert "Traceback" not in out + err
    assert uid[:8] in out and "client" in out
    assert "dial_connected" in out  # events are printed as they come


def test_monitor_without_a_broker_is_one_line(tmp_path):
    from brokers import free_port

    proc = ratedial("monitor", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--duration", "2")
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot subscribe" in lines[0], proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="ptys are POSIX")
def test_devices_says_a_port_another_program_holds_is_busy():
    with VirtualDial(seed=73, subprocess=True) as dial, \
            serial.Serial(dial.port, 115200, exclusive=True):
        proc = ratedial("devices", "--port", dial.port, "--timeout", "1")
    assert proc.returncode == 1, proc.stderr
    assert f"{dial.port}: port is busy: another program has it open" in proc.stdout
