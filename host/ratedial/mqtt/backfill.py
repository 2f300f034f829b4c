"""Republishing from the recordings: the backlog after an outage, earlier runs of this daemon,
and replay requests from subscribers. Never from memory: what is republished is read back
from the recording files. Split from :mod:`ratedial.mqtt.publisher`, whose
:class:`~ratedial.mqtt.publisher.MqttPublisher` mixes this in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import aiomqtt

from ..recording.writer import Recorder
from .acks import AckRouter, PublishRefused
from .archive import (
    Archive,
    ArchiveUnreadable,
    Unfinished,
    absent_ranges,
    mark_complete,
    read_samples,
)
from .outbox import Key, Outbox
from .requests import contiguous_chunks, parse_replay_request, union
from .topics import Topics, dumps, event_payload, samples_payload

log = logging.getLogger("ratedial.mqtt")

REPLAY_CHUNK = 500  # samples per backfill message: about 35 kB of JSON
QOS1_TIMEOUT_S = 60.0  # a PUBACK slower than this means the connection is gone
UNREADABLE_RETRY_S = 5.0  # after a failed read of the recording, the backlog waits this long


class FromRecordings:
    """The publisher's republishing half; the attributes are the publisher's."""

    topics: Topics
    recorder: Recorder
    archives: list[Archive]
    outbox: Outbox
    rater_of: Callable[[str], str | None]
    # the first index of a (dial, boot) taken in but not yet recorded (its boot's first
    # samples wait for the clock to be pinned: docs/timing.md), or None
    unrecorded_from: Callable[[str, int], int | None]
    wall_offset_ns: int
    replayed_samples: int
    requests_served: int
    unreadable: int  # reads of the recording that failed (the backlog stayed)
    _resumed: list[Unfinished]
    _old_events: dict[int, set[int]]
    _finished: set[int]
    _requests: asyncio.Queue[dict[str, Any]]
    _acks: AckRouter | None
    refused_messages: int
    refusals: dict[str, int]  # "Not authorized on samples" -> messages refused so
    _refusals_told: set[tuple[str, int]]

    # --- QoS 1 publishing, refusals told ---------------------------------------------------

    def _router(self) -> AckRouter:
        if self._acks is None:  # pragma: no cover - only called while connected
            raise aiomqtt.MqttError("not connected")
        return self._acks

    async def _confirmed(self, topic: str, payload: bytes, *, retain: bool = False,
                         timeout: float = QOS1_TIMEOUT_S) -> None:
        """Publish at QoS 1 and wait for the PUBACK; a refusal is told (:meth:`_refused`)
        and raised as :class:`PublishRefused`."""
        try:
            await self._router().publish(topic, payload, retain=retain, timeout=timeout)
        except PublishRefused as exc:
            self._refused(exc)
            raise

    def _refused(self, exc: PublishRefused) -> None:
        """Count a refusal; say it once per kind of topic and reason (one line)."""
        self.refused_messages += 1
        code, name = exc.refusal
        kind = exc.topic.rsplit("/", 1)[-1]
        why = f"{name} on {kind}"
        self.refusals[why] = self.refusals.get(why, 0) + 1
        if (kind, code) not in self._refusals_told:
            self._refusals_told.add((kind, code))
            log.warning("MQTT: %s; check the broker's access rules for this client. The "
                        "recording keeps everything; the next run of this daemon id publishes "
                        "what was refused", exc)

    def refusal_summary(self) -> str:
        """What was refused, by reason and topic, the most first: ``Not authorized on
        samples: 4990; Not authorized on status: 503``."""
        ranked = sorted(self.refusals.items(), key=lambda kv: -kv[1])
        return "; ".join(f"{why}: {n}" for why, n in ranked)

    def _walls(self, host_ns: list[int | None]) -> list[int | None]:
        """Wall times of host times (None stays None): one pass, no call a sample (live
        batches go through here at every frame)."""
        offset = self.wall_offset_ns
        if None in host_ns:
            return [None if t is None else t + offset for t in host_ns]
        return [t + offset for t in host_ns]  # type: ignore[operator]

    def _recorded_walls(self, rows: list[tuple[Any, ...]]) -> list[int | None]:
        """Wall times as the run that recorded the rows published them live (its wall
        anchor, the row's last column), else with this run's offset."""
        offset = self.wall_offset_ns
        return [r[8] if r[8] is not None else None if r[2] is None else r[2] + offset
                for r in rows]

    async def _send_rows(self, key: Key,
                         rows: list[tuple[Any, ...]]) -> None:
        """Republish recorded rows on the dial's backfill topic at QoS 1."""
        uid, boot = key
        for chunk in contiguous_chunks(rows, REPLAY_CHUNK):
            host_ns = [r[2] for r in chunk]
            payload = samples_payload(
                uid=uid, rater=self.rater_of(uid), daemon=self.topics.daemon, boot_id=boot,
                first_index=chunk[0][0], period_us=0, device_us=[r[1] for r in chunk],
                host_ns=host_ns, wall_ns=self._recorded_walls(chunk),
                count=[r[3] for r in chunk], rating=[r[4] for r in chunk],
                flags=[r[5] for r in chunk], media_s=[r[6] for r in chunk],
                media_state=[r[7] for r in chunk], replay=True)
            try:
                await self._confirmed(self.topics.backfill(uid), payload)
            except PublishRefused:
                self.outbox.backfill_refused(key, chunk[0][0], chunk[-1][0] + 1)
                continue
            self.replayed_samples += len(chunk)
            self.outbox.backfill_acked(key, chunk[0][0], chunk[-1][0] + 1)

    async def _replay(self) -> None:
        """Republish the backlog from the recordings (never from memory), at QoS 1."""
        await asyncio.to_thread(self.recorder.flush)
        for key, first, end in self.outbox.pending():
            for a in range(first, end, REPLAY_CHUNK * 20):
                b = min(end, a + REPLAY_CHUNK * 20)
                try:
                    rows = await asyncio.to_thread(read_samples, self.archives, key, a, b)
                except ArchiveUnreadable as exc:
                    # Not "absent": the backlog stays, and this pass ends after a pause
                    # (the next one starts when it has, reading again).
                    self.unreadable += 1
                    log.warning("MQTT backfill waits: cannot read the recording (%s)", exc)
                    await asyncio.sleep(UNREADABLE_RETRY_S)
                    return
                await self._send_rows(key, rows)
                self.outbox.backfill_acked(key, a, b)  # indices absent from the recordings
        ids = sorted(self.outbox.event_backlog)
        if ids:
            try:
                rows = await asyncio.to_thread(self.archives[0].events, ids, must_read=True)
            except ArchiveUnreadable as exc:
                self.unreadable += 1
                log.warning("MQTT backfill waits: cannot read the recording (%s)", exc)
                await asyncio.sleep(UNREADABLE_RETRY_S)
                return
            await self._publish_event_rows(self.archives[0], rows)
            for i in ids:
                self.outbox.event_acked(i)
        for k, old in list(self._old_events.items()):
            await self._send_events(self.archives[k], sorted(old))
            del self._old_events[k]
        self._finish_resumed()

    async def _send_events(self, archive: Archive,
                           ids: list[int]) -> None:
        await self._publish_event_rows(archive, await asyncio.to_thread(
            archive.events, ids))

    async def _publish_event_rows(self, archive: Archive,
                                  rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            event_id, host_ns, uid, kind, data, wall_ns = row
            topic = self.topics.dial_events(uid) if uid else self.topics.daemon_events
            payload = event_payload(event_id=event_id, kind=kind, host_ns=host_ns,
                                    wall_ns=wall_ns if wall_ns is not None
                                    else host_ns + self.wall_offset_ns, dial=uid,
                                    daemon=self.topics.daemon, run=archive.run_id,
                                    data=json.loads(data), replay=True)
            refused = False
            try:
                await self._confirmed(topic, payload)
            except PublishRefused:
                refused = True
            if archive is self.archives[0]:  # ids count per run: only ours are in the outbox
                if refused:
                    self.outbox.event_refused(event_id)
                else:
                    self.outbox.event_acked(event_id)

    def _finish_resumed(self) -> None:
        """Mark earlier recordings complete once the broker confirmed all of them."""
        for k, u in enumerate(self._resumed, start=1):
            if k in self._finished or k in self._old_events:
                continue
            if not any(self.outbox.overlaps(key, a, b) for key, rs in u.ranges.items()
                       for a, b in rs):
                self._finished.add(k)
                if mark_complete(u.archive.path):
                    log.info("earlier recording %s: the broker now has all of it",
                             u.archive.path.name)

    # --- replay requests from subscribers ------------------------------------------------

    async def _read_requests(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            req = parse_replay_request(message.payload)
            if req is None:
                log.warning("ignored a malformed replay request on %s", message.topic)
                continue
            try:
                self._requests.put_nowait(req)
            except asyncio.QueueFull:
                log.warning("replay requests arrive faster than they can be served; "
                            "one was dropped (the requester will ask again)")

    async def _serve_requests(self) -> None:
        while True:
            req = await self._requests.get()
            if "run" in req:
                await self._serve_event_request(req)
                continue
            key: Key = (req["dial"], req["boot"])
            # indices taken in but not recorded yet are neither sent nor absent: they go out
            # live soon, and the requester asks again for what it still lacks
            held = self.unrecorded_from(*key)
            await asyncio.to_thread(self.recorder.flush)
            absent: list[list[int]] = []
            try:
                for first, end in union(req["ranges"]):  # each index once
                    rows = await asyncio.to_thread(read_samples, self.archives, key, first, end)
                    await self._send_rows(key, rows)
                    known = end if held is None else max(first, min(end, held))
                    absent += [[a, b] for a, b in absent_ranges(first, known,
                                                                (r[0] for r in rows))]
            except ArchiveUnreadable as exc:
                # No answer rather than a wrong "absent": the requester asks again.
                self.unreadable += 1
                log.warning("replay request not answered: cannot read the recording (%s)", exc)
                continue
            reply = {"v": 1, "dial": key[0], "boot": key[1],
                     "ranges": [list(r) for r in req["ranges"]], "absent": absent}
            with contextlib.suppress(PublishRefused):  # told; the requester asks again
                await self._confirmed(self.topics.replayed, dumps(reply))
                self.requests_served += 1

    async def _serve_event_request(self, req: dict[str, Any]) -> None:
        """Republish events of one run (this one or an earlier one it holds) by id."""
        archive = next((a for a in self.archives if a.run_id == req["run"]), None)
        await asyncio.to_thread(self.recorder.flush)
        absent: list[list[int]] = []
        for first, end in union(req["events"]):  # each id once
            found: list[int] = []
            if archive is not None:
                rows = await asyncio.to_thread(archive.events, range(first, end))
                found = [r[0] for r in rows]
                await self._publish_event_rows(archive, rows)
            absent += [[a, b] for a, b in absent_ranges(first, end, found)]
        reply = {"v": 1, "run": req["run"], "events": [list(r) for r in req["events"]],
                 "absent": absent}
        with contextlib.suppress(PublishRefused):  # told; the requester asks again
            await self._confirmed(self.topics.replayed, dumps(reply))
            self.requests_served += 1
