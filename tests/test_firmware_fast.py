"""dial.fast: the native (viper) hot paths equal their bytecode twins, on the unix port.

Each check runs under the real MicroPython unix port, where dial.fast compiles its viper
source with the x64 native emitter (the rp2 port compiles the same source for Thumb on the
emulated Pico: tests/test_rp2emu.py). The native code must produce exactly the bytes and
state of the bytecode it replaces, for the same inputs.
"""

from __future__ import annotations

from mpy import run_mpy

_FINISH = r"""
from dial import fast, protocol
assert fast.NATIVE, fast.WHY
n_cases = 0
for ln in (1, 2, 5, 75, 252, 253, 254, 255, 300, 507, 508, 509, 1000):
    for pat in range(4):
        body = bytearray(ln + 4)
        for i in range(ln):
            if pat == 0:
                body[i] = 0 if i % 5 == 0 else 3
            elif pat == 1:
                body[i] = (i * 7 + 1) & 0xFF
            elif pat == 2:
                body[i] = 0
            else:
                body[i] = 1 + (i % 255)
        b2 = bytearray(body)
        d1 = bytearray(ln + 20)
        d2 = bytearray(ln + 20)
        e1 = protocol.finish_py(body, ln, d1, 3)
        e2 = protocol.finish(b2, ln, d2, 3)
        assert e1 == e2 and d1 == d2 and body == b2, (ln, pat, e1, e2)
        n_cases += 1
print("OK", n_cases)
"""


def test_native_finish_equals_bytecode() -> None:
    """CRC-32 + COBS + delimiter: same wire bytes as the reference for lengths around the
    254-byte COBS block and all-zero / zero-free bodies."""
    out = run_mpy(_FINISH)
    assert out.split() == ["OK", str(13 * 4)], out


_SAMPLER = r"""
import micropython
from dial import fast, sampler
from fakehw import FakeHW
assert fast.NATIVE, fast.WHY


def run(native, seed):
    hw = FakeHW(t0=(1 << 30) - 7000)
    s = sampler.Sampler(hw, 64, 8)
    if not native:
        s.irq = s._irq
    s.configure(1000, 3)
    x = seed
    for k in range(500):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        late = (x >> 8) % 900 if k % 37 else 1700  # now and then an overrun
        hw.advance(1000 + late - (x >> 20) % 400)
        hw.counter.pos = ((x >> 4) % 2001) - 1000  # negative and positive counts
        hw.counter.err = k // 50
        hw.button.pressed = 1 if (x >> 3) & 1 or (k // 40) & 1 else 0
        micropython.heap_lock()
        s.irq(None)
        micropython.heap_unlock()
    return (list(s.st), list(s.tick), list(s.count), list(s.flags), list(s.ev_state),
            list(s.ev_idx), list(s.ev_tick), list(s.ev_edge))


for seed in (1, 2, 3):
    a = run(True, seed)
    b = run(False, seed)
    assert a == b, seed
    assert a[0][4] > 0 and a[0][12] > 0  # overruns and button events were exercised
print("OK")
"""


def test_native_sampler_equals_bytecode_twin() -> None:
    """The native interrupt handler and ``Sampler._irq`` leave identical rings, event rings
    and state after 500 samples with jitter, overruns, negative counts, counter errors and a
    bouncing button, under the heap lock."""
    assert run_mpy(_SAMPLER).split() == ["OK"]


_PACK = r"""
from dial import fast
from dial.app import App
from fakehw import FakeHW
assert fast.NATIVE, fast.WHY

CFG = {"rate_hz": 1000, "batch": 10, "debounce_ms": 5, "queue_frames": 64}


def run(native):
    hw = FakeHW()
    a = App(hw, dict(CFG))
    if not native:
        a.packer.pack_run = None
    a.start()
    x = 7
    pos = 0
    for k in range(3000):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        pos += ((x >> 9) % 7) - 3 if k % 400 else 300  # now and then a jump past i8
        hw.counter.pos = pos
        hw.step(1, 40000 if k == 1500 else (x >> 12) % 30)  # one jitter past i16
        if k % 13 == 0:
            a.step()
    a.step()
    return bytes(hw.out)


a = run(True)
b = run(False)
assert a == b and len(a) > 10000, (len(a), len(b))
print("OK", len(a))
"""


def test_native_pack_run_equals_bytecode_packer() -> None:
    """The packer with dial.fast.pack_run writes byte for byte the stream the bytecode
    packer writes, across records that do not fit (dcount past i8, jitter past i16) and
    frames of every fill level."""
    out = run_mpy(_PACK).split()
    assert out[0] == "OK" and int(out[1]) > 10000, out


_TIME = """
import struct
from dial import clock, fast
assert fast.NATIVE, fast.WHY
b1 = bytearray(20)
b2 = bytearray(20)
for t in (0, 1, (1 << 29) - 1, 1 << 29, (1 << 30) + 12345, (1 << 32) + 7, (1 << 40) + 99,
          (1 << 62) + 3, (1 << 64) - 1):
    hi, lo = t >> 29, t & ((1 << 29) - 1)
    clock.put_time(b1, 3, hi, lo)
    fast.put_time(b2, 3, hi, lo)
    assert struct.unpack_from("<Q", b1, 3)[0] == t, (t, bytes(b1))
    assert b1 == b2, (t, bytes(b1), bytes(b2))
print("OK")
"""


def test_put_time_writes_64_bit_times_from_two_small_ints() -> None:
    """dial.clock writes 64-bit device times from hi * 2**29 + lo (two small ints, no bigint
    on 32-bit ports); the native twin writes the same bytes, up to 2**64 - 1."""
    assert run_mpy(_TIME).split() == ["OK"]
