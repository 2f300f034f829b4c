"""Where a frame fits in a boot: the bounds that host time puts on a dial's device time (no I/O).

Between two frames of one boot the dial's clock can only have run as far as the host's did
(clocks within 1000 ppm, :data:`DRIFT`), plus ``slack_us`` for a frame that waited in the
dial's queue; at most one sample per MIN_PERIOD_US fits in that time. :func:`place` judges a
SAMPLES frame against an epoch by these bounds: NEW (take it in), DUPLICATE (count and ignore
it) or FOREIGN (not of this boot: hold it for a HELLO, or reject it). The core also bounds
SYNC, BUTTON, DROP and ACK by :func:`ahead_limit` and :func:`max_new_samples`.
:func:`check_rate` judges a boot's clock rate (and marks the epoch when it is implausible);
:func:`first_unheard` places a new boot's frames that expired waiting for its HELLO.

Invariants:

* A SAMPLES frame extends its epoch only within what the host time since the last accepted
  frame allows (clocks within 1000 ppm, plus ``slack_s`` of buffering): a frame from the
  far future is rejected, never a gap of billions.
* A duplicate carries the device times its boot gave those indices: exactly those recorded,
  for the recent frames (:data:`~ratedial.daemon.epoch.RECENT_FRAMES`); a frame with the
  indices and other times is a replay, never a duplicate.
* A boot's first frame must fit the device time since the boot began (:func:`since_start`)
  and the HELLO's place in the dial's queue (:data:`PACKING_US`).
* After a boot's first frame, a frame that skips indices or :func:`leaps` ahead in device
  time is confirmed only by a later frame that :func:`goes_on` from it
  (:func:`confirmed_by`); the core keeps it pending until then.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from ..wire import Hello, Samples
from ..wire.checks import MIN_PERIOD_US, index_fits_time
from .epoch import Epoch, HeldFrame, Lost

DRIFT = 1.001  # device and host clocks agree within 1000 ppm
PACKING_US = 50_000  # a frame is queued within this of its last sample (GC pauses included)
CHAIN_LOOKBACK = 16  # the newest held (and expired) frames a leaping frame may go on from
RATE_CHECK_NS = 10_000_000_000  # host time in a boot before its clock rate is judged

# What a SAMPLES frame is to an epoch.
NEW, DUPLICATE, FOREIGN = "new", "duplicate", "foreign"
# Why a frame is held when it is another boot's by what it goes on from, not by its values
NOT_THIS_BOOT = "not_this_boot"
REANCHOR = "reanchor"  # a NEW frame that replaces the boot's unconfirmed first frame


def projected(ep: Epoch, host_ns: int) -> int:
    """The anchor's device time plus the host time since it arrived (clocks within
    1000 ppm): where the anchor's clock can have got to by ``host_ns``."""
    elapsed_us = max(0, host_ns - ep.anchor_host_ns) // 1000
    return ep.anchor_device_us + int(elapsed_us * DRIFT)


def ahead_limit(ep: Epoch, host_ns: int, slack_us: int) -> int:
    """The latest device time the dial can have reached by ``host_ns``: the projected
    anchor plus ``slack_us`` for the anchor's own latency (a frame that waited in the
    dial's queue)."""
    return projected(ep, host_ns) + slack_us


def max_new_samples(ep: Epoch, host_ns: int, slack_us: int) -> int:
    """How many samples past the anchor the dial can have taken by ``host_ns``."""
    return (ahead_limit(ep, host_ns, slack_us) - ep.anchor_device_us) // MIN_PERIOD_US + 2


