"""``ratedial record --mqtt`` against a real mosquitto and a real daemon (``ratedial run`` on
a scripted pty): what a collection holds, and what it reports missing, when it starts
after the daemons stopped, and what it keeps of the dials and the brokers it used.

The collector runs in this process (:class:`CollectorShell`), so the test stops it when a
condition holds instead of after a guessed duration.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from brokers import mosquitto
from daemonrun import finish, query, recorded, start_daemon, wait_until
from ratedial._platform.loops import selector_loop
from ratedial.config import MqttConfig
from ratedial.mqtt.collect_shell import CollectConfig, CollectorShell
from scripted import UID, ScriptedPort, stream

DIAL = UID.hex()


def collect_while(broker_url: str, record: Path,
                  driver: Callable[[CollectorShell], Awaitable[None]],
                  **options: Any) -> dict[str, Any]:
    """Collect into ``record`` until ``driver`` returns; the collector's summary."""
    cfg = CollectConfig(mqtt=MqttConfig(broker=broker_url), record=record, settle_s=0.5,
                        **options)

    async def main() -> dict[str, Any]:
        shell = CollectorShell(cfg)
        task = asyncio.create_task(shell.run())
        try:
            await driver(shell)
        finally:
            shell.stop_event.set()
            summary = await task
        return summary

    with asyncio.Runner(loop_factory=selector_loop) as runner:
        return runner.run(main())


async def until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)  # polling a condition, not standing in for one


def run_daemon(tmp_path: Path, broker_url: str, name: str = "room1.ratedial",
               first_frame: int = 0, seconds: int = 2) -> Path:
    """``seconds`` of one scripted 1 kHz dial, recorded and published; the recording."""
    rec = tmp_path / name
    port = ScriptedPort(stream(100 * seconds, first_frame=first_frame), wait_for_host=True)
    try:
        finish(start_daemon("--port", port.path, "--broker", broker_url, "--record", str(rec),
                            "--duration", str(seconds + 1), "--daemon-id", "room1"))
    finally:
        port.close()
    return rec


def dial_row(path: Path) -> tuple[Any, ...]:
    (row,) = query(path, "SELECT uid, board, firmware, backend FROM dials")
    return row


def test_a_collector_started_after_the_daemon_stopped_asks_for_all_and_reports_it_missing(
        tmp_path):
    """Found by a black-box test: a collector started after the daemons had stopped said
    "0 samples still missing" although each dial's retained status announced its boot's
    ``next_index``."""
    with mosquitto(tmp_path / "broker") as broker:
        rec = run_daemon(tmp_path, broker.url)
        indices = sorted(i for _u, _b, i in recorded(rec))
        n = indices[-1] + 1  # the dial status's next_index
        assert len(indices) >= 100 and indices == list(range(indices[0], n))
        col = tmp_path / "late.ratedial"

        async def driver(shell: CollectorShell) -> None:
            await until(lambda: shell.collector is not None
                        and shell.collector.stats.requested_samples >= n, "the request")

        summary = collect_while(broker.url, col, driver)
    # nobody answers (the daemon is gone): all of its boot is reported missing, from index 0
    # (where the daemon's recording starts is not known without its answer)
    assert summary["requested_samples"] == n and summary["holes"] == n
    assert summary["samples"] == 0 and summary["replay_requests"] >= 1
    # the retained status told the board and firmware; the backend is only in the
    # dial_connected event, which the stopped daemon can no longer replay
    assert dial_row(col) == (DIAL, "test", "0.1.0", "")
    # the file says what it lacks: the whole boot, one gap of reason uncollected
    assert query(col, "SELECT COUNT(*) FROM epochs") == [(1,)]
    assert query(col, "SELECT first_index, end_index, reason FROM gaps") == [
        (0, n, "uncollected")]


def test_a_live_collection_has_the_dials_fields_and_every_broker_it_used(tmp_path):
    with mosquitto(tmp_path / "a") as a, mosquitto(tmp_path / "b") as b:
        col = tmp_path / "c.ratedial"
        rec: list[Path] = []

        async def live(shell: CollectorShell) -> None:
            await until(lambda: shell.connects >= 1, "the collector to connect")
            rec.append(await asyncio.to_thread(run_daemon, tmp_path, a.url))
            n = len(recorded(rec[0]))
            await until(lambda: shell.collector is not None
                        and shell.collector.stats.samples >= n, "the samples")

        summary = collect_while(a.url, col, live)
        assert summary["samples"] == len(recorded(rec[0]))
        assert dial_row(col) == dial_row(rec[0]) == (DIAL, "test", "0.1.0", "irq")

        async def connected(shell: CollectorShell) -> None:
            await until(lambda: shell.connects >= 1, "the collector to connect")

        collect_while(b.url, col, connected)  # the broker moved: the same prefix goes on
    with sqlite3.connect(col) as con:
        meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    assert meta["collected"]["prefix"] == "ratedial"
    assert meta["collected"]["brokers"] == [a.url, b.url]
    assert meta["config"]["mqtt"]["broker"] == a.url  # as created
    assert len(meta["resumed_wall_ns"]) == 1
    assert dial_row(col) == (DIAL, "test", "0.1.0", "irq")


