"""The dial core under random interleavings of honest and hostile input (hypothesis).

A rule-based state machine drives the daemon's frame path (``Daemon._frames`` with the
real decoder, cores, clock models and recorder; tests/hostile.py) with an honest dial's
frames, reboots with and without their HELLO, a second dial taking the port, replays,
frames with valid CRC and arbitrary fields, damaged and lost frames, garbage, PING answers
with arbitrary times and pauses, delivered in reads split at arbitrary points. A twin daemon
gets the same bytes in one read each time, with the dial's answers to INFO at the end of it
(the dial answered after the frames that followed).

Invariants, checked after every delivery: no exception escapes; per epoch, every index
is recorded once or in exactly one gap; every honest sample sent after its boot's HELLO is
recorded; the twin recorded the same samples and the same gaps with the same reasons (read
boundaries, and when a HELLO places the frames held for it, change nothing); recorded host
times never decrease within an epoch; every sample belongs to an epoch a HELLO of its uid
introduced, and none is of another boot than its epoch's (but for a boot's first frame:
docs/protocol.md, what cannot be told apart).

``make test`` runs a bounded number of examples; ``make fuzz`` runs it long
(``RATEDIAL_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hostile import PORT, SimDial, World, accounted
from ratedial.daemon.run import SETTLE_S
from ratedial.outputs import ArrivalOut, EpochOut, GapOut, SamplesOut
from ratedial.wire import (
    Ack,
    Button,
    Drop,
    Error,
    Hello,
    Samples,
    Status,
    Sync,
    encode_frame,
)

UIDS = (bytes.fromhex("a1a2a3a4a5a6a7a8"), bytes.fromhex("b1b2b3b4b5b6b7b8"))
U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)
U8 = st.integers(0, 255)
EXAMPLES = int(os.environ.get("RATEDIAL_FUZZ_EXAMPLES", "60"))


def _near(x: int) -> st.SearchStrategy[int]:
    """Values near ``x`` and anywhere: extremes and the edges a check might have."""
    return st.one_of(st.integers(max(0, x - 3000), x + 3000), U64,
                     st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**53, 2**63, 2**64 - 1]))


class DialStreams(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.split = World(self.tmp / "split.ratedial")
        self.whole = World(self.tmp / "whole.ratedial")
        self.dials = [SimDial(UIDS[0], boot=1, drift_ppm=300),
                      SimDial(UIDS[1], boot=2, t0_us=50_000_000, drift_ppm=-200)]
        self.on = 0
        self.now_ns = 10**12
        self.pending = bytearray()
        # per delivery: the dial's answers to INFO, and where they are in the stream; the
        # whole daemon gets them at the end instead (the dial answered after those frames)
        self.answers: list[Hello] = []
        self.cuts: list[tuple[int, int]] = []
        self.boots = 2
        self.announced: set[tuple[bytes, int]] = set()
        self.owed: dict[tuple[str, int], set[int]] = {}
        self.sent_bytes: list[bytes] = []
        self.streamed: set[tuple[bytes, int]] = set()  # boots with an honest frame sent
        # every honest sample made, sent or not: (uid, boot) -> index -> device time
        self.made: dict[tuple[str, int], dict[int, int]] = {}

    @property
    def dial(self) -> SimDial:
        return self.dials[self.on]

    def _emit(self, data: bytes) -> None:
        self.pending += data

    def _catch_up(self) -> None:
        """The dial samples whether or not anyone listens: skip what it took meanwhile."""
        d = self.dial
        due = d.t0_us + int((self.now_ns - d.host0_ns) / 1000 * (1 + d.drift_ppm * 1e-6))
        skipped = (due - d.t0_us) // d.period_us - d.batch - d.next_index
        if skipped > 0:  # its frames were made, and numbered, and lost
            d.next_index += skipped
            d.seq += -(-skipped // d.batch)

    def _honest_frame(self) -> Samples:
        self._catch_up()
        d = self.dial
        s = d.frame()
        self.now_ns = max(self.now_ns, d.arrival_ns(s))
        self.made.setdefault((d.uid.hex(), d.boot), {}).update(zip(s.indices, s.times_us,
                                                                   strict=True))
        return s

    @initialize()
    def start(self) -> None:
        self._hello()

    def _hello(self) -> None:
        self._catch_up()
        self._emit(encode_frame(self.dial.hello()))
        self.announced = {(self.dial.uid, self.dial.boot)}

    # --- honest input -------------------------------------------------------------------

    @rule(n=st.integers(1, 30))
    def frames(self, n: int) -> None:
        for _ in range(n):
            s = self._honest_frame()
            data = encode_frame(s)
            self._emit(data)
            self.sent_bytes.append(data)
            if (self.dial.uid, self.dial.boot) in self.announced:
                key = (self.dial.uid.hex(), self.dial.boot)
                self.owed.setdefault(key, set()).update(s.indices)
                self.streamed.add((self.dial.uid, self.dial.boot))

    @rule()
    def hello(self) -> None:
        self._hello()

    @precondition(lambda self: (self.dial.uid, self.dial.boot) in self.announced)
    @rule()
    def answer_info(self) -> None:
        """The dial answers INFO with a HELLO of its boot (one the daemon was told of: a new
        boot's HELLO before its first frame or after it is another stream, protocol.md): the
        split daemon gets it here, the whole daemon at the end of the delivery (with the
        device time of then), as when the frames after it came in one read before the dial
        answered. What the held frames make of the gap after them must not differ (an
        audit found `rejected` against `link`)."""
        self._catch_up()
        h = self.dial.hello()
        data = encode_frame(h)
        self.cuts.append((len(self.pending), len(self.pending) + len(data)))
        self.answers.append(h)
        self._emit(data)

    def _answered(self) -> None:
        """Before the port's boot changes, the answers to INFO so far are delivered (the dial
        answered before it rebooted or another dial took the port)."""
        if self.cuts:
            self.deliver(splits=[])

    @precondition(lambda self: self.now_ns - self.dial.host0_ns > 1_000_000_000)
    @rule(with_hello=st.booleans(), later_base=st.booleans())
    def reboot(self, with_hello: bool, later_base: bool) -> None:
        """A soft reboot (device time goes on from the tick counter) or a hard one (it
        starts again near 0.3 s, some ms apart from boot to boot: two boots whose device
        times start within a sample period of each other cannot be told apart, protocol.md);
        MicroPython takes about a second to start."""
        self._answered()
        self.boots += 1
        self.sent_bytes = []
        d = self.dial
        t0 = d.t_us(d.next_index) + 1_000_000 if later_base else \
            300_000 + 1_237 * (self.boots % 30)
        self.now_ns += 1_000_000_000
        d.reboot(self.boots, t0_us=t0, at_host_ns=self.now_ns)
        self.announced = set()
        if with_hello:
            self._hello()

    @rule()
    def other_dial_takes_the_port(self) -> None:
        self._answered()
        self.on = 1 - self.on
        self.sent_bytes = []
        self._hello()

    @rule(seconds=st.floats(0.5, 9.0))
    def pause(self, seconds: float) -> None:
        """Nothing arrives for a while (the dial's frames in that time are lost)."""
        self.deliver(splits=[])
        self.now_ns += int(seconds * 1e9)
        for w in (self.split, self.whole):
            w.tick(self.now_ns)

    # --- losses and damage --------------------------------------------------------------

    @rule()
    def lose(self) -> None:
        self._honest_frame()

    @rule(pos=st.integers(0, 200), bit=st.integers(0, 7))
    def damage(self, pos: int, bit: int) -> None:
        data = bytearray(encode_frame(self._honest_frame()))
        pos %= len(data) - 1  # not the delimiter: a damaged frame, not two
        data[pos] ^= 1 << bit
        if data[pos] == 0:
            data[pos] = 0x55
        self._emit(bytes(data))

    @rule(junk=st.binary(max_size=64))
    def garbage(self, junk: bytes) -> None:
        self._emit(junk + b"\x00")  # ends at a delimiter: garbage, not a damaged next frame

    @precondition(lambda self: bool(self.sent_bytes))
    @rule(k=st.integers(0, 10**6))
    def replay(self, k: int) -> None:
        """A frame of the current boot again, from any time before (docs/protocol.md: a
        frame of an *earlier* boot replayed before the first frame of a new one is taken as
        that boot's first frame; nothing on the wire tells them apart)."""
        self._emit(self.sent_bytes[k % len(self.sent_bytes)])

    # --- hostile frames with a valid CRC ------------------------------------------------

    @rule(data=st.data())
    def hostile_samples(self, data: st.DataObject) -> None:
        d = self.dial
        n = data.draw(st.integers(1, 12))
        first = data.draw(_near(d.next_index))
        t = data.draw(_near(d.t_us(d.next_index)))
        period = data.draw(st.one_of(st.just(d.period_us), U32))
        counts = data.draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1,
                                    max_size=1)) * n
        flags = tuple(data.draw(st.lists(U8, min_size=n, max_size=n)))
        times = tuple(t + k * period for k in range(n))
        # A frame an honest dial could have sent next (one holding the index the dial is
        # about to send, within a period of its device time) is not hostile, it is
        # indistinguishable: push those out of reach (they test nothing but the ordering of
        # two honest dials). Frames ahead of the dial or behind it, or holding its next
        # index at another time, are the impostors pending frames withstand (protocol.md).
        # A boot's first frame is taken in at once: before the dial's first frame of this
        # boot, any frame near the dial's indices and time is out of reach as well.
        if (d.uid, d.boot) not in self.streamed:
            honest = range(max(0, d.next_index - 5000), d.next_index + 20_000)
            if first < honest.stop and first + n > honest.start and \
                    abs(t - d.t_us(first)) < 20_000_000:
                times = tuple(x + 2**40 for x in times)
        elif first <= d.next_index < first + n and \
                abs(times[d.next_index - first] - d.t_us(d.next_index)) < d.period_us:
            times = tuple(x + 2**40 for x in times)
        if first + n >= 2**64 or times[-1] >= 2**64:
            return
        s = Samples(seq=data.draw(U16), first_index=first, period_us=period % 2**32,
                    counts=tuple(counts), times_us=times, flags=flags)
        with contextlib.suppress(ValueError, OverflowError):  # jitter or dcount too large
            self._emit(encode_frame(s))

    @rule(data=st.data())
    def hostile_other(self, data: st.DataObject) -> None:
        d = self.dial
        t = d.t_us(d.next_index)
        kind = data.draw(st.sampled_from(["sync", "button", "ack", "error", "drop", "status",
                                          "hello"]))
        seq = data.draw(U16)
        f: object
        if kind == "sync":
            token = data.draw(U32)
            if data.draw(st.booleans()):  # as an answer to a PING that is outstanding
                sent = self.now_ns - data.draw(st.integers(0, 10**9))
                for w in (self.split, self.whole):
                    w.daemon._pings[(PORT, token)] = sent
            f = Sync(seq=seq, token=token, t_rx_us=data.draw(_near(t)),
                     t_tx_us=data.draw(_near(t)))
        elif kind == "button":
            f = Button(seq=seq, pressed=data.draw(st.booleans()),
                       index=data.draw(_near(d.next_index)), t_us=data.draw(_near(t)),
                       t_edge_us=data.draw(_near(t)))
        elif kind == "ack":
            f = Ack(seq=seq, command=data.draw(U8), index=data.draw(_near(d.next_index)),
                    value=data.draw(st.integers(-(2**31), 2**31 - 1)))
        elif kind == "error":
            f = Error(seq=seq, code=data.draw(U8), text=data.draw(st.text(max_size=80)))
        elif kind == "drop":
            f = Drop(seq=seq, first_index=data.draw(_near(d.next_index)),
                     n_samples=data.draw(U32), n_frames=data.draw(U32))
        elif kind == "status":
            f = Status(seq, data.draw(_near(t)), data.draw(U64), *(data.draw(U32)
                       for _ in range(5)), data.draw(U16), data.draw(U16))
        else:
            self._answered()
            uid = data.draw(st.one_of(st.sampled_from(UIDS), st.binary(max_size=40)))
            f = Hello(seq=seq, boot_id=data.draw(U32), time_us=data.draw(_near(t)),
                      period_us=data.draw(st.one_of(st.just(1000), U32)),
                      rate_hz=data.draw(st.one_of(st.just(1000), U16)),
                      batch=data.draw(U16), tick_bits=data.draw(U8), flags=data.draw(U8),
                      debounce_ms=data.draw(U16), uid=uid,
                      board=data.draw(st.text(max_size=40)), firmware="0.1.0",
                      backend=data.draw(st.sampled_from(["irq", "pio", "adc", "\x00"])))
            self.announced = set()  # honest frames now follow another dial's word
        with contextlib.suppress(ValueError, OverflowError, struct.error):
            self._emit(encode_frame(f))  # type: ignore[arg-type]  # (what the wire can carry)

    # --- delivery and invariants --------------------------------------------------------

    @rule(splits=st.lists(st.integers(1, 10**6), max_size=8))
    def deliver(self, splits: list[int]) -> None:
        data, self.pending = bytes(self.pending), bytearray()
        answers, self.answers = self.answers, []
        cuts, self.cuts = self.cuts, []
        if not data:
            return
        whole = bytearray(data)
        for a, b in reversed(cuts):
            del whole[a:b]
        now = self.dial.t_us(self.dial.next_index)
        for h in answers:
            whole += encode_frame(dataclasses.replace(h, time_us=max(h.time_us, now)))
        self.split.send(data, self.now_ns, splits=tuple(c % len(data) for c in splits))
        self.whole.send(bytes(whole), self.now_ns)
        self.check()

    def check(self, *, closed: bool = False) -> None:
        """The invariants; until the run is ``closed``, an honest frame may still wait for
        the next frame to confirm it (docs/protocol.md: a boot's first frame, or one that
        skips indices)."""
        a, b = _outcome(self.split), _outcome(self.whole)
        assert a == b, "the outcome depends on read boundaries"
        recorded, gaps, hosts, epochs = a
        unsettled = _unsettled(self.whole)
        assert unsettled == _unsettled(self.split)
        later = _unsettled_gaps(self.whole)
        assert later == _unsettled_gaps(self.split)
        for key, pending_gaps in later.items():
            gaps = {**gaps, key: gaps.get(key, []) + pending_gaps}
        for key in set(recorded) | set(gaps):
            assert key in epochs, f"output for {key} without a HELLO of that uid and boot"
            spans = sorted([(i, i + 1, "sample") for i in recorded.get(key, [])]
                           + [(i, i + 1, "unsettled") for i in unsettled.get(key, ())]
                           + gaps.get(key, []))
            for (_, end, _), (first, _, what) in itertools.pairwise(spans):
                assert first == end, f"{key}: {what} at {first} after {end} (overlap or hole)"
            h = [hosts[key][i] for i in sorted(hosts.get(key, {}))]
            assert all(y >= x for x, y in itertools.pairwise(h)), \
                f"{key}: host times went backwards"
        for o in self.whole.outs:  # the arrival bounds every time (docs/timing.md)
            if isinstance(o, ArrivalOut) and o.last_index in hosts.get((o.uid, o.boot_id), {}):
                assert hosts[(o.uid, o.boot_id)][o.last_index] <= o.host_recv_ns, \
                    f"{o.uid, o.boot_id}: index {o.last_index} mapped after its frame came"
        waiting = {} if closed else _pending(self.whole)
        assert closed or waiting == _pending(self.split)
        for key, owed in self.owed.items():
            missing = owed - set(recorded.get(key, [])) - waiting.get(key, set())
            assert not missing, f"{key}: {len(missing)} honest samples not recorded"
        for key, frames in _recorded_frames(self.whole).items():
            own = self.made.get(key, {})
            for k, (first, times) in enumerate(frames):
                mixed = [(other[1], i) for other, made in self.made.items()
                         if other[0] == key[0] and other != key
                         for i, t in enumerate(times, first) if made.get(i) == t != own.get(i)]
                # (what cannot be told apart, docs/protocol.md: a frame of another boot
                # taken as a boot's first one, or in place of its unconfirmed first one)
                assert not mixed or k <= 1, f"{key}: samples of other boots in it: {mixed[:3]}"
                if mixed:
                    break

    @invariant()
    def no_sample_waits_for_its_clock_past_the_wait(self) -> None:
        for w in (self.split, self.whole):
            for core in w.daemon.cores.values():
                for ep in core.epochs.values():
                    if ep.unsettled and ep.unsettled_since_ns is not None:
                        assert ep.unsettled_since_ns >= self.now_ns - (SETTLE_S + 10) * 10**9

    @invariant()
    def no_held_frame_outlives_its_wait(self) -> None:
        for w in (self.split, self.whole):
            for core in w.daemon.cores.values():
                for held in core.held.frames:
                    assert held.host_ns >= self.now_ns - 60 * 10**9

    def teardown(self) -> None:
        try:
            self.deliver(splits=[])
            for w in (self.split, self.whole):
                accounted(w.close())
            self.check(closed=True)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _pending(w: World) -> dict[tuple[str, int], set[int]]:
    """The indices of the frames each boot keeps pending (waiting for a later frame) and of
    the samples it has taken in that wait for its first SYNC to be mapped."""
    out = _unsettled(w)
    for core in w.daemon.cores.values():
        for ep in core.epochs.values():
            for p in ep.pending:
                out.setdefault((core.uid, ep.boot_id), set()).update(p.samples.indices)
    return out