def place(ep: Epoch, s: Samples, host_ns: int, slack_us: int, *, before_hello: bool = False
          ) -> tuple[str, str]:
    """NEW, DUPLICATE or FOREIGN (with why) for SAMPLES ``s`` against epoch ``ep``;
    ``before_hello``: ``s`` arrived before the HELLO that made ``ep`` current."""
    if s.times_us[-1] > ahead_limit(ep, host_ns, slack_us):
        return FOREIGN, "time_jump"
    nxt = ep.ledger.next_index
    last_t = ep.last_device_us
    if nxt is None or last_t is None:
        # The first frame of the boot. The dial queues HELLO and SAMPLES in one FIFO and
        # builds a frame when its last sample is taken: a frame that came before the
        # HELLO ended before it was built, one that came after ended after.
        t_hello = ep.hello.time_us
        if before_hello and s.times_us[-1] > t_hello + PACKING_US:
            return FOREIGN, NOT_THIS_BOOT
        if not before_hello and s.times_us[-1] < t_hello - PACKING_US:
            return FOREIGN, "time_backwards"
        if not before_hello and not made_after(ep.hello, s):
            return FOREIGN, NOT_THIS_BOOT
        if not since_start(s):
            return FOREIGN, "index_jump"
        return NEW, ""
    if s.end_index <= nxt:
        # A duplicate carries the device times this boot gave those indices: exactly
        # those recorded, for the recent frames; for older ones not after the newest, not
        # before the first, one period or more apart per index.
        known = recorded_time(ep, s.first_index)
        if known is not None:
            return (DUPLICATE, "") if known == s.times_us[0] else (FOREIGN, "replay")
        assert ep.first_device_us is not None
        behind = (nxt - s.end_index) * min(ep.last_period_us, s.period_us)
        if ep.first_device_us <= s.times_us[0] and s.times_us[-1] <= last_t - behind:
            return DUPLICATE, ""
        return FOREIGN, "replay"
    i0 = max(s.first_index, nxt)
    t0 = s.times_us[i0 - s.first_index]
    if t0 <= last_t:
        return FOREIGN, "time_backwards"
    # Each index takes at least a period of device time (the boot's: the last frame's, or
    # the HELLO's if the rate changed since; never what the frame itself claims), less one
    # period of jitter.
    if not within_bound(ep, s):
        if ep.fitted == 1 and since_start(s):
            # Only the boot's first frame stands against it, and nothing has confirmed
            # that one: it may be the impostor (e.g. an old index with a current time),
            # and trusting it would hold every honest frame after it. Going forward in
            # both index and device time, this frame re-anchors the boot; the indices
            # between are a gap.
            return NEW, REANCHOR
        return FOREIGN, "index_jump"
    return NEW, ""


def made_after(h: Hello, s: Samples) -> bool:
    """Whether SAMPLES ``s``, received after HELLO ``h`` with no frame of its boot before
    it, can be a frame its dial made after ``h``: a later ``seq`` (mod 2^16; a boot that
    began since, its HELLO lost, numbers its frames from 0 again), and ending no later
    than that many frames of ``h``'s batch and period allow after ``h``'s device time
    (every frame the dial makes takes a number, those it loses too; a sampler that stalls
    right after a HELLO makes its first frame wait for the next HELLO)."""
    k = (s.seq - h.seq) % 65536
    return 0 < k < 32768 and \
        s.times_us[-1] <= h.time_us + k * h.batch * h.period_us + PACKING_US


def boot_period_us(ep: Epoch) -> int:
    """The shortest sample period the boot can have now: its last frame's or its HELLO's
    (after a RATE command), never what a frame claims for itself."""
    return min(ep.last_period_us, ep.hello.period_us)


def leaps(ep: Epoch, s: Samples) -> bool:
    """Whether NEW frame ``s``, holding the boot's next index, ends later in device time than
    its new indices allow at the boot's period, with less than one period of jitter (at one
    period, the dial's next sample could not come after it): a stall on the
    dial, or a frame from the future. Taken in at once, such a frame would make the dial's
    own next frames look too early in time for their indices (found by a review: one sample
    3 ms late cost the rest of the boot)."""
    nxt, last_t = ep.ledger.next_index, ep.last_device_us
    if nxt is None or last_t is None:
        return False
    return s.times_us[-1] - last_t >= (s.end_index - nxt + 1) * boot_period_us(ep)


def within_bound(ep: Epoch, s: Samples) -> bool:
    """Whether ``s`` skips no more indices than the device time since the last frame taken
    in allows at the boot's period (less one period of jitter): the bound :func:`place`
    holds every frame to, but the one the boot's unconfirmed first frame lets through."""
    nxt, last_t = ep.ledger.next_index, ep.last_device_us
    if nxt is None or last_t is None:
        return True
    i0 = max(s.first_index, nxt)
    return (i0 - nxt) * boot_period_us(ep) <= s.times_us[i0 - s.first_index] - last_t


def goes_on(prev: Samples, s: Samples) -> bool:
    """Whether ``s`` can be the next frame a dial sent after ``prev``: later indices, a later
    device time, and no more indices skipped than the device time between allows (as
    :func:`place` judges a frame against the last one taken in)."""
    if s.first_index < prev.end_index or s.times_us[0] <= prev.times_us[-1]:
        return False
    skipped = s.first_index - prev.end_index
    return skipped * min(prev.period_us, s.period_us) <= s.times_us[0] - prev.times_us[-1]


def confirmed_by(pending: list[Samples], s: Samples) -> int | None:
    """Which of a boot's ``pending`` frames (oldest first) ``s`` goes on from, or None: the
    nearest before it in index; of frames ending at the same index, the one with the most
    samples, then the oldest (a frame of the dial came first, or an impostor had to claim
    the index the dial was about to send)."""
    best: int | None = None
    for k, p in enumerate(pending):
        if goes_on(p, s) and (best is None or (p.end_index, -p.first_index) > (
                pending[best].end_index, -pending[best].first_index)):
            best = k
    return best


