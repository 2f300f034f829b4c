"""Device clock -> host clock: bounds from every frame and every PING (pure, no I/O).

Maps a dial's device time (µs, one boot) to host ``time.monotonic_ns()`` as a line,
``host_ns = ref_host_ns + (device_us - ref_device_us) * 1000 * (1 + skew_ppm * 1e-6)``,
fitted to *bounds* rather than to noisy points (TICSync, Harrison & Newman 2011; Moon et al.
1999; ethz-asl cuckoo_time_translator). The skew comes from the SAMPLES arrivals (the edge
of their lower convex hull over the middle of the window, Moon et al.'s slope: it follows the
latency floor even when frames leave at a fixed phase of the 1 ms USB frame and the fastest
frame of each moment rises and falls as the dial's clock drifts past the host's), the offset
from the centre of the two-way band left by the PING/SYNC bounds at that skew.
docs/timing.md has the method, the alternatives measured and the numbers.

Invariants:

* Every observation is a hard bound on the true map ``F``. A SAMPLES arrival says
  ``F(device_us) <= host_recv_ns`` (the sample was taken before its frame arrived); a SYNC says
  ``F(device_tx_us) <= host_recv_ns`` and ``F(device_rx_us) >= host_send_ns`` (the PING was
  read after it was sent). A late observation (a stall, a delayed reply) is a loose bound,
  never a wrong one, so nothing is rejected as an outlier.
* The estimate satisfies every bound in the window (when no line does, the window shrinks to
  the newest data that agree). Its uncertainty is the distance to the far edge of the band of
  lines that satisfy every bound with a slope in the arrivals' slope interval: as long as the
  bounds hold, the clock is linear over the window and the skew is within that interval, the
  true time is within ``uncertainty_ns``.
* The estimate is a pure function of the observations in the window (the last ``window_s`` of
  device time): feeding a recorded log in one go gives exactly the estimate the live daemon
  had after the same observations. Refits are only throttled, never different.
* Frames that wait in the dial's transmit queue (a link slower than the dial's data: it
  drops samples, or its queue fills) arrive later and later, so the arrivals' lower hull no
  longer follows the latency floor and their slope is wrong (+1000 ppm on a saturated
  115200-baud link at 2 kHz). Within ``min_slope_span_s`` of such a moment
  (:meth:`DeviceClock.mark_congested`: a DROP, a STATUS with its queue filling), the line
  and its uncertainty come from the two-way bounds alone, over every slope they allow: wide,
  but true. Once the queue has drained (a stall that overflowed it, then frames at the
  floor again), the arrivals' hull passes under the late ones and is used again.
* One instance is one epoch (one ``boot_id``). Device time going backwards by more than
  ``backwards_tolerance_us`` raises :class:`ClockEpochError`; the caller starts a new instance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ratedial.clock_bounds import Band, Point, arrival_slopes, lower_hull, solve
from ratedial.errors import RatedialError

__all__ = ["ClockEpochError", "ClockEstimate", "DeviceClock", "SlewedMap", "fit_log"]

_NS_PER_US = 1000
# SYNCs after which the model refits at once (while they reshape it); later ones wait for the
# refit_s throttle like arrivals (ten PINGs a second would otherwise mean ten refits a second)
_PROMPT_SYNCS = 20


class ClockEpochError(RatedialError):
    """Device time went backwards: these observations belong to another boot of the dial."""

    def __init__(self, device_us: int, latest_us: int) -> None:
        super().__init__(
            f"device time went back from {latest_us} µs to {device_us} µs: the dial restarted "
            "(a new epoch needs a new clock model)"
        )
        self.device_us = device_us
        self.latest_us = latest_us


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    """One fitted line. ``host_ns = ref_host_ns + (device_us - ref_device_us) * 1000 * (1 +
    skew_ppm * 1e-6)``; the true host time of ``device_us`` is within
    :meth:`uncertainty_at` of :meth:`to_host_ns` (``uncertainty_ns`` at ``ref_device_us``).

    ``ref_host_ns`` is the host time of the middle of microsecond ``ref_device_us`` (a device
    reading ``t`` means an instant in ``[t, t + 1)`` µs), so mapped integer readings are unbiased.
    """

    ref_device_us: int
    ref_host_ns: int
    skew_ppm: float
    uncertainty_ns: int
    n_obs: int
    skew_uncertainty_ppm: float = 0.0

    def to_host_ns(self, device_us: int) -> int:
        return self.ref_host_ns + round(
            (device_us - self.ref_device_us) * (_NS_PER_US + self.skew_ppm * 1e-3))

    def to_host_ns_many(self, device_us: Iterable[int]) -> list[int]:
        ref_d, ref_h, rate = self.ref_device_us, self.ref_host_ns, _NS_PER_US + self.skew_ppm * 1e-3
        return [ref_h + round((d - ref_d) * rate) for d in device_us]

    def uncertainty_at(self, device_us: int) -> int:
        """Bound on the error at ``device_us``: grows with the distance from the reference."""
        far = abs(device_us - self.ref_device_us) * self.skew_uncertainty_ppm * 1e-3
        return self.uncertainty_ns + math.ceil(far)


class _Bucket:
    """Bounds from one bucket of device time, with their lower hull cached."""

    __slots__ = ("hull", "points")

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.hull: list[Point] | None = None

    def get_hull(self) -> list[Point]:
        if self.hull is None:
            self.hull = lower_hull(self.points)
        return self.hull


_BLOCK = 25  # buckets per block: window hulls merge cached block hulls


class _HullStore:
    """Points bucketed by device time; the lower hull of those from a bucket on, merged from
    cached bucket and block hulls (a refit costs the hull of the hulls, not of every point)."""

    __slots__ = ("_blocks", "_bucket_us", "_buckets", "_last_key", "_ordered")

    def __init__(self, bucket_us: int) -> None:
        self._bucket_us = bucket_us
        self._buckets: dict[int, _Bucket] = {}
        self._ordered = True  # bucket keys were created in ascending order
        self._last_key = -(2**62)
        self._blocks: dict[int, list[Point]] = {}

    def add(self, p: Point) -> bool:
        """Add a point; True when it opened a new bucket."""
        key = p[0] // self._bucket_us
        bucket = self._buckets.get(key)
        opened = bucket is None
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
            if key < self._last_key:
                self._ordered = False  # a late point opened an older bucket
            self._last_key = max(self._last_key, key)
        bucket.points.append(p)
        bucket.hull = None
        self._blocks.pop(key // _BLOCK, None)
        return opened

    def prune(self, x_start: int) -> None:
        """Forget the buckets wholly before ``x_start``."""
        first = x_start // self._bucket_us
        for key in [k for k in self._buckets if k < first]:
            del self._buckets[key]
            self._blocks.pop(key // _BLOCK, None)

    def _keys_since(self, x_start: int) -> list[int]:
        if not self._ordered:
            self._buckets = dict(sorted(self._buckets.items()))
            self._ordered = True
        first = x_start // self._bucket_us
        return [k for k in self._buckets if k >= first]

    def count(self, x_start: int) -> int:
        """Points in the buckets from ``x_start``'s on."""
        return sum(len(self._buckets[k].points) for k in self._keys_since(x_start))

    def hull(self, x_start: int) -> list[Point]:
        """Lower hull of the points in the buckets from ``x_start``'s on."""
        keys = self._keys_since(x_start)
        pts: list[Point] = []
        i = 0
        while i < len(keys):
            block = keys[i] // _BLOCK
            j = i
            while j < len(keys) and keys[j] // _BLOCK == block:
                j += 1
            whole = j - i == len([k for k in range(block * _BLOCK, (block + 1) * _BLOCK)
                                  if k in self._buckets])
            if whole:
                hull = self._blocks.get(block)
                if hull is None:
                    hull = self._blocks[block] = lower_hull(
                        p for k in keys[i:j] for p in self._buckets[k].get_hull())
                pts.extend(hull)
            else:  # the block the window starts in: only part of it counts
                pts.extend(p for k in keys[i:j] for p in self._buckets[k].get_hull())
            i = j
        return lower_hull(pts)


