"""The end of a ``ratedial run``, and what it refuses before it starts: found by a newcomer's
black-box audit (2026-12-05, /tmp/audit_newcomer/REPORT.md F1-F3)."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from ratedial._platform import shell_quote
from ratedial.config import RunConfig
from ratedial.daemon.rater_ports import unopened_rater_port
from ratedial.daemon.summary import RunSummary, print_summary
from ratedial.mqtt.outbox import Outbox


def printed(s: RunSummary) -> list[str]:
    out = io.StringIO()
    print_summary(Console(file=out, width=80), s)  # narrow: no line may wrap
    return [ln.strip() for ln in out.getvalue().splitlines()]


# --- F1: this run's unconfirmed samples apart from the earlier recordings' ----------------

def test_the_outbox_counts_this_runs_unconfirmed_apart_from_an_earlier_recordings() -> None:
    """An earlier recording's backlog (restore) is carried, but neither counted as this run's
    nor written into this recording's mqtt_progress (that file's own row keeps it)."""
    box = Outbox()
    box.restore(("dial", 7), 0, 4000)      # run1's boot, none of it confirmed
    box.restore(("dial", 8), 0, 1000)      # run1 again, the same boot as this run ...
    box.missed(("dial", 8), 1000, 1500)    # ... which this run goes on with, broker down
    box.live_sent(("dial", 8), 1500, 1600)  # in flight
    assert box.unconfirmed_samples() == (600, 5000)
    snap = box.snapshot()
    assert snap["epochs"] == [{"dial": "dial", "boot": 8, "sent_below": 1600,
                               "pending": [[1000, 1600]]}]
    box.backfill_acked(("dial", 7), 0, 4000)
    assert box.unconfirmed_samples() == (600, 1000)
    box.missed(("dial", 8), 1700, 1750)  # after samples the dial lost (a gap)
    assert box.unconfirmed_samples() == (650, 1000)
    assert box.snapshot()["epochs"][0]["pending"] == [[1000, 1600], [1700, 1750]]


def test_the_plain_summary_says_which_samples_are_this_runs() -> None:
    s = RunSummary(path=Path("run3.ratedial"), seconds=4.0, broker="down (localhost:1883)",
                   unpublished=(3990, 4), unpublished_earlier=(7970, 6, 2), daemon_id="d5")
    lines = printed(s)
    assert ("not confirmed by the MQTT broker (down (localhost:1883)): 3990 samples and 4 "
            "events of this run; they are in the recording, and the next run of daemon d5 "
            "with this folder and broker publishes them") in lines
    assert ("not yet republished from 2 earlier recording(s) of daemon d5: 7970 samples and "
            "6 events; they stay in those recordings, and the next run with this folder "
            "and their broker publishes them") in lines
    lines = printed(RunSummary(path=Path("r.ratedial"), seconds=4.0, unpublished=(5, 1)))
    assert not any("earlier recording" in ln for ln in lines)


# --- F2: a rater named by a port the run does not open ------------------------------------

def test_a_rater_on_a_port_that_is_not_opened_is_found(tmp_path: Path) -> None:
    pty = tmp_path / "dial0"
    pty.write_text("")  # a port that exists: a virtual dial's pty, say
    raters = {"client": str(pty)}
    # the scan opens only dials' USB ports: this one never
    assert unopened_rater_port(RunConfig(raters=raters), usb_ports=["/dev/ttyACM0"]) == (
        "client", str(pty))
    # a USB dial's port the scan opens, a --port (written another way), a dial id: fine
    assert unopened_rater_port(RunConfig(raters=raters), usb_ports=[str(pty)]) is None
    os.symlink(pty, tmp_path / "link")
    assert unopened_rater_port(RunConfig(raters=raters, ports=(str(tmp_path / "link"),),
                                         scan=False), usb_ports=[]) is None
    assert unopened_rater_port(RunConfig(raters={"client": "e6614103e7a1b2c3"}, scan=False),
                               usb_ports=[]) is None
    # a port not plugged in yet: the scan opens it when it comes; without the scan, never
    later = {"client": "/dev/serial/by-id/usb-ratedial-not-here"}
    assert unopened_rater_port(RunConfig(raters=later), usb_ports=[]) is None
    assert unopened_rater_port(RunConfig(raters=later, scan=False), usb_ports=[]) == (
        "client", later["client"])
    # COM3 is a port on Windows (a dial id has only hex digits)
    assert unopened_rater_port(RunConfig(raters={"client": "COM3"}, scan=False),
                               usb_ports=[], platform="win32") == ("client", "COM3")


def test_a_run_whose_rater_names_a_port_it_does_not_open_is_refused(tmp_path: Path) -> None:
    """The audit: ``--rater client=<a virtual dial's port>`` without ``--port`` recorded 70 s
    with no dial, exit 0, and named the rater only after the run."""
    master, slave = os.openpty()
    try:
        port = os.ttyname(slave)
        rec = tmp_path / "D07-client.ratedial"
        res = subprocess.run([sys.executable, "-m", "ratedial", "run", "--rater",
                              f"client={port}", "--broker", "none", "--record", str(rec),
                              "--duration", "5"],
                             text=True, capture_output=True, timeout=60, check=False)
    finally:
        os.close(master)
        os.close(slave)
    assert res.returncode == 2, res.stderr
    assert res.stderr == (f"ratedial: error: rater client={port} names a port this run does "
                          "not open (the USB scan opens only dials plugged in by USB): add "
                          f"--port {port}\n")
    assert not list(tmp_path.iterdir())


# --- F3: the "inspect it" line pastes into a shell ----------------------------------------

@pytest.mark.parametrize("name", ["my recs/D01 client.ratedial", "réc dir/Dü7 client.ratedial",
                                  "it's/r.ratedial"])
def test_the_inspect_line_pastes_into_the_shell(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.parent.mkdir()
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE samples (x)")
    con.executemany("INSERT INTO samples VALUES (?)", [(1,), (2,), (3,)])
    con.commit()
    con.close()
    rel = Path(name)  # as given to --record, from the folder the user is in
    lines = printed(RunSummary(path=rel, seconds=1.0))
    at = lines.index("inspect it (schema: docs/recording.md):")
    command = lines[at + 1]  # the whole line, pasted as printed (an audit: the schema
    # pointer after the command on one line broke the paste)
    assert shlex.split(command) == ["sqlite3", name, "SELECT count(*) FROM samples"]
    before = sorted(p.name for p in tmp_path.iterdir())
    if shutil.which("sqlite3"):  # pasted as printed: 3 rows, no stray file
        res = subprocess.run(["sh", "-c", command], cwd=tmp_path, text=True,
                             capture_output=True, timeout=30, check=False)
        assert (res.returncode, res.stdout) == (0, "3\n"), res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_shell_quoting_on_windows_uses_double_quotes() -> None:
    """cmd does not take single quotes as quoting; cmd and PowerShell both take double."""
    assert shell_quote(r"C:\Users\a b\D01.ratedial", "win32") == r'"C:\Users\a b\D01.ratedial"'
    assert shell_quote(r"recordings\D01.ratedial", "win32") == r"recordings\D01.ratedial"
    assert shell_quote("SELECT count(*) FROM samples", "win32") == \
        '"SELECT count(*) FROM samples"'
    assert shell_quote("r.ratedial", "linux") == "r.ratedial"


def _final_progress(path: Path, fill) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """A publisher (no broker) over a recording at ``path``, its outbox filled by ``fill``,
    then its final save_progress: the recording's mqtt_progress row."""
    import json

    from ratedial.config import MqttConfig
    from ratedial.mqtt.publisher import MqttPublisher
    from ratedial.mqtt.topics import Topics
    from ratedial.recording.writer import Recorder

    rec = Recorder(path, meta={"daemon_id": "d", "run_id": path.stem})
    try:
        pub = MqttPublisher(MqttConfig(broker="mqtt://127.0.0.1:1"),
                            topics=Topics("ratedial", "d"), recorder=rec, run_id=path.stem,
                            rater_of=lambda _u: None, status_of=dict, wall_offset_ns=0,
                            software_version="test")
        fill(pub.outbox)
        pub.save_progress(final=True)
        rec.flush()
    finally:
        rec.close()
    with sqlite3.connect(path) as con:
        (row,) = con.execute("SELECT value FROM meta WHERE key = 'mqtt_progress'").fetchone()
    return json.loads(row)  # type: ignore[no-any-return]