def _unsettled_gaps(w: World) -> dict[tuple[str, int], list[tuple[int, int, str]]]:
    """The gaps found among samples that wait for their boot's clock (put out with them)."""
    out: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    for core in w.daemon.cores.values():
        for ep in core.epochs.values():
            for gap, _, _ in ep.unsettled_gaps:
                out.setdefault((core.uid, ep.boot_id), []).append(
                    (gap.first_index, gap.end_index, str(gap.reason)))
    return out


def _unsettled(w: World) -> dict[tuple[str, int], set[int]]:
    """The indices taken in that wait for their boot's first SYNC to be mapped."""
    out: dict[tuple[str, int], set[int]] = {}
    for core in w.daemon.cores.values():
        for ep in core.epochs.values():
            for item in ep.unsettled:
                out.setdefault((core.uid, ep.boot_id), set()).update(
                    range(item.first, item.first + len(item.times_us)))
    return out


def _outcome(w: World) -> tuple[dict, dict, dict, set]:
    recorded: dict[tuple[str, int], list[int]] = {}
    hosts: dict[tuple[str, int], dict[int, int]] = {}
    gaps: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    epochs: set[tuple[str, int]] = set()
    for o in w.outs:
        if isinstance(o, EpochOut):
            assert o.hello.uid_hex == o.uid
            epochs.add((o.uid, o.boot_id))
        elif isinstance(o, SamplesOut):
            key = (o.uid, o.boot_id)
            recorded.setdefault(key, []).extend(range(o.first_index, o.first_index + len(o)))
            for k, h in enumerate(o.host_ns):
                if h is not None:
                    hosts.setdefault(key, {})[o.first_index + k] = h
        elif isinstance(o, GapOut):
            gaps.setdefault((o.uid, o.boot_id), []).append(
                (o.gap.first_index, o.gap.end_index, str(o.gap.reason)))
    return recorded, gaps, hosts, epochs