def since_start(s: Samples) -> bool:
    """Whether ``s``'s first index fits its device time since the boot began: index 0
    was taken at a device time of 0 or later and each index since took at least
    MIN_PERIOD_US (less a period of jitter at either end). A frame taken as a boot's
    anchor must fit it: a later frame can only replace an unconfirmed anchor that lies
    behind it in index, never one ahead of it, whose samples are already recorded
    (found by test_core_stateful: a first frame at index 19997 and 0.997 s, then every
    honest frame from index 0 was judged a replay)."""
    return index_fits_time(s.first_index, s.times_us[0])


def recorded_time(ep: Epoch, index: int) -> int | None:
    """The device time recorded for ``index`` if it is among the recent frames."""
    recent = ep.recent
    if not recent or index < recent[0][0]:
        return None
    k = bisect_right(recent, index, key=lambda r: r[0]) - 1
    first, times = recent[k]
    return times[index - first] if index - first < len(times) else None


def on_grid(last_index: int, last_us: int, period_us: int, s: Samples) -> bool:
    """Whether ``s``'s first sample is where a sampler at ``period_us`` that took sample
    ``last_index`` at ``last_us`` takes its sample of that index: each index one period
    later, within a period of jitter either way (no index skipped that device time does not
    allow, no stall between)."""
    d = s.first_index - last_index
    dt = s.times_us[0] - last_us
    return d >= 1 and (d - 1) * period_us <= dt < (d + 1) * period_us


def of_held_boot(ep: Epoch, s: Samples, held: Sequence[HeldFrame], lost: Sequence[Lost],
                 *, after_us: int) -> bool:
    """Whether NEW frame ``s`` goes on, on their grid, from a frame that did not fit epoch
    ``ep`` (held for a HELLO, or expired waiting) and whose device time is after
    ``after_us``: then ``s`` is of that frame's boot, a reboot whose HELLO is late (device
    time goes on, or starts again, and indices start again; once the new boot has run
    longer than the old one, they reach and pass its indices). The core asks for a frame
    that leaps ahead of ``ep`` (``after_us``: its last sample: the dial took samples where
    ``s`` would have it stalled, with other indices), and for one that would replace ``ep``'s
    unconfirmed first frame (any device time: ``s`` goes on from frames that did not fit
    that first frame, not from it)."""
    for h in reversed(held[-CHAIN_LOOKBACK:]):
        p = h.samples
        if h.boot_id == ep.boot_id and p.times_us[-1] > after_us and on_grid(
                p.end_index - 1, p.times_us[-1], min(p.period_us, s.period_us), s):
            return True
    return any(x.boot_id == ep.boot_id and x.last_us > after_us and on_grid(
        x.end_index - 1, x.last_us, min(x.period_us, s.period_us), s)
        for x in lost[-CHAIN_LOOKBACK:])


def first_unheard(h: Hello, host_ns: int, lost: Sequence[Lost],
                  slack_us: int) -> int | None:
    """Frames of the new boot of HELLO ``h`` (arrived at ``host_ns``) that expired waiting
    for it: the first of their indices, where the boot's ``no_hello`` gap starts (only those
    whose device time this boot can have had). ``lost``: (first index, last device time,
    arrival, ...) of each expired frame (:attr:`~ratedial.daemon.epoch.Held.lost`)."""
    def could_be_ours(t_us: int, arrival_ns: int) -> bool:
        # taken before this HELLO was built, and not before that frame's arrival allows
        before = int(max(0, host_ns - arrival_ns) // 1000 * DRIFT) + slack_us
        return h.time_us - before <= t_us <= h.time_us + slack_us

    firsts = [x.first_index for x in lost if could_be_ours(x.last_us, x.arrival_ns)]
    return min(firsts) if firsts else None


def check_rate(ep: Epoch, device_us: int, host_ns: int) -> dict[str, Any] | None:
    """Once RATE_CHECK_NS of host time has passed in a boot, its device clock must run
    within a factor of two of the host's (a crystal is within 0.1 %; a stall or burst
    moves arrivals by seconds at most). Otherwise the boot's host times are not
    computed (NULL) from then on (``ep.rate_implausible``), and this returns, once, what the
    ``clock_rate_implausible`` event says."""
    if ep.rate_ref is None:
        ep.rate_ref = (device_us, host_ns)
        return None
    d0, h0 = ep.rate_ref
    if ep.rate_implausible or host_ns - h0 < RATE_CHECK_NS:
        return None
    ratio = (device_us - d0) * 1000 / (host_ns - h0)
    if 0.5 <= ratio <= 2.0:
        return None
    ep.rate_implausible = True
    return {"boot_id": ep.boot_id, "ratio": round(ratio, 4),
            "device_s": round((device_us - d0) / 1e6, 3),
            "host_s": round((host_ns - h0) / 1e9, 3)}
