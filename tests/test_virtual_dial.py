"""The virtual dial end to end: real MicroPython firmware, simulated encoder, a real pty.

One dial runs a scripted rating with the raw tick counter forced to wrap 3 s after boot and
a drifting crystal; the test reads the port with pyserial and decodes every frame with the
host codec. Phases, each driven by reading frames until a condition holds (no sleep is
used to wait for anything; the one ``sleep`` *is* the fault: a host that stops reading):

1. >= 10 s of 1 kHz samples: contiguous indices, device time strictly increasing across
   the tick wrap, counts at every rest of the script equal to its targets, the button
   press, and the ground truth mapping device time to host time within [arrival - 50 ms,
   arrival).
2. The host stops reading for 3 s: every index afterwards is received or inside a DROP
   range exactly once, and STATUS samples_dropped equals the DROP total.
3. Unplug for 1 s: the port comes back at the same path, the same boot continues, and the
   gap is exactly the indices produced while unplugged.
4. Corruption: the decoder rejects damaged frames and the stream resumes.
5. Reboot: a new boot id, indices restart at 0.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import serial

from ratedial.errors import SimulatorError
from ratedial.virtual import DialOptions, VirtualDial, parse_script
from ratedial.virtual.truth import BootTruth
from ratedial.wire import Button, Drop, FrameDecoder, Hello, Samples, Status

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "data" / "virtual_script.csv"
WRAP = 1 << 30
TICK_START = WRAP - 3_000_000  # the raw counter wraps 3 s after boot

pytestmark = pytest.mark.timeout(180)


@dataclass
class Stream:
    """A host reading the port: frames with their arrival times, per-boot sample maps."""

    port: str
    ser: serial.Serial = field(init=False)
    dec: FrameDecoder = field(init=False)
    frames: list[tuple[int, object]] = field(default_factory=list)
    samples: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    drops: list[Drop] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    hellos: list[Hello] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    dup: int = 0

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        self.ser = serial.Serial(self.port, timeout=0.02)
        self.dec = FrameDecoder()

    def close(self) -> None:
        self.ser.close()

    def send(self, line: str) -> None:
        self.ser.write(line.encode() + b"\n")

    def pump(self) -> None:
        # read() returns as soon as one byte is there; then take what else is waiting, so
        # the arrival time is when the bytes came, not when a timeout ran out.
        data = self.ser.read(1)
        if data:
            data += self.ser.read(self.ser.in_waiting)
        now = time.monotonic_ns()
        for f in self.dec.feed(data):
            self.frames.append((now, f))
            if isinstance(f, Samples):
                for k, i in enumerate(f.indices):
                    if i in self.samples:
                        self.dup += 1
                    self.samples[i] = (f.counts[k], f.times_us[k], f.flags[k], now)
            elif isinstance(f, Drop):
                self.drops.append(f)
            elif isinstance(f, Status):
                self.statuses.append(f)
            elif isinstance(f, Hello):
                self.hellos.append(f)
            elif isinstance(f, Button):
                self.buttons.append(f)

    def until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.pump()

    def last_index(self) -> int:
        return max(self.samples) if self.samples else -1


def _pump_until_error(s: Stream) -> None:
    for _ in range(200):
        s.pump()


def _drop_indices(drops: list[Drop]) -> list[int]:
    out: list[int] = []
    for d in drops:
        out.extend(range(d.first_index, d.first_index + d.n_samples))
    return out


@pytest.fixture(scope="module")
def script():
    return parse_script(SCRIPT.read_text(), name=str(SCRIPT))


def test_virtual_dial_end_to_end(script) -> None:
    opts = DialOptions(script=SCRIPT, seed=7, wrap_bits=30, tick_start_us=TICK_START,
                       drift_ppm=50.0, rate_hz=1000, batch=10)
    with VirtualDial(opts) as dial:
        s = Stream(dial.port)
        try:
            s.send("INFO")
            s.until(lambda: bool(s.hellos), 10, "HELLO")
            hello = s.hellos[0]
            assert (hello.rate_hz, hello.batch, hello.board, hello.backend) == (
                1000, 10, "virtual", "irq")
            assert hello.uid == opts.uid_bytes
            truth = dial.truth()
            assert len(truth) == 1
            boot = truth[0]
            assert boot.boot_id == hello.boot_id
            assert boot.tick_start == TICK_START and boot.drift_ppb == 50_000

            # --- 1. the script, the wrap and the ground truth -----------------------------
            end_ns = boot.t0_ns + script.duration_us * 1000 + 500_000_000
            s.until(lambda: s.samples and s.samples[s.last_index()][3] > end_ns, 30,
                    "the end of the script")
            _check_phase1(s, script, boot)

            # --- 2. the host stops reading ----------------------------------------------
            assert s.statuses[-1].samples_dropped == 0
            before = s.last_index()
            time.sleep(3.0)  # the fault itself: a host that does not read for 3 s
            s.until(lambda: bool(s.drops), 10, "a DROP frame")
            resumed = s.last_index()
            s.until(lambda: s.statuses and s.statuses[-1].samples_taken > resumed + 1500, 10,
                    "a STATUS 1.5 s after the drops")
            _check_accounting(s, from_index=0)
            dropped = _drop_indices(s.drops)
            assert dropped and min(dropped) > before
            assert s.statuses[-1].samples_dropped == len(dropped)
            assert s.statuses[-1].frames_dropped >= 1

            # --- 3. unplug and replug ----------------------------------------------------
            last_before = s.last_index()
            assert dial.control("unplug 1") == "ok unplug 1"
            with pytest.raises(serial.SerialException):
                _pump_until_error(s)  # the pty is gone: reading fails
            s.close()
            assert os.path.islink(dial.port)
            s.open()
            s.send("INFO")
            n_hello = len(s.hellos)
            s.until(lambda: len(s.hellos) > n_hello and s.last_index() > last_before + 500, 10,
                    "frames after the replug")
            assert s.hellos[-1].boot_id == hello.boot_id  # the same boot continues
            after = sorted(i for i in s.samples if i > last_before)
            first_after = after[0]
            assert first_after > last_before + 900  # ~1 s of samples went nowhere
            assert after == list(range(first_after, after[-1] + 1))  # contiguous again
            assert not [d for d in s.drops if d.first_index > last_before]  # not device drops
            assert s.dup == 0

            # --- 4. corruption -----------------------------------------------------------
            rejected = s.dec.stats.rejected
            assert dial.control("corrupt 8") == "ok corrupt 8"
            mark = s.last_index()
            s.until(lambda: s.last_index() > mark + 300, 10, "frames after the corruption")
            assert s.dec.stats.rejected > rejected
            assert s.dec.stats.crc_errors + s.dec.stats.cobs_errors >= 1
            st = dial.status()
            assert st["bits_flipped"] >= 8 and st["boots"] == 1

            # --- 5. reboot ---------------------------------------------------------------
            reply = dial.control("reboot")
            assert reply.startswith("ok reboot boots=2")
            n_hello = len(s.hellos)
            s.until(lambda: len(s.hellos) > n_hello, 10, "the HELLO of the new boot")
            new = s.hellos[-1]
            assert new.boot_id != hello.boot_id
            assert reply.endswith(f"boot_id={new.boot_id}")
            k = next(j for j, (_, f) in enumerate(s.frames) if f is new)
            s.until(lambda: any(isinstance(f, Samples) for _, f in s.frames[k:]), 10,
                    "samples of the new boot")
            first = next(f for _, f in s.frames[k:] if isinstance(f, Samples))
            assert (first.seq, first.first_index) == (1, 0)
            assert [t.boot_id for t in dial.truth()] == [hello.boot_id, new.boot_id]
        finally:
            s.close()


def _check_phase1(s: Stream, script, boot: BootTruth) -> None:
    idx = sorted(s.samples)
    first, last = idx[0], idx[-1]
    assert idx == list(range(first, last + 1)), "sample indices are not contiguous"
    assert last - first >= 10_000
    assert s.dup == 0
    times = [s.samples[i][1] for i in idx]
    assert all(b > a for a, b in itertools.pairwise(times)), "device time not increasing"
    assert times[0] < WRAP < times[-1], "the raw tick counter did not wrap during the run"
    assert not s.drops

    # Ground truth: each sample was taken before it arrived, and not long before.
    late = []
    for i in idx:
        _c, t_us, _f, arrival = s.samples[i]
        h = boot.host_ns(t_us, near_ns=arrival)
        assert h < arrival, f"sample {i} 'taken' after it arrived"
        late.append(arrival - h)
    # How late is a timing figure (a loaded host delays the simulator's writes and our reads),
    # so the bounds only catch a wrong clock or samples held back: a frame of 10 samples
    # leaves when its last is taken, so the typical sample waits a few ms, and none is held
    # for a second.
    late.sort()
    assert late[len(late) // 2] < 50_000_000, f"median lateness {late[len(late) // 2] / 1e6:.1f} ms"
    assert late[-1] < 1_000_000_000, f"a sample arrived {late[-1] / 1e6:.1f} ms after it was taken"

    # Counts at the rests of the script are exactly its targets.
    checked = 0
    for rest in script.rests():
        lo = boot.t0_ns + rest.t_start_us * 1000 + 3_000_000  # bounce settles in 1.5 ms
        hi = boot.t0_ns + (rest.t_end_us if rest.t_end_us is not None else 10**12) * 1000
        for i in idx:
            c, t_us, _f, arrival = s.samples[i]
            h = boot.host_ns(t_us, near_ns=arrival)
            if lo <= h <= hi:
                assert c == rest.target, (
                    f"rest at {rest.t_start_us / 1e6} s: count {c}, want {rest.target}")
                checked += 1
    assert checked > 5000

    # The button row: pressed from 8.2 s to 8.4 s of script time.
    presses = [b for b in s.buttons if b.pressed]
    releases = [b for b in s.buttons if not b.pressed]
    assert len(presses) == 1 and len(releases) == 1
    for b, t_s in ((presses[0], 8.2), (releases[0], 8.4)):
        edge = (boot.host_ns(b.t_edge_us) - boot.t0_ns) / 1e9
        assert t_s <= edge < t_s + 0.01


def _check_accounting(s: Stream, *, from_index: int) -> None:
    """Every index up to the last received is received or dropped, exactly once."""
    dropped = _drop_indices(s.drops)
    assert len(dropped) == len(set(dropped))
    got = {i for i in s.samples if i >= from_index}
    both = got & set(dropped)
    assert not both, f"{len(both)} indices both received and dropped"
    first = min(got)
    want = set(range(first, max(got) + 1))
    assert got | set(dropped) >= want
    missing = want - got - set(dropped)
    assert not missing, f"{len(missing)} indices neither received nor dropped"


# --- the command line --------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ratedial.virtual", *args]


def test_cli_prints_port_first_and_obeys_control(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl.sock"
    link = tmp_path / "dial0"
    truth = tmp_path / "truth.jsonl"
    still = tmp_path / "still.csv"
    still.write_text("0,50\n")  # the knob rests: any button press comes from the command
    proc = subprocess.Popen(
        _cli("--seed", "3", "--link", str(link), "--control", str(ctl), "--truth", str(truth),
             "--rate", "500", "--batch", "20", "--script", str(still)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ask(line: str) -> str:
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(15)
            c.connect(str(ctl))
            c.sendall(line.encode() + b"\n")
            return c.makefile().readline().strip()

    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == str(link)
        assert os.path.realpath(link).startswith("/dev/pts/")
        s = Stream(str(link))
        try:
            s.send("INFO")
            s.until(lambda: bool(s.hellos) and len(s.samples) > 500, 15, "HELLO and samples")
            assert (s.hellos[0].rate_hz, s.hellos[0].batch) == (500, 20)
            assert {c for c, _t, _f, _a in s.samples.values()} == {0}
            assert ask("button 0.2") == "ok button 0.2"
            s.until(lambda: len(s.buttons) >= 2, 10, "BUTTON press and release")
            press, release = s.buttons[:2]
            assert press.pressed and not release.pressed
            assert 0.19 < (release.t_edge_us - press.t_edge_us) / 1e6 < 0.21
        except Exception:
            # Shown by pytest for a failing test: what the virtual dial said.
            proc.terminate()
            print("virtual-dial stderr:", proc.stderr.read() if proc.stderr else None)
            raise
        finally:
            s.close()
        assert ask("status").startswith('ok {"boots":1,')
        assert ask("frobnicate").startswith("error unknown command")
        assert ask("quit") == "ok quit"
        assert proc.wait(15) == 0
        assert not link.exists()
        assert len(truth.read_text().splitlines()) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "dial0"
    proc = subprocess.Popen(_cli("--link", str(link)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == str(link)
    proc.terminate()
    assert proc.wait(15) == 0
    assert not link.exists()
    assert "Traceback" not in proc.stderr.read() if proc.stderr else True


def test_scheduled_faults_run_at_their_times() -> None:
    from ratedial.virtual import parse_fault

    opts = DialOptions(seed=6, faults=(parse_fault("reboot@1"), parse_fault("stall@1.5:0.5")))
    with VirtualDial(opts) as dial:
        t0 = time.monotonic()
        seen_stall = False
        # the second boot's truth line is appended when its firmware reports it, which can
        # come after the bridge counts the boot: wait for both
        while dial.status()["boots"] < 2 or not seen_stall or len(dial.truth()) < 2:
            st = dial.status()  # round trips through the bridge, no sleeping
            seen_stall = seen_stall or st["stalled"]
            assert time.monotonic() - t0 < 15, st
        assert len(dial.truth()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "5"], "5 is not in the range 50<=x<=2000"),  # shown in --help too
        (["--wrap-bits", "40"], "--wrap-bits"),
        (["--fault", "explode@3"], "unknown fault"),
        (["--rate", "fast"], "'fast' is not a valid integer"),
        (["--bogus"], "No such option"),
        # was a firmware traceback, after the port was printed; TMP: a folder of this test
        # (a fixed /nonexistent/dir existed once, made by someone's export as root: the
        # dial then ran, and the test waited for its exit until its timeout)
        (["--truth", "TMP/missing/t.jsonl"], "--truth TMP/missing/t.jsonl: "
                                             "directory TMP/missing does not exist"),
    ],
)
def test_cli_bad_options_one_line_exit_2(args: list[str], message: str,
                                         tmp_path: Path) -> None:
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    message = message.replace("TMP", str(tmp_path))
    r = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert message in lines[0]
    assert "Traceback" not in r.stderr


def test_native_usb_reboot_port_disappears_and_returns() -> None:
    """Also drives a VirtualDial running as a subprocess, through its control socket."""
    with VirtualDial(seed=5, native_usb=True, reenumerate_s=0.3, subprocess=True) as dial:
        assert dial.control("reboot").startswith("ok reboot boots=2")
        assert dial.status()["unplugged"] is True
        s: Stream | None = None
        end = time.monotonic() + 10
        while s is None:
            try:
                s = Stream(dial.port)
            except serial.SerialException:
                assert time.monotonic() < end, "the port did not come back"
                dial.status()  # a round trip through the bridge instead of a sleep
        try:
            s.send("INFO")
            s.until(lambda: bool(s.hellos) and bool(s.samples), 10, "the rebooted dial")
            assert [t.boot_id for t in dial.truth()][-1] == s.hellos[0].boot_id
            assert len(dial.truth()) == 2
        finally:
            s.close()


def test_firmware_death_is_reported(tmp_path: Path) -> None:
    """An interrupt handler that allocates kills the virtual dial loudly."""
    fw = tmp_path / "fw"
    shutil.copytree(ROOT / "firmware", fw)
    quad = fw / "dial" / "quad.py"
    src = quad.read_text()
    # Make the pin handler allocate a list: under heap_lock this must raise MemoryError.
    quad.write_text(src.replace("        s = self._s\n        old = s[_STATE]",
                                "        s = self._s\n        _x = [old_ab for old_ab in s]\n"
                                "        old = s[_STATE]", 1))
    assert quad.read_text() != src
    dial = VirtualDial(DialOptions(seed=2), firmware=fw)
    with pytest.raises(SimulatorError, match=r"MemoryError|exited"):
        _use_until_failure(dial)
    assert not dial.link.exists()


def _use_until_failure(dial: VirtualDial) -> None:
    with dial:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            dial.status()  # raises once the bridge has seen the firmware die


def test_a_starved_simulator_catches_up_with_the_samples_the_hardware_would_take(
        tmp_path: Path) -> None:
    """The simulator process stopped for 0.3 s mid-turn (a loaded host starving it): a real
    dial's timer would not have missed a tick, so neither may the virtual dial. Every index
    arrives, each exactly one period after the last by the dial's clock, none flagged as an
    overrun, and the samples taken during the stop show the knob moving through every
    count, not jumping to where it was when the process resumed."""
    script = tmp_path / "ramp.csv"
    script.write_text("t_s,value,button\n0,50,0\n1.0,50,0\n3.0,90,0\n")  # 20 counts/s
    opts = DialOptions(seed=4, script=script, truth=tmp_path / "truth.jsonl")
    with VirtualDial(opts) as dial:
        pid = dial.status()["pid"]
        s = Stream(dial.port)
        try:
            s.send("INFO")
            s.until(lambda: bool(s.hellos) and bool(dial.truth()), 15, "HELLO")
            boot = dial.truth()[0]

            def rating_s(i: int) -> float:
                return (boot.host_ns(s.samples[i][1], near_ns=s.samples[i][3]) - boot.t0_ns) / 1e9

            s.until(lambda: bool(s.samples) and rating_s(s.last_index()) >= 1.6, 15, "the turn")
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(0.3)  # the fault itself: the host gives the simulator no CPU
            finally:
                os.kill(pid, signal.SIGCONT)
            s.until(lambda: rating_s(s.last_index()) >= 2.5, 15, "samples after the stop")
        finally:
            s.close()
    idx = sorted(s.samples)
    assert idx == list(range(idx[0], idx[-1] + 1)), "indices missing"
    times = [s.samples[i][1] for i in idx]
    assert {b - a for a, b in itertools.pairwise(times)} == {1000}
    assert not [i for i in idx if s.samples[i][2] & 2], "overrun flags"
    turn = [i for i in idx if 1.6 <= rating_s(i) <= 2.4]
    counts = [s.samples[i][0] for i in turn]
    assert max(abs(b - a) for a, b in itertools.pairwise(counts)) <= 1
    assert counts[-1] - counts[0] >= 12  # 0.8 s at 20 counts/s, every count passed through


def test_a_second_dial_never_takes_over_a_running_dials_link(tmp_path: Path) -> None:
    """``--link`` naming the port of a dial that is still running is refused in one line;
    it used to replace that link and delete it on exit, with the first dial still running."""
    link = tmp_path / "dialA"
    with VirtualDial(seed=5, link=link):
        target = os.readlink(link)
        r = subprocess.run(_cli("--link", str(link), "--duration", "1"), capture_output=True,
                           text=True, timeout=60, check=False)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and "running dial" in r.stderr, r.stderr
        assert os.readlink(link) == target
    # a link left behind by a dial that is gone (its pty closed) is taken over
    os.symlink("/dev/pts/no-such-pty", link)
    with VirtualDial(seed=6, link=link) as dial:
        assert os.readlink(link) != "/dev/pts/no-such-pty" and dial.port == str(link)


def test_a_running_dials_control_socket_is_not_taken(tmp_path: Path) -> None:
    """A second virtual dial given the first one's --control removed its socket: faults
    could no longer reach the dial still running."""
    with VirtualDial(seed=7, subprocess=True) as dial:
        r = subprocess.run(_cli("--link", str(tmp_path / "d2"), "--control",
                                str(dial.control_path), "--duration", "1"),
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 2, r.stderr
        assert "is the control socket of a running dial" in r.stderr
        assert "boots" in dial.status()  # still reachable


def test_a_burst_of_commands_never_costs_samples_while_the_host_reads() -> None:
    """docs/protocol.md: the dial discards data only when the host does not take it. An
    audit (2026-12-05): 100 commands in one write (INFO, RATE, BATCH, ZERO x 25) while the
    host read all the time: their 150 replies evicted queued SAMPLES frames (a DROP of 6-8
    samples, 43 of 75 ACKs lost). The dial now reads the next command only while its
    transmit queue has room for replies; the rest wait in the port's buffer."""
    from ratedial.wire import Ack

    with VirtualDial(seed=81, subprocess=True) as dial:
        s = Stream(dial.port)
        try:
            s.until(lambda: len(s.samples) > 200, 20, "samples")
            s.ser.write(("INFO\nRATE 500\nBATCH 20\nZERO\n" * 25).encode())
            acks = lambda: sum(isinstance(f, Ack) for _, f in s.frames)  # noqa: E731
            s.until(lambda: acks() == 75, 60, "75 ACKs")
            s.until(lambda: len(s.hellos) >= 75, 30, "the INFO, RATE and BATCH HELLOs")
            first = min(s.samples)
            s.until(lambda: s.last_index() > first + 2000, 30, "samples after the burst")
        finally:
            s.close()
    assert s.drops == [], s.drops
    assert sorted(s.samples) == list(range(first, s.last_index() + 1))  # none missing