def _recorded_frames(w: World) -> dict[tuple[str, int], list[tuple[int, tuple[int, ...]]]]:
    """The first index and device times of each recorded run of samples, per (uid, boot),
    in the order recorded."""
    out: dict[tuple[str, int], list[tuple[int, tuple[int, ...]]]] = {}
    for o in w.outs:
        if isinstance(o, SamplesOut):
            out.setdefault((o.uid, o.boot_id), []).append((o.first_index, o.device_us))
    return out


# ``make test`` runs the same bounded set every time (derandomized: a CI run cannot fail on
# an example no earlier run met); ``make fuzz`` (RATEDIAL_FUZZ_EXAMPLES) searches at random.
DialStreams.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
    derandomize="RATEDIAL_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large])
test_dial_streams = DialStreams.TestCase


# --- failing examples the search found, kept as regression tests ---------------------------


class _Draws:
    """Stands in for hypothesis' ``data()``: hands out the values of a recorded example."""

    def __init__(self, *values: object) -> None:
        self.values = list(values)

    def draw(self, strategy: object, label: object = None) -> object:
        return self.values.pop(0)


@contextlib.contextmanager
def _example() -> Iterator[DialStreams]:
    """A state machine started as hypothesis starts it; torn down (delivering and checking
    what is pending, then the exact accounting of both daemons) afterwards."""
    m = DialStreams()
    try:
        m.start()
        yield m
    finally:
        m.teardown()


