"""Entry point of the virtual dial: ``micropython firmware/sim/run.py key=value ...``.

Builds a SimHW from the arguments and runs the real firmware, ``dial.app.run(hw, cfg)``,
with ``cfg`` = ``boards/virtual.py`` CONFIG plus overrides. stdin/stdout are the link (the
host side makes them non-blocking pipes); stderr carries one ``sim: boot {json}`` line and
any fault report. The host package ``ratedial.virtual`` builds the arguments:

  uid=HEX           board unique id (required)
  seed=N            seed of the rater and the bounce (default 1)
  script=PATH       knot file, one ``t_us x_mc button`` per line (default: random walk)
  range_mc=N        random walk: knob range +-N milli-counts (default 50000 = 0..100 at 1
                    count per point)
  t0=US             rating time 0 in CLOCK_MONOTONIC µs (absent on the first boot: now)
  drift_ppb=N wrap_bits=N tick_start=N      device clock, see sim/hw.py
  rate_hz=N batch=N debounce_ms=N           firmware config overrides
  truth=PATH        append the boot line to this file
  ctl=PATH          control pipe (``button MS`` lines)
  spin_us=N         busy-wait the last N µs before an interrupt (default 0)
  path=DIR[:DIR]    extra module directories, searched before firmware/
"""

import json
import sys


def _args(argv):
    out = {}
    for a in argv:
        k, sep, v = a.partition("=")
        if not sep:
            raise SystemExit("run.py: expected key=value, got %r" % a)
        out[k] = v
    return out


def _load_knots(path):
    knots = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts:
                knots.append((int(parts[0]), int(parts[1]), int(parts[2])))
    if not knots or knots[0][0] != 0:
        raise SystemExit("run.py: script must start at t=0")
    return knots


def main():
    args = _args(sys.argv[1:])
    here = sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else "."
    root = here.rsplit("/", 1)[0] if "/" in here else ".."
    sys.path.insert(0, root)
    for p in reversed(args.get("path", "").split(":")):
        if p:
            sys.path.insert(0, p)

    import micropython

    if hasattr(micropython, "alloc_emergency_exception_buf"):
        micropython.alloc_emergency_exception_buf(100)

    from sim import rater as rmod
    from sim.hw import SimHW

    seed = int(args.get("seed", "1"))
    if "script" in args:
        knots = _load_knots(args["script"])

        def make_knots():
            return rmod.script_knots(knots)

    else:
        range_mc = int(args.get("range_mc", "50000"))

        def make_knots():
            return rmod.walk_knots(seed, range_mc)

    def make_rater(r0):
        return rmod.Rater(make_knots, seed, r0)

    from boards.virtual import CONFIG

    cfg = dict(CONFIG)
    for k in ("rate_hz", "batch", "debounce_ms"):
        if k in args:
            cfg[k] = int(args[k])

    hw = SimHW(
        uid=bytes.fromhex(args["uid"]),
        make_rater=make_rater,
        t0_us=int(args["t0"]) if "t0" in args else None,
        tick_bits=int(args.get("wrap_bits", "30")),
        tick_start=int(args.get("tick_start", "0")),
        drift_ppb=int(args.get("drift_ppb", "0")),
        spin_us=int(args.get("spin_us", "0")),
        button=cfg.get("pin_button", 0) is not None,
        ctl_path=args.get("ctl"),
    )
    info = hw.boot_info()
    line = json.dumps(info)
    sys.stderr.write("sim: boot " + line + "\n")
    if "truth" in args:
        with open(args["truth"], "a") as f:
            f.write(line + "\n")

    from dial import app

    hw.start()
    try:
        app.run(hw, cfg)
    finally:
        hw.stop()


main()
