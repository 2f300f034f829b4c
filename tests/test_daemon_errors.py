"""Bad input never wins: config, ports, foreign firmware and garbage give one line or a count."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys

import pytest

from ratedial.wire import encode_frame
from scripted import ScriptedPort, hello, samples


def ratedial(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("[scale\nminimum = 0", "not valid TOML"),
    ("colour = 'blue'", "unknown key colour"),
    ("[scale]\nminimum = 'low'", "scale.minimum must be a number"),
    ("[scale]\nminimum = 100\nmaximum = 0", "minimum must be below"),
    ("[mqtt]\nbroker = 'ftp://x'", "expected mqtt://"),
    ("ports = '/dev/ttyACM0'", "ports must be a list"),
])
def test_bad_config_is_one_line(tmp_path, text, expected):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    proc = ratedial("run", "--config", str(cfg), "--record", str(tmp_path / "r.ratedial"),
                    "--duration", "1")
    assert proc.returncode == 2
    assert expected in one_line_error(proc)
    assert not (tmp_path / "r.ratedial").exists()


def test_missing_config_file_is_one_line(tmp_path):
    proc = ratedial("run", "--config", str(tmp_path / "nope.toml"), "--duration", "1")
    assert proc.returncode == 2
    assert "does not exist" in one_line_error(proc)


def test_unknown_port_is_one_line(tmp_path):
    proc = ratedial("run", "--port", str(tmp_path / "ttyNOPE"), "--no-scan", "--broker", "none",
                    "--record", str(tmp_path / "r.ratedial"), "--duration", "2")
    assert proc.returncode == 1
    assert "no such port" in one_line_error(proc)


def test_wrong_protocol_version_is_one_line_naming_both(tmp_path):
    def chunks():
        for i in range(200):
            yield encode_frame(hello(), version=2), i * 0.02

    port = ScriptedPort(chunks, wait_for_host=True)  # from when the daemon has the port open
    try:
        proc = ratedial("run", "--port", port.path, "--no-scan", "--broker", "none",
                        "--record", str(tmp_path / "r.ratedial"), "--duration", "3")
    finally:
        port.close()
    assert proc.returncode == 1  # nothing could be recorded (and no file is left)
    assert "Traceback" not in proc.stderr + proc.stdout
    hits = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "protocol v2" in ln]
    assert len(hits) == 1 and "this host speaks v1" in hits[0]
    assert proc.stderr.strip().splitlines()[-1].startswith("ratedial: error: no dial answered")
    assert not (tmp_path / "r.ratedial").exists()


def test_garbage_between_frames_is_counted_and_samples_still_recorded(tmp_path):
    rng = random.Random(3)

    def chunks():
        yield encode_frame(hello()), 0.0
        for i in range(150):
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            extra = encode_frame(hello(index=10 * i)) if i % 50 == 0 else b""  # every 0.5 s
            yield junk + b"\x00" + extra + encode_frame(samples(10 * i)), 0.05 + i * 0.01

    # The script starts when the daemon has the port open (its first INFO); its 1.55 s of
    # frames end well inside the run even on a loaded machine.
    port = ScriptedPort(chunks, wait_for_host=True)
    path = tmp_path / "r.ratedial"
    try:
        proc = ratedial("run", "--port", port.path, "--no-scan", "--broker", "none",
                        "--record", str(path), "--duration", "6", "--json")
    finally:
        port.close()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    con = sqlite3.connect(path)
    n, lo, hi = con.execute("SELECT count(*), min(sample_index), max(sample_index) FROM samples"
                            ).fetchone()
    # From the first sample to the last, nothing is missing despite the garbage between every
    # frame (the daemon may take its first frames as its clock settles: lo is small, not 0).
    assert hi == 1499 and lo < 1000
    assert n == hi - lo + 1
    assert con.execute("SELECT count(*) FROM gaps").fetchone()[0] == 0
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    (dial,) = summary["dials"]
    assert dial["received"] == n
    assert dial["rejected"] >= 95  # the ~100 junk chunks after the dial said HELLO at i=50


def test_scan_with_no_dial_says_so_during_and_after_the_run(tmp_path):
    """A session recorded with the dial unplugged must not end looking like a good one."""
    from ratedial.daemon.run import dial_ports
    if dial_ports():
        pytest.skip("a dial is plugged into this computer")
    rec = tmp_path / "r.ratedial"
    proc = ratedial("run", "--broker", "none", "--record", str(rec), "--duration", "4.5")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    out = " ".join(proc.stdout.split())  # the summary may wrap
    assert "no dial found on USB yet" in out
    assert "no dial was connected during the run: the recording holds no samples" in out
    with sqlite3.connect(rec) as con:
        assert con.execute("SELECT count(*) FROM dials").fetchone() == (0,)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_recording_that_cannot_be_written_at_start_leaves_no_file(tmp_path):
    """A full disk at start (here: a file size limit of 0, so every write fails) is one line
    and leaves no file: an audit (2026-12-04) found an empty file that made the corrected
    command refuse the name ("already exists")."""
    import resource
    import signal

    def no_room() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    rec = tmp_path / "r.ratedial"
    proc = subprocess.run([sys.executable, "-m", "ratedial", "run", "--no-scan", "--broker",
                           "none", "--record", str(rec), "--duration", "1"],
                          preexec_fn=no_room, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 1
    assert f"cannot write {rec}" in one_line_error(proc)
    assert list(tmp_path.iterdir()) == []