def _this_boot(m: DialStreams) -> tuple[set[int], list[tuple[int, int, str]]]:
    """The indices recorded (or taken in, waiting for the boot's first SYNC to be mapped)
    and the gaps, of the current dial's current boot."""
    recorded, gaps, _, _ = _outcome(m.whole)
    key = (m.dial.uid.hex(), m.dial.boot)
    return (set(recorded.get(key, [])) | _unsettled(m.whole).get(key, set()),
            gaps.get(key, []) + _unsettled_gaps(m.whole).get(key, []))


def test_an_old_index_with_a_current_time_as_the_first_frame_does_not_hold_the_dial():
    """Found 2026-12-03: after a HELLO and a 5 s silence, the boot's first SAMPLES frame was
    hostile (index 0 with the device time of index ~5000). It was taken in, and every honest
    frame after it failed the index check against it, was held and then rejected at the next
    HELLO: the dial was lost for good. Now a boot's first frame is confirmed only by another
    that fits it; one going forward in index and device time re-anchors the boot instead
    (and, skipping indices, waits for the next frame to go on from it)."""
    with _example() as m:
        m.pause(seconds=5.0)
        m.lose()
        # (a seq as far after the HELLO's as 5 s of frames: a boot's first frame needs one)
        m.hostile_samples(_Draws(1, 0, 5_998_000, 1000, [0], [0], 600))  # type: ignore[arg-type]
        m.frames(n=2)
        m.pause(seconds=1.0)  # delivers and checks: the honest frames are recorded
        recorded, gaps = _this_boot(m)
        assert set(range(5001, 5021)) <= recorded
        assert (1, 5001, "link") in gaps