def test_a_recording_whose_own_part_the_broker_has_is_complete_whatever_earlier_ones_wait_for(
        tmp_path: Path) -> None:
    """A recording's mqtt_progress holds its own run's part only (docs/recording.md): it is
    `complete` when the broker confirmed all of that, even while an earlier recording's
    backlog waits (that recording's own row says so). Before: complete stayed false, the row
    listed nothing pending, and no later run ever marked the file complete (a review)."""
    key = ("c0ffee0000000001", 7)

    def earlier_waits(box: Outbox) -> None:
        box.restore(key, 900, 1001)  # run 1's backlog: the broker does not have it
        box.live_sent(key, 1200, 1300)  # this run's samples, all confirmed
        box.checkpoint_acked(box.checkpoint())

    progress = _final_progress(tmp_path / "run2.ratedial", earlier_waits)
    assert progress["complete"] is True
    assert [e["pending"] for e in progress["epochs"]] == [[]]
    # with this run's own samples unconfirmed it is not complete
    progress = _final_progress(tmp_path / "run3.ratedial",
                               lambda box: box.missed(key, 1300, 1400))
    assert progress["complete"] is False


# --- the crash audit (2026-12-05, finding 2): a dial lost and not back by the end ----------

def test_a_dial_lost_during_the_handshake_is_lost_for_the_run_not_longer() -> None:
    """A review (2026-12-05): a dial lost before the run's t0 (during the handshake) had its
    for_s counted from when it was lost, longer than the run (here 9.5 s of a 7 s run)."""
    from ratedial.daemon.app import lost_at_end
    from ratedial.daemon.dialview import DialView
    from ratedial.daemon.summary import LostAtEnd

    t0, end = 10_000_000_000, 17_000_000_000  # a 7 s run
    early = DialView(uid="a1", rater="client", state="lost", lost_ns=t0 - 2_500_000_000,
                     lost_cause="unplugged")
    later = DialView(uid="b2", rater="therapist", state="lost", lost_ns=t0 + 2_500_000_000,
                     lost_cause="replaced")
    back = DialView(uid="c3", rater="observer", state="connected")
    assert lost_at_end([early, later, back], t0, end) == {
        "a1": LostAtEnd(at_s=0.0, for_s=7.0, cause="unplugged"),
        "b2": LostAtEnd(at_s=2.5, for_s=4.5, cause="replaced")}


def test_the_plain_summary_names_a_dial_lost_and_not_back() -> None:
    from ratedial.daemon.dialview import DialView
    from ratedial.daemon.summary import LostAtEnd, json_summary

    gone = DialView(uid="e6614103e7a1b2c3", rater="client", received=2050)
    back = DialView(uid="e6614103e7a1b2c4", rater="therapist", received=7000)
    s = RunSummary(path=Path("r.ratedial"), seconds=7.0, dials=[gone, back],
                   lost_at_end={gone.uid: LostAtEnd(at_s=2.5, for_s=4.5, cause="unplugged")})
    lines = printed(s)
    assert ("dial e6614103e7a1b2c3 rater=client: lost 2.5 s into the run (its port went away) "
            "and not back: its last 4.5 s (64% of the run) have no samples (in no gap, not "
            "counted as missing)") in lines
    assert not any("e6614103e7a1b2c4" in ln and "lost" in ln for ln in lines)
    import json
    dials = json.loads(json_summary(s))["dials"]
    assert [d["lost_at_end"] for d in dials] == [
        {"at_s": 2.5, "for_s": 4.5, "cause": "unplugged"}, None]