class DeviceClock:
    """Online and offline model of one dial's clock for one epoch.

    Feed observations as they happen (``add_arrival`` for every SAMPLES frame, ``add_sync``
    for every SYNC), map device times with :meth:`to_host_ns` (cheap: a cached line, refitted
    at most every ``refit_s`` of host time, and at once after each of the first
    ``_PROMPT_SYNCS`` SYNCs; as the epoch's observations span more device time, at most every
    tenth of that span, up to ``max_refit_s``) and read :meth:`estimate` for the freshest fit.

    ``window_s``: how much device time the fit looks back. Longer windows tighten the band
    (more PINGs pin its edges) but a linear model over a long window bends under a drift
    change; docs/timing.md has the measured trade-off. ``bucket_s``: arrivals are summarised
    per bucket of device time (their lower hulls are cached and merged).
    ``envelope_tolerance_us``: the arrivals' slope interval holds the slopes whose lowest line
    under the arrivals loses at most this much at mid-window: 150 µs of noise plus half a
    1 ms USB frame, as the hull has the USB clock's slope until the window holds one beat of
    the dial's clock against it (1 ms / drift: 10 s at 100 ppm; docs/timing.md).
    ``min_slope_span_s``: until the arrivals span this long, the two-way polygon's centre.
    ``prior_latency_us`` bounds the unknown minimum frame latency before the first SYNC
    (estimates are then honest but wide: the first frames after a boot were seen 20 ms late
    on the virtual dial, so 50 ms). ``backwards_tolerance_us``: device time may go back
    this much (a SYNC overtaking queued frames) before :class:`ClockEpochError`.
    ``max_refit_s``: a line resting on many seconds of observations moves by microseconds a
    second (its skew is known to a few ppm), while a refit costs about half a millisecond of
    CPU: one a second instead of ten is what lets one core carry many dials (docs/timing.md).
    ``dense_syncs_per_s``: with at least this many SYNCs per second in the window, the slope
    is the centre of the two-way band instead of the arrivals' hull edge: PINGs at random
    phases pin the band everywhere, while the hull stands on the few bottoms of the USB
    sawtooth (one per 10 s at 100 ppm); with one PING a second the band's centre was the worse
    slope (docs/timing.md, "At the extremes").
    """

    def __init__(self, *, window_s: float = 90.0, bucket_s: float = 0.2,
                 envelope_tolerance_us: float = 650.0, min_slope_span_s: float = 5.0,
                 refit_s: float = 0.1, max_skew_ppm: float = 1000.0,
                 prior_latency_us: int = 50_000, backwards_tolerance_us: int = 10_000_000,
                 dense_syncs_per_s: float = 2.0, max_refit_s: float = 1.0) -> None:
        if bucket_s <= 0 or window_s < 2 * bucket_s:
            raise ValueError("window_s must be at least two buckets (bucket_s) long")
        self._window_us = round(window_s * 1e6)
        self._env_tol_ns = envelope_tolerance_us * _NS_PER_US
        self._min_slope_span = round(min_slope_span_s * 1e6)
        self._dense = dense_syncs_per_s
        self._bucket_us = max(1, round(bucket_s * 1e6))
        self._refit_ns = round(refit_s * 1e9)
        self._max_refit_ns = max(self._refit_ns, round(max_refit_s * 1e9))
        self._x_first: int | None = None  # the epoch's earliest device time seen
        self._c_box = max_skew_ppm * 1e-3
        self._prior_ns = prior_latency_us * _NS_PER_US
        self._back_us = backwards_tolerance_us
        self._arrivals = _HullStore(self._bucket_us)  # upper bounds from SAMPLES frames
        self._txs = _HullStore(self._bucket_us)  # upper bounds from SYNC replies
        self._lows = _HullStore(self._bucket_us)  # lower bounds from PING receipts, y negated
        self._x_max: int | None = None
        self._h_max = 0  # latest host time seen
        self._n_obs = 0
        self._n_syncs = 0
        self._dirty = False  # observations since the last fit
        self._stale = True  # the cached estimate is due for a refit
        self._next_fit_ns: int | None = None
        self._cached: ClockEstimate | None = None
        self._congested_us: int | None = None  # the latest device time the dial's queue held
        self.inconsistent_fits = 0  # fits that had to drop old data to find any line

    # -- observations ------------------------------------------------------------------
    def add_arrival(self, device_us: int, host_recv_ns: int) -> None:
        """A SAMPLES frame whose last sample has ``device_us`` was read at ``host_recv_ns``."""
        self._check_epoch(device_us)
        if self._arrivals.add((device_us, host_recv_ns - _NS_PER_US * device_us)):
            self._prune(device_us)
        self._seen(device_us, host_recv_ns)
        if self._next_fit_ns is None or host_recv_ns >= self._next_fit_ns:
            self._stale = True

    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None:
        """A PING stamped ``host_send_ns`` just before it was written, read by the dial at
        ``device_rx_us``, answered at ``device_tx_us``, the SYNC read at ``host_recv_ns``."""
        if device_tx_us < device_rx_us or host_recv_ns < host_send_ns:
            raise ValueError("a SYNC must not end before it starts")
        self._check_epoch(device_rx_us)
        self._txs.add((device_tx_us, host_recv_ns - _NS_PER_US * device_tx_us))
        # The PING was read at an instant in [rx, rx + 1) µs, so F(rx + 1) > host_send and
        # F(rx) > host_send - 1 µs * (1 + skew): 1001 ns covers skews up to 1000 ppm.
        self._lows.add((device_rx_us, -(host_send_ns - _NS_PER_US * device_rx_us - 1001)))
        self._seen(device_tx_us, host_recv_ns)
        self._n_syncs += 1
        if (self._n_syncs <= _PROMPT_SYNCS or self._next_fit_ns is None
                or host_recv_ns >= self._next_fit_ns):
            self._stale = True

    def mark_congested(self, device_us: int) -> None:
        """The dial's transmit queue held frames back at ``device_us`` (it dropped samples, or
        its STATUS showed the queue filling): arrivals around then are not near the latency
        floor. Until ``min_slope_span_s`` of device time has passed since, the fit rests on
        the two-way bounds. A time past the newest observation counts as the newest."""
        if self._x_max is None:
            return
        device_us = min(device_us, self._x_max)
        if self._congested_us is None or device_us > self._congested_us:
            self._congested_us = device_us
            self._dirty = self._stale = True

    def _check_epoch(self, device_us: int) -> None:
        if self._x_max is not None and device_us < self._x_max - self._back_us:
            raise ClockEpochError(device_us, self._x_max)

    def _seen(self, device_us: int, host_ns: int) -> None:
        self._n_obs += 1
        self._dirty = True
        if self._x_first is None or device_us < self._x_first:
            self._x_first = device_us
        if self._x_max is None or device_us > self._x_max:
            self._x_max = device_us
        self._h_max = max(self._h_max, host_ns)

    def _prune(self, device_us: int) -> None:
        start = max(device_us, self._x_max or device_us) - self._window_us
        for store in (self._arrivals, self._txs, self._lows):
            store.prune(start)

    # -- estimates ---------------------------------------------------------------------
    def estimate(self) -> ClockEstimate | None:
        """The fit to every observation so far (None before the first observation)."""
        if self._dirty:
            self._cached = self._fit()
            self._dirty = False
            self._stale = False
            self._next_fit_ns = self._h_max + self._refit_interval_ns()
        return self._cached

    def _refit_interval_ns(self) -> int:
        """A tenth of the device time the observations span (µs to ns: times 1000 / 10), within
        [refit_s, max_refit_s]: new observations move a line by less the more it rests on."""
        first, last = self._x_first, self._x_max
        span_ns = 0 if first is None or last is None else (last - first) * 100
        return min(self._max_refit_ns, max(self._refit_ns, span_ns))

    def current(self) -> ClockEstimate | None:
        """The cached estimate, refitted at most every ``refit_s`` to ``max_refit_s`` (see the
        class), and after each of the first SYNCs."""
        if self._stale:
            return self.estimate()
        return self._cached

    def peek(self) -> ClockEstimate | None:
        """The cached estimate, never refitting: for displays, which must not change when
        the model refits (and so what the samples get)."""
        return self._cached

    def to_host_ns(self, device_us: int) -> int | None:
        est = self._cached if not self._stale else self.estimate()
        return None if est is None else est.to_host_ns(device_us)

    def _fit(self) -> ClockEstimate | None:
        if self._x_max is None:
            return None
        x0 = self._x_max
        span = self._window_us
        while True:
            start = x0 - span
            arr = self._arrivals.hull(start)
            ups = lower_hull(arr + self._txs.hull(start))
            lows = [(x, -y) for x, y in self._lows.hull(start)]
            y_ref = ups[-1][1]
            fu = [(float(x - x0), float(y - y_ref)) for x, y in ups]
            fl = [(float(x - x0), float(y - y_ref)) for x, y in lows]
            band = self._band(arr, fu, fl, start)
            if band is not None:
                break
            # No line satisfies every bound: the clock stepped or bent within the window.
            # Fit the newer half; at the shortest span, trust the upper bounds alone.
            self.inconsistent_fits += 1
            if span <= 2 * self._bucket_us:
                band = solve(fu, [], -self._c_box, self._c_box, self._prior_ns)
                assert band is not None  # upper bounds alone are always satisfiable
                break
            span = max(span // 2, 2 * self._bucket_us)
        ref_host = y_ref + band.a + _NS_PER_US * x0 + 0.5 * (_NS_PER_US + band.c)
        # margin: the half microsecond of reading quantisation, and float rounding
        return ClockEstimate(ref_device_us=x0, ref_host_ns=round(ref_host), skew_ppm=band.c * 1e3,
                             uncertainty_ns=math.ceil(band.half_width + 502),
                             n_obs=self._n_obs, skew_uncertainty_ppm=band.c_half * 1e3)

    def _band(self, arr: Sequence[Point], ups: Sequence[tuple[float, float]],
              lows: Sequence[tuple[float, float]], start: int) -> Band | None:
        """The line: slope from the arrivals' one-way hull, or, when PINGs are dense (at least
        ``dense_syncs_per_s`` answered per second of the arrivals' span), the centre of the
        two-way band over the arrivals' slope interval; offset from the two-way band at that
        slope; uncertainty from the two-way band over the arrivals' slope interval.
        Early (arrivals spanning under ``min_slope_span_s``) or when the arrivals' slope
        contradicts the two-way bounds, or within ``min_slope_span_s`` of the dial's queue
        holding frames back (:meth:`mark_congested`): the centre of the two-way polygon."""
        span = arr[-1][0] - arr[0][0] if arr else 0
        congested = (self._congested_us is not None and self._x_max is not None
                     and self._congested_us >= self._x_max - self._min_slope_span)
        if span >= self._min_slope_span and not congested:
            c_arr, c_lo, c_hi = arrival_slopes(arr, self._env_tol_ns, self._c_box)
            wide = solve(ups, lows, c_lo, c_hi, self._prior_ns)
            if wide is not None:
                c = wide.c if self._lows.count(start) * 1e6 >= self._dense * span else c_arr
                fixed = solve(ups, lows, c, c, self._prior_ns) or wide
                lo, hi = wide.a - wide.half_width, wide.a + wide.half_width
                return Band(fixed.a, fixed.c, max(fixed.a - lo, hi - fixed.a),
                            max(c_hi - fixed.c, fixed.c - c_lo))
        return solve(ups, lows, -self._c_box, self._c_box, self._prior_ns)


class SlewedMap:
    """Maps one epoch's sample times through successive estimates without ever stepping.

    When a refit moves the line, the host time of the last mapped sample is kept and the
    difference is taken in at ``slew`` of device time (0.5: 500 µs per ms, so a correction
    is gone within twice its size of device time and mapped sample intervals stay at least
    half a period), so mapped times never decrease and never jump (docs/timing.md, "Refits
    are slewed"). ``offset_ns`` is what is still to be taken in: the mapped time minus the
    current line.
    """

    __slots__ = ("_at_us", "_est", "_last_host", "_last_us", "offset_ns", "slew")

    def __init__(self, slew: float = 0.5) -> None:
        self.slew = slew
        self.offset_ns = 0.0
        self._at_us = 0
        self._est: ClockEstimate | None = None
        self._last_us: int | None = None
        self._last_host: int | None = None

    def map(self, est: ClockEstimate, times_us: Sequence[int],
            limit_ns: int | None = None) -> list[int]:
        """Host times of ``times_us`` (ascending, after those mapped before). ``limit_ns``: the
        host time their frame arrived, which none of them can be later than (a line moving
        back while a correction is slewed in would put some after it; they are held to it,
        and what is still to be taken in shrinks by as much)."""
        host = est.to_host_ns_many(times_us)
        prev = self._est
        if prev is not None and prev is not est and self._last_us is not None:
            t = self._last_us
            self.offset_ns += prev.to_host_ns(t) - est.to_host_ns(t)
            self._at_us = t
        self._est = est
        if times_us:
            self._last_us = times_us[-1]
        if self.offset_ns:
            off, at, rate = self.offset_ns, self._at_us, 1000 * self.slew
            for k, t in enumerate(times_us):
                step = (t - at) * rate
                off = max(0.0, off - step) if off > 0 else min(0.0, off + step)
                at = t
                host[k] += round(off)
            self.offset_ns, self._at_us = off, at
        if limit_ns is not None and self._last_host is not None:
            # never below what is mapped already (a pending frame taken in after a newer one
            # arrived before it: a review, 2026-12-05)
            limit_ns = max(limit_ns, self._last_host)
        if limit_ns is not None and host and host[-1] > limit_ns:
            self.offset_ns -= host[-1] - limit_ns
            for k in range(len(host) - 1, -1, -1):
                if host[k] <= limit_ns:
                    break
                host[k] = limit_ns
        if host:
            self._last_host = host[-1]
        return host


def fit_log(syncs: Iterable[tuple[int, int, int, int]], arrivals: Iterable[tuple[int, int]],
            clock: DeviceClock | None = None, congested_us: Iterable[int] = ()) -> DeviceClock:
    """Replay a recorded epoch into ``clock`` (default: a new :class:`DeviceClock`) in host
    receive order: ``sync_obs`` rows as ``(host_send_ns, device_rx_us, device_tx_us,
    host_recv_ns)``, ``arrivals`` rows as ``(device_us, host_recv_ns)``. The returned model's
    :meth:`~DeviceClock.estimate` is what the live model had after the same observations
    (and the same :meth:`~DeviceClock.mark_congested` device times, ``congested_us``)."""
    clock = DeviceClock() if clock is None else clock
    events: list[tuple[int, int, tuple[int, ...]]] = [(s[3], 1, s) for s in syncs]
    events.extend((a[1], 0, a) for a in arrivals)
    events.sort(key=lambda e: (e[0], e[1]))
    for _, kind, obs in events:
        if kind:
            clock.add_sync(*obs)
        else:
            clock.add_arrival(*obs)
    for d in congested_us:  # after the observations: a mark needs a device time to bound it
        clock.mark_congested(d)
    return clock