def test_a_frame_from_seconds_ahead_costs_nothing():
    """A frame 2000 indices ahead of the dial, with the device time the dial will give them
    (within the 5 s a frame may have waited in the dial's queue): taken in at once, it made
    every honest frame up to its index a replay, 2 s of the dial's samples unrecorded and
    counted as duplicates. Now it waits for a frame to go on from it; the dial's own next
    frame goes on from the last one taken in, and it is rejected (`unconfirmed`)."""
    with _example() as m:
        m.frames(n=3)
        d = m.dial
        first = d.next_index + 2000
        t = d.t_us(first)
        m._emit(encode_frame(Samples(seq=0, first_index=first, period_us=1000,
                                     counts=(7,) * 10, times_us=tuple(t + 1000 * k
                                                                     for k in range(10)),
                                     flags=(0,) * 10)))
        m.frames(n=3)
        m.deliver(splits=[])  # delivers and checks
        recorded, gaps = _this_boot(m)
        assert recorded == set(range(d.next_index))
        assert gaps == []
        assert [e.data["reason"] for e in m.whole.events("frame_rejected")] == ["unconfirmed"]


def test_a_frame_held_for_its_hello_does_not_pull_the_boot_back():
    """Found 2026-12-03 (CI preview): a hard reboot without HELLO; the new boot's first frame
    (index 0, device time 0.31 s) waited for a HELLO that did not come and expired; 7 s later
    the same frame replayed, the boot's HELLO (device time 7.3 s) and its next frame (index
    7002, 7.31 s) came in one read. The replayed frame, taken as the boot's first, became the
    anchor at its late arrival, so the frame at 7.31 s looked 7 s ahead of the dial's clock:
    rejected as a time jump, 10 honest samples unrecorded and no gap. A frame that would
    tighten the bound on the dial's clock by more than a second (as this one, which arrived
    long after it was made) no longer becomes the anchor."""
    with _example() as m:
        m.pause(seconds=2.0)
        m.reboot(later_base=False, with_hello=False)
        m.frames(n=1)
        m.pause(seconds=7.0)
        m.replay(k=0)
        m.hello()
        m.frames(n=2)
        m.pause(seconds=1.0)  # delivers and checks: the honest frames are recorded
        recorded, _ = _this_boot(m)
        assert set(range(7002, 7022)) <= recorded, sorted(recorded)[-12:]


