# Runs ON the emulated Pico as main.py (tests/rp2emu/profile.py): where one sample's time
# goes, in emulated microseconds (time.ticks_us runs on the emulated clock). Each stage is
# repeated and the empty loop subtracted. Prints "PROF name us_per_op" lines, then "PROF end".
import asyncio
import gc
import time

from dial import app as dapp
from dial import protocol

try:
    from dial import fast
    print("PROF native", 1 if fast.NATIVE else 0)
    print("FASTWHY", fast.WHY)
except ImportError:
    pass
cfg = dapp.load_config()
hw = dapp.make_hw(cfg)
a = dapp.App(hw, cfg)
s = a.sampler
tu = time.ticks_us
td = time.ticks_diff
N = 200


def per(f, n=N):
    gc.collect()  # a collection inside the timed loop would count as the stage's cost
    t0 = tu()
    for _ in range(n):
        f()
    t1 = tu()
    for _ in range(n):
        pass
    t2 = tu()
    return (td(t1, t0) - td(t2, t1)) / n


def out(name, v):
    print("\nPROF", name, f"{v:.1f}")  # own line: frame bytes written before share it


out("ticks_us", per(hw.ticks_us))
out("counter_value", per(hw.counter.value))
irq = s.irq
out("sampler_irq", per(lambda: irq(None)))
out("call_overhead", per(lambda: None))


# pack: 10 samples into one SAMPLES frame incl. the frame's close (finish + queue)
def settle():
    a.drain()
    while a.q.count:
        a.q.pop()


def timed_pack(k, reps=20):
    tot = 0
    for _ in range(reps):
        settle()
        for _ in range(k):
            irq(None)
        t0 = tu()
        a.pack()
        tot += td(tu(), t0)
    return tot / reps


settle()
irq(None)
a.pack()  # a frame is open now
one = timed_pack(1)
out("pack_1_sample_open_frame", one)
# a whole frame: samples until the open frame closes
settle()
packer = getattr(a, "packer", a)
need = a.batch - getattr(packer, "n", getattr(a, "_n", 0))
out(f"pack_to_close_frame_{need}", timed_pack(need, 1))
settle()
out("pack_frame_of_10", timed_pack(10))
body = getattr(packer, "body", None) or a.body
n = protocol.pack_samples_head(body, 1, 1000, 123456789, 1000, 5, 10)
dst = bytearray(200)
out("seal_crc_75B", per(lambda: protocol.seal(body, n)))
m = protocol.seal(body, n)
out("cobs_79B", per(lambda: protocol.cobs_encode(body, m, dst, 0)))
out("finish_75B", per(lambda: protocol.finish(body, n, dst, 0)))
out("status_frame", per(a._status, 20))
while a.q.count:
    a.q.pop()
out("mem_free", per(hw.mem_free, 5))
wire = memoryview(dst)[:protocol.finish(body, n, dst, 0)]
out("tx_write_81B", per(lambda: hw.tx_write(wire), 20))
if hasattr(hw, "tx_write_at"):
    wv = memoryview(dst)
    nw = len(wire)
    out("tx_write_at_81B", per(lambda: hw.tx_write_at(wv, 0, nw), 20))


def frame_and_write():
    for _ in range(10):
        irq(None)
    a.pack()
    a.write()


settle()
out("frame_of_10_pack_and_write", per(frame_and_write, 20) - 10 * per(lambda: irq(None)))
settle()
gc.collect()
g0 = gc.mem_free()
for _ in range(20):
    frame_and_write()
out("alloc_bytes_per_frame", (g0 - gc.mem_free()) / 20)


def job():
    for _ in range(10):
        irq(None)
    a.frame_job()


class _Wake:  # the frame job sets wake_at, so the sampler calls wake.set(): nothing to do
    def set(self):
        pass


if hasattr(a, "frame_job"):
    s.wake = _Wake()
    a.started = True  # the job does nothing for a stopped app
    a.housekeeping()  # STATUS and HELLO now: not due again within the measurement
    settle()
    out("frame_job_10", per(job, 20) - 10 * per(lambda: irq(None)))
try:
    from micropython import schedule

    def noop(_):
        pass

    out("schedule_and_run_empty_job", per(lambda: schedule(noop, None)))
except ImportError:
    pass
try:
    from dial.aio import IrqFlag
except ImportError:
    IrqFlag = None


async def rounds():
    t0 = tu()
    for _ in range(100):
        await asyncio.sleep_ms(0)
    out("asyncio_round_sleep0", td(tu(), t0) / 100)
    flags = [("threadsafeflag", asyncio.ThreadSafeFlag())]
    if IrqFlag is not None:
        flags.append(("irqflag", IrqFlag()))
    for name, flag in flags:
        async def waiter(flag=flag):
            for _ in range(100):
                await flag.wait()
        task = asyncio.create_task(waiter())
        pin = asyncio.create_task(flag.pin()) if hasattr(flag, "pin") else None
        await asyncio.sleep_ms(0)
        await asyncio.sleep_ms(0)
        t0 = tu()
        for _ in range(100):
            flag.set()
            await asyncio.sleep_ms(0)
        out(name + "_wake_plus_round", td(tu(), t0) / 100)
        task.cancel()
        if pin is not None:
            pin.cancel()
        await asyncio.sleep_ms(0)


asyncio.run(rounds())
hw.counter.deinit()
print("PROF end")