def test_an_earlier_run_of_the_daemon_is_served_to_a_collector_that_missed_it(tmp_path):
    """An audit (2026-12-05): the same daemon id ran twice on one dial boot, the collector only
    during the second run. The daemon answered the first run's indices `absent` (it answered
    only from its current recording), the collector took that as the boot's start, and the
    first run's samples were neither in the collected file nor counted missing. Now the
    daemon answers from its other recordings in its folder too."""
    with mosquitto(tmp_path / "broker") as broker:
        first = run_daemon(tmp_path, broker.url, "run1.ratedial")  # indices 0-1999
        col = tmp_path / "late.ratedial"
        second: list[Path] = []

        async def driver(shell: CollectorShell) -> None:
            await until(lambda: shell.connects >= 1, "the collector to connect")
            # the dial's boot went on unread (2000-2999), then the same daemon id again, long
            # enough for the collector's head request to be answered while it runs
            second.append(await asyncio.to_thread(run_daemon, tmp_path, broker.url,
                                                  "run2.ratedial", 300, 8))
            want = len(recorded(first)) + len(recorded(second[0]))
            await until(lambda: shell.collector is not None
                        and shell.collector.stats.samples
                        + shell.collector.stats.backfilled >= want, "both runs' samples")

        # the head request made while no daemon ran is asked again within a second
        summary = collect_while(broker.url, col, driver, request_timeout_s=1.0)
    both = recorded(first) | recorded(second[0])
    start2 = min(i for _u, _b, i in recorded(second[0]))
    assert max(i for _u, _b, i in recorded(first)) == 1999 and start2 >= 3000
    assert recorded(col) == both
    # what no daemon recorded between the runs is a gap, not nothing
    assert query(col, "SELECT first_index, end_index, reason FROM gaps") == [
        (2000, start2, "absent")]
    assert summary["holes"] == 0


def _run_events(path: Path, run: str | None = None) -> list[tuple[int, str]]:
    """A daemon recording's events (id, kind), or a collected file's events of ``run``."""
    if run is None:
        return [(i, k) for i, k in query(path, "SELECT event_id, kind FROM events")]
    return sorted((json.loads(d)["source"]["event_id"], k) for d, k in query(
        path, "SELECT data, kind FROM events") if json.loads(d)["source"]["run"] == run)


def test_a_killed_runs_events_from_a_broker_outage_reach_a_continued_collection(tmp_path):
    """An audit (2026-12-05): a daemon killed during a broker outage had recorded events its
    statuses never announced (broker_down). Its next run republished them while the collector
    was not subscribed (the crashed broker had lost the collector's session); the continued
    collection asked only below the killed run's last next_event, never got them, and said
    "missing_events": 0. A run that ended without an offline status is now asked for its
    events past what is known, and the daemon's next run answers from the killed run's file."""
    rec1, rec2, col = (tmp_path / n for n in ("run1.ratedial", "run2.ratedial", "c.ratedial"))
    with mosquitto(tmp_path / "broker") as broker:
        port1 = ScriptedPort(stream(100_000, boot=81), wait_for_host=True)
        proc1 = start_daemon("--port", port1.path, "--broker", broker.url, "--record",
                             str(rec1), "--daemon-id", "room5")
        runs: list[str] = []
        try:
            async def first(shell: CollectorShell) -> None:
                await until(lambda: shell.collector is not None
                            and shell.collector.stats.events >= 2, "run 1's first events")
                (run1,) = {r for (_d, r) in shell.collector.runs}
                runs.append(run1)
                broker.kill()  # a crash: with its store gone below, the session is lost too
                await until(lambda: ("broker_down" in {k for _i, k in _run_events(rec1)}),
                            "run 1 to record the outage")
                proc1.kill()  # killed while the broker is away: its tail is unannounced
                proc1.wait()

            collect_while(broker.url, col, first)
        finally:
            if proc1.poll() is None:
                proc1.kill()
                proc1.wait()
            port1.close()
        (broker.dir / "mosquitto.db").unlink(missing_ok=True)  # the crash lost its store
        broker.start()
        port2 = ScriptedPort(stream(100_000, boot=82), wait_for_host=True)
        proc2 = start_daemon("--port", port2.path, "--broker", broker.url, "--record",
                             str(rec2), "--daemon-id", "room5")
        try:
            wait_until(rec1, "SELECT value FROM meta WHERE key = 'mqtt_progress'",
                       lambda v: json.loads(v).get("complete") is True)  # republished
            want = _run_events(rec1)
            assert ("broker_down" in {k for _i, k in want})

            async def second(shell: CollectorShell) -> None:
                await until(lambda: _run_events(col, runs[0]) == want
                            and shell.collector is not None
                            and shell.collector.summary()["missing_events"] == 0,
                            "run 1's events in the collection, nothing missing")

            summary = collect_while(broker.url, col, second, request_timeout_s=1.0)
            wait_until(rec2, "SELECT count(*) FROM samples", lambda n: n > 0)
        finally:
            proc2.send_signal(signal.SIGTERM)
            finish(proc2)
            port2.close()
    assert _run_events(col, runs[0]) == want
    assert summary["missing_events"] == 0, summary