def test_a_first_frame_replayed_late_does_not_cost_the_next_frame():
    """Found 2026-12-03 (CI preview, kept as the search shrank it): a soft reboot without
    HELLO; its first frame (index 0) fitted the old boot, which had no frame yet, and was
    taken as that boot's; then the new boot's HELLO, 5 s of silence, an ACK of an unknown
    command, the same frame replayed, taken as the new boot's first (nothing on the wire
    tells them apart), and the boot's next honest frame (index 5001). The replay became the
    anchor with its late arrival, so that frame looked 5 s ahead of the dial's clock and was
    held as a time jump: 10 honest samples unrecorded. A frame that would tighten the bound
    on the dial's clock by more than a second no longer becomes the anchor."""
    with _example() as m:
        m.pause(seconds=2.0)
        m.reboot(later_base=True, with_hello=False)
        m.frames(n=1)
        m.hello()
        m.pause(seconds=5.0)
        m.hostile_other(_Draws("ack", 0, 0, 0, 0))  # type: ignore[arg-type]
        m.replay(k=0)
        m.frames(n=2)
        m.deliver(splits=[])  # delivers and checks: the honest frames are recorded
        recorded, _ = _this_boot(m)
        assert set(range(5001, 5021)) <= recorded, sorted(recorded)[-12:]


def test_a_first_frame_ahead_of_its_device_time_does_not_cost_the_next_frame():
    """Found 2026-12-04 (RATEDIAL_FUZZ_EXAMPLES=400): right after the HELLO (device time
    1.0 s), a hostile frame with index 19997 and device time 0.997 s fitted the HELLO and was
    taken as the boot's first frame; the honest frame after it (index 0, 1.0 s) went back in
    index and was judged a replay: 10 honest samples unrecorded, and so on until the dial
    reached index 19998. A later frame cannot replace a first frame ahead of it in index (its
    samples are recorded), so a frame is taken as a boot's anchor only if its index fits its
    device time since the boot began (each index at least 500 µs after device time 0)."""
    with _example() as m:
        m.hostile_samples(_Draws(1, 19997, 997_000, 1000, [0], [0], 0))  # type: ignore[arg-type]
        m.frames(n=2)
        m.deliver(splits=[])  # delivers and checks: the honest frames are recorded
        recorded, gaps = _this_boot(m)
        assert recorded == set(range(20)), sorted(recorded)
        assert gaps == []


def test_the_next_index_from_seconds_ahead_costs_nothing():
    """A frame holding the index the dial is about to send, but with a device time 4 s
    ahead (within the 5 s a frame may have waited in the dial's queue), was taken in at
    once: every honest frame after it went back in device time and was turned away, 4 s of
    samples. A frame whose next sample leaps more than two periods and 50 ms ahead of the
    last is now pending like one that skips indices, and the dial's own frame wins."""
    with _example() as m:
        m.frames(n=3)
        d = m.dial
        first, t = d.next_index, d.t_us(d.next_index) + 4_000_000
        m._emit(encode_frame(Samples(seq=0, first_index=first, period_us=1000,
                                     counts=(7,) * 10, times_us=tuple(t + 1000 * k
                                                                     for k in range(10)),
                                     flags=(0,) * 10)))
        m.frames(n=3)
        m.deliver(splits=[])
        recorded, gaps = _this_boot(m)
        assert recorded == set(range(first + 30))  # the last frame waits for none: contiguous
        assert gaps == []
        assert [e.data["reason"] for e in m.whole.events("frame_rejected")] == ["unconfirmed"]


