"""More of the firmware on the emulated Pico, each on a board of its own: the 30-bit tick wrap,
the pin-IRQ counter, ``ratedial devices`` / ``ratedial run`` against the emulated pty, and
the emulator limit that the harness's PIO stepping fixes. See tests/test_rp2emu.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemonrun import assert_exact_accounting, epoch_indices, finish, query, start_daemon
from ratedial.wire import Hello, Samples, Status
from rp2emu import board as rp2board
from rp2emu import truth
from rp2emu.link import Link

_SKIP = rp2board.skip_reason()
pytestmark = [pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""), pytest.mark.rp2emu]

WALL_PER_EMU_S = 40.0
PIN_A, PIN_B, PIN_BUTTON = 2, 3, 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rp2emu")


@pytest.fixture
def boot(cache: Path) -> Iterator[object]:
    boards: list[rp2board.EmuPico] = []
    links: list[Link] = []

    def start(files: dict[str, bytes] | None = None, *, link: bool = True,
              **kw: object) -> tuple[rp2board.EmuPico, Link | None]:
        image = rp2board.make_image(files or rp2board.firmware_files("pico"), cache)
        emu = rp2board.EmuPico(image=image, high=(PIN_A, PIN_B, PIN_BUTTON), **kw)  # type: ignore[arg-type]
        boards.append(emu)
        lk = Link(emu.port) if link else None
        if lk is not None:
            links.append(lk)
        return emu, lk

    yield start
    for lk in links:
        lk.close()
    for emu in boards:
        emu.close()


def _samples(link: Link) -> list[Samples]:
    return link.since(0, Samples)


def test_tick_wrap_crossed_on_the_real_port(boot) -> None:  # type: ignore[no-untyped-def]
    """The board boots 1.5 s before time.ticks_us wraps at 2**30 us (the emulated clock starts
    late): device time runs on past 2**30 as 64-bit, samples stay contiguous and on the grid."""
    wrap = 1 << 30
    _emu, link = boot(start_us=wrap - 1_500_000)
    hello = link.wait_for(lambda fs: next((f for f in fs if isinstance(f, Hello)), None),
                          30 * WALL_PER_EMU_S, "HELLO")
    assert wrap - 1_500_000 < hello.time_us < wrap
    link.wait_device_time(wrap + 1_000_000, 4 * WALL_PER_EMU_S)
    frames = _samples(link)
    times = [t for f in frames for t in f.times_us]
    idx = [i for f in frames for i in f.indices]
    assert times[0] < wrap < times[-1]
    assert idx == list(range(idx[0], idx[0] + len(idx)))
    late = [t - times[0] - (i - idx[0]) * 1000 for i, t in zip(idx, times, strict=True)]
    assert max(late) <= 60 and min(late) >= -60, (min(late), max(late))
    status = [f for f in link.since(0) if isinstance(f, Status) and f.time_us > wrap]
    assert status and status[-1].overruns == 0


def test_irq_backend_counts_on_the_real_port(boot) -> None:  # type: ignore[no-untyped-def]
    """The pin-IRQ fallback (backend "irq") on the rp2 port: hard pin interrupts in bytecode
    on a Cortex-M0+. The PIO counts every toggle; the IRQ counter may miss toggles inside a
    bounce burst (its handler takes longer than the burst's spacing), but the bursts end on
    the level they started from, so after each burst settles the count must be exact."""
    src = rp2board.firmware_files("pico")
    cfg = src["dial_board.py"].decode().replace('"backend": "pio"', '"backend": "irq"')
    assert '"backend": "irq"' in cfg
    emu, link = boot({**src, "dial_board.py": cfg.encode()})
    hello = link.wait_for(lambda fs: next((f for f in fs if isinstance(f, Hello)), None),
                          30 * WALL_PER_EMU_S, "HELLO")
    assert hello.backend == "irq"
    base = link.wait_for(lambda fs: [f for f in fs if isinstance(f, Samples)],
                         2 * WALL_PER_EMU_S, "samples")[-1].counts[-1]
    start, events = truth.scenario(["slow_bounce"])
    # slow_bounce's steps are 12-62 ms apart with bounce bursts of up to 2 ms: a human turn
    wave = truth.pin_changes(start, events, pin_a=PIN_A, pin_b=PIN_B)
    t0 = emu.wave(wave.changes, delay_ns=20_000_000)
    done = emu.wait_event("wave_done", (wave.end_ns / 1e9 + 1) * WALL_PER_EMU_S)
    link.wait_device_time(done["nanos"] // 1000 + 50_000, 2 * WALL_PER_EMU_S)
    frames = _samples(link)
    compared, bad = truth.check_settled(frames, wave, t0, base)
    assert compared > 1000 and not bad, (compared, bad[:5])
    assert frames[-1].counts[-1] - base == wave.final
    status = [f for f in link.since(0) if isinstance(f, Status)]
    assert status[-1].overruns == 0


def test_ratedial_devices_and_run_record_the_emulated_pico(boot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``ratedial devices`` finds the emulated Pico on its pty; ``ratedial run --port`` records
    it with exact accounting. Its clock runs ~8x slow against the host (emulation speed)."""
    emu, _ = boot(link=False)
    deadline = time.monotonic() + 30 * WALL_PER_EMU_S
    out = ""
    while time.monotonic() < deadline:  # the board needs ~0.3 emulated s to boot
        proc = subprocess.run([sys.executable, "-m", "ratedial", "devices", "--port", emu.port,
                               "--timeout", "10"], capture_output=True, text=True, timeout=120,
                              check=False)
        out = proc.stdout + proc.stderr
        if "pico" in out:
            break
    assert "pico" in out and "0.1.0" in out, out
    path = tmp_path / "emu.ratedial"
    daemon = start_daemon("--port", emu.port, "--broker", "none", "--record", str(path),
                          "--duration", "25")
    out, _err = finish(daemon, timeout=300)
    summary = json.loads(out.strip().splitlines()[-1])
    per_dial = epoch_indices(path)
    assert len(per_dial) == 1
    (idx,) = per_dial.values()
    assert len(idx) >= 1000, len(idx)  # ~25 s of wall time is a few emulated seconds
    assert_exact_accounting(path)
    assert query(path, "SELECT count(*) FROM gaps")[0][0] == 0
    assert sum(d["received"] for d in summary["dials"]) == len(idx)


def test_rp2040js_own_pio_scheduling_is_not_enough(boot) -> None:  # type: ignore[no-untyped-def]
    """Documents the emulator limit the harness fixes: with rp2040js's own PIO scheduling
    (state machines stepped 1,000 times per setTimeout apart from the CPU, clock dividers
    ignored) the same firmware does not produce its 1 kHz stream: the CPU waits in the
    sampling interrupt for the counter's FIFO, which the PIO fills only between CPU chunks."""
    emu, link = boot(pio="builtin")
    deadline = time.monotonic() + 30 * WALL_PER_EMU_S
    while emu.stats()["nanos"] < 2_500_000_000 and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the emulated clock, not standing in for a condition
    st = emu.stats()
    assert st["nanos"] >= 2_500_000_000
    got = sum(len(f) for f in _samples(link))
    # the faithful harness gets ~2,200 samples by this emulated time (boot takes ~0.25 s)
    assert got < 220, got


_HEAP_PROBE = b'''
import rp2, time
from array import array

@rp2.asm_pio()
def tick():
    irq(rel(0))
    set(x, 31)
    label("d")
    jmp(x_dec, "d")

res = array("i", [0, 0])

def alloc(_sm):
    res[0] += 1
    l = [1, 2, 3]  # allocates: must raise MemoryError under the hard IRQ's heap lock
    res[1] += len(l)

sm = rp2.StateMachine(4, tick, freq=2000)
sm.irq(alloc, hard=True)
sm.active(1)
time.sleep_ms(50)
sm.active(0)
print("PROBE", res[0], res[1])
'''


def test_hard_irq_runs_with_the_heap_locked(boot) -> None:  # type: ignore[no-untyped-def]
    """The proof behind "no allocation in the interrupt path": on this port a HARD PIO IRQ
    handler that allocates fails at once (MicroPython locks the heap around hard handlers and
    disables a handler that raises), so the dial's sampler, which ran for seconds without an
    overrun in the other tests under the same kind of IRQ, allocates nothing."""
    files = {**rp2board.firmware_files("pico"), "main.py": _HEAP_PROBE}
    emu, _ = boot(files, link=False)
    import serial

    ser = serial.Serial(emu.port, timeout=0.5)
    try:
        text = b""
        deadline = time.monotonic() + 30 * WALL_PER_EMU_S
        while b"PROBE" not in text or not text.rstrip().endswith(b">>>"):
            assert time.monotonic() < deadline, text
            text += ser.read(4096)
    finally:
        ser.close()
    out = text.decode(errors="replace")
    assert "MemoryError" in out, out
    ran, allocated = (int(x) for x in out.split("PROBE", 1)[1].split()[:2])
    assert ran == 1 and allocated == 0, out  # ran once, failed at the allocation, disabled


def _u16(raw12: int) -> int:
    """MicroPython rp2's ADC.read_u16 of a 12-bit conversion result."""
    return (raw12 << 4) | (raw12 >> 8)


def test_pot_variant_reads_the_emulated_adc(boot) -> None:  # type: ignore[no-untyped-def]
    """boards/pico_pot.py on the real port: the potentiometer through the RP2040 ADC (the
    emulator's channel 0 = GP26). At rest the count settles to the exact position in
    read_u16 units, relative to the position at start."""
    emu, link = boot(rp2board.firmware_files("pico_pot"))
    hello = link.wait_for(lambda fs: next((f for f in fs if isinstance(f, Hello)), None),
                          30 * WALL_PER_EMU_S, "HELLO")
    assert (hello.board, hello.backend) == ("pico-pot", "adc")
    start = link.wait_for(lambda fs: [f for f in fs if isinstance(f, Samples)],
                          2 * WALL_PER_EMU_S, "samples")[-1].counts[-1]
    assert start == 0  # the pin read 0 at start: the position is counted from there
    for raw in (2048, 3001, 17):
        t = emu.call("adc", channel=0, value=raw)["nanos"] // 1000
        link.wait_device_time(t + 300_000, 2 * WALL_PER_EMU_S)  # > 64 quiet samples + filter
        last = [f for f in link.since(0, Samples) if f.times_us[0] > t + 200_000]
        assert last and {c for f in last for c in f.counts} == {_u16(raw)}, (raw, last[-1])


def _flash(port: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", "flash", "--port", port, *args],
                          capture_output=True, text=True, timeout=600, check=False)


def test_ratedial_flash_installs_and_boots_on_the_emulated_pico(boot) -> None:  # type: ignore[no-untyped-def]
    """``ratedial flash`` against a Pico with MicroPython and an empty filesystem: detection,
    a refusal, compile, the copy (flash writes are performed by the harness at the boot ROM's
    erase/program functions, rp2040js has none), the restart from what was written, and a
    second run that writes nothing."""
    emu, _ = boot({"README.txt": b"a Pico with MicroPython and nothing else\n"}, link=False)
    refused = _flash(emu.port, "--board", "esp32_devkitc")
    assert refused.returncode != 0
    assert "esp32" in refused.stdout + refused.stderr and "Traceback" not in refused.stderr
    first = _flash(emu.port, "--board", "pico", "--timeout", "120")
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    assert "MicroPython 1.28.0 on rp2" in out and ".mpy v6.3" in out, out
    assert "0 unchanged" in out and "board=pico firmware=0.1.0 backend=pio" in out, out
    st = emu.stats()
    assert st["flash_programmed"] > 20_000 and st["flash_erased"] > 0
    # The board now runs the flashed firmware: its stream decodes.
    link = Link(emu.port)
    try:
        link.wait_for(lambda fs: sum(isinstance(f, Samples) for f in fs) >= 20,
                      3 * WALL_PER_EMU_S, "samples from the flashed firmware")
    finally:
        link.close()
    again = _flash(emu.port, "--board", "pico", "--timeout", "120")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to write, 16 unchanged" in again.stdout, again.stdout