def test_a_pending_first_frame_outlives_a_later_hello_of_its_boot():
    """Found 2026-12-04 (RATEDIAL_FUZZ_EXAMPLES=3000) twice: a boot's only frame was pending
    when a HELLO of the same boot came 1 s later (the dial answering INFO, or the dial back
    after another took the port); at the next boot's HELLO (or the end of the run) it was
    placed again against that later HELLO, looked like a frame from before it and was
    rejected: 10 honest samples unrecorded and no gap. The newest pending frame is taken in
    as it fitted when it came."""
    with _example() as m:
        m.frames(n=1)
        m.pause(seconds=1.0)
        m.hello()
        m.reboot(later_base=False, with_hello=False)
        m.hello()
        m.pause(seconds=1.0)
    recorded, _, _, _ = _outcome(m.whole)
    assert recorded[(m.dials[0].uid.hex(), 1)] == list(range(10))
    with _example() as m:
        m.frames(n=1)
        m.other_dial_takes_the_port()
        m.frames(n=7)
        m.other_dial_takes_the_port()
    recorded, _, _, _ = _outcome(m.whole)
    assert recorded[(m.dials[0].uid.hex(), 1)] == list(range(10))


def test_a_soft_reboot_right_after_a_frame_that_skips_does_not_cost_it():
    """Found 2026-12-04 (RATEDIAL_FUZZ_EXAMPLES=3000): a frame that skipped indices (after
    a second of silence) was pending when the dial rebooted softly and its HELLO was lost;
    the new boot's second frame leapt ahead of the old boot in device time and was pending
    too, its third went on from it: the new boot's frames confirmed each other into the old
    boot, and the old boot's last frame was discarded. Frames that go back in index and on
    in device time from a pending frame before them are now a new boot: that frame is taken
    in, and they wait for their HELLO."""
    with _example() as m:
        m.frames(n=1)
        m.pause(seconds=1.0)
        m.frames(n=1)
        m.reboot(later_base=True, with_hello=False)
        m.frames(n=3)
        m.pause(seconds=1.0)
    recorded, _, _, _ = _outcome(m.whole)
    owed = m.owed[(m.dials[0].uid.hex(), 1)]
    assert owed <= set(recorded[(m.dials[0].uid.hex(), 1)])
    assert len(recorded[(m.dials[0].uid.hex(), 1)]) == 20  # nothing of the new boot in it


def _impostor(m: DialStreams, first: int, t0: int, period: int, n: int) -> None:
    m._emit(encode_frame(Samples(seq=0, first_index=first, period_us=period, counts=(7,) * n,
                                 times_us=tuple(t0 + period * k for k in range(n)),
                                 flags=(0,) * n)))


def test_the_next_index_a_little_late_costs_nothing():
    """Found by a review (2026-12-04): one sample at the dial's next index, 3 ms late (or on
    time but claiming a 20 ms period), was not a leap (the bound allowed two of the frame's
    own periods and 50 ms) and was taken in: every honest frame after it was too early for
    its index, for the rest of the boot (3099 of 3130 samples). A frame whose last sample
    is later than its new indices allow at the boot's period is now pending."""
    for delta_us, period, n in ((3000, 1000, 1), (0, 20_000, 10), (1500, 1000, 1)):
        with _example() as m:
            m.frames(n=3)
            d = m.dial
            _impostor(m, d.next_index, d.t_us(d.next_index) + delta_us, period, n)
            m.frames(n=20)
            m.deliver(splits=[])
            recorded, gaps = _this_boot(m)
            assert recorded == set(range(d.next_index)) and gaps == [], (delta_us, period)


def test_an_impostor_let_through_by_the_first_frame_is_no_boots_last_frame():
    """Found by a review (2026-12-04): after the boot's only frame, an impostor far ahead in
    index (let past the index bound because the first frame is unconfirmed) waited; the
    dial's next frame was lost, the one after skipped and waited, and the next confirmed
    it: the impostor, ahead in index and before it in time, was taken as the boot's last
    frame before a soft reboot, and 1480 honest samples were held as a new boot's. Only a
    frame within the index bound can be a boot's last frame."""
    with _example() as m:
        m.frames(n=1)
        m.deliver(splits=[])
        d = m.dial
        _impostor(m, 1500, d.t_us(10), 1000, 1)
        m.lose()
        m.frames(n=1)
        m.frames(n=1)
        m.frames(n=30)
        m.deliver(splits=[])
        recorded, _ = _this_boot(m)
        assert set(range(10)) | set(range(20, 340)) <= recorded and 1500 not in recorded


def test_a_flushed_frames_gap_is_explained_by_what_came_before_it():
    """Found by a review (2026-12-04): a frame after a lost one was pending when a damaged
    chunk came, then another boot's HELLO took it in: its gap was recorded as `crc` (what
    came after it) instead of `link`."""
    with _example() as m:
        m.frames(n=2)
        m.lose()
        m.frames(n=1)
        m.deliver(splits=[])
        m.damage(pos=3, bit=1)
        m.deliver(splits=[])
        m.pause(seconds=1.0)
        m.reboot(later_base=False, with_hello=True)
        m.frames(n=2)
        m.deliver(splits=[])
        _, gaps, _, _ = _outcome(m.whole)
        assert gaps[(m.dials[0].uid.hex(), 1)] == [(20, 30, "link")]


def test_a_rate_change_whose_hello_was_lost_costs_nothing(tmp_path):
    """Found by a review (2026-12-04): RATE 2000 (ACK, then a HELLO with period 500 that was
    lost), one 2 kHz frame lost, the next ones skip indices at 500 µs: held as index jumps
    against the boot's 1 ms period, then rejected by the same boot's HELLO that answered
    INFO, though that HELLO brought the period they fit. A same-boot HELLO now places what
    was held against the boot as it now is."""
    from hostile import World

    uid = UIDS[0]

    def hello(seq: int, t: int, period: int) -> Hello:
        return Hello(seq=seq, boot_id=1, time_us=t, period_us=period,
                     rate_hz=round(1e6 / period), batch=10, tick_bits=30, flags=1,
                     debounce_ms=5, uid=uid, board="t", firmware="0.1.0", backend="irq")

    def frame(seq: int, first: int, t0: int, period: int) -> Samples:
        return Samples(seq=seq, first_index=first, period_us=period, counts=(1,) * 10,
                       times_us=tuple(t0 + period * k for k in range(10)), flags=(0,) * 10)

    w = World(tmp_path / "r.ratedial")
    h0, seq, idx, t = 10**12, 1, 0, 1_000_000

    def at(device_us: int) -> int:
        return h0 + (device_us - 1_000_000) * 1000

    w.frames(hello(0, t, 1000), host_ns=h0)
    for _ in range(5):
        w.frames(frame(seq, idx, t, 1000), host_ns=at(t + 10_000))
        seq, idx, t = seq + 1, idx + 10, t + 10_000
    w.frames(Ack(seq=seq, command=1, index=idx, value=2000), host_ns=at(t))  # its HELLO lost
    seq, idx, t = seq + 2, idx + 10, t + 5000  # ... and the first 2 kHz frame
    sent = set(range(50))
    for _ in range(4):
        w.frames(frame(seq, idx, t, 500), host_ns=at(t + 5000))
        sent |= set(range(idx, idx + 10))
        seq, idx, t = seq + 1, idx + 10, t + 5000
    w.frames(hello(seq, t, 500), host_ns=at(t))  # the answer to INFO
    for _ in range(3):
        w.frames(frame(seq + 1, idx, t, 500), host_ns=at(t + 5000))
        sent |= set(range(idx, idx + 10))
        seq, idx, t = seq + 1, idx + 10, t + 5000
    accounted(w.close())
    recorded, gaps, _, _ = _outcome(w)
    assert set(recorded[(uid.hex(), 1)]) == sent
    assert gaps[(uid.hex(), 1)] == [(50, 60, "link")]


def test_a_reboot_whose_hello_is_late_never_mixes_the_boots():
    """Found by an audit (2026-12): a soft reboot whose HELLO came later than the old boot
    had run. The new boot's frames went back in index (held for their HELLO), but once its
    indices reached the old boot's next one they fitted the old boot as a 3 s sampler stall:
    they were recorded in the old boot (with a dial_stalled event that never happened) and
    were a link gap of the new one. A frame that leaps ahead of its boot's last sample and
    goes on, on their grid, from frames that did not fit the boot is now of their boot."""
    with _example() as m:
        m.frames(n=30)
        m.deliver(splits=[])
        old = (m.dial.uid.hex(), m.dial.boot)
        m.reboot(later_base=True, with_hello=False)
        for _ in range(5):  # 1.5 s of the new boot, past the old boot's 300 indices
            m.frames(n=30)
            m.deliver(splits=[])
        m.hello()
        m.frames(n=2)
        m.deliver(splits=[])
        new = (m.dial.uid.hex(), m.dial.boot)
        recorded, gaps, _, _ = _outcome(m.whole)
        assert recorded[old] == list(range(300))
        taken, _ = _this_boot(m)  # recorded, or waiting for the boot's clock to be pinned
        assert taken == set(range(1520)) and new not in gaps
        assert not m.whole.events("dial_stalled")
