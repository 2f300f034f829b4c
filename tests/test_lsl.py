"""``ratedial run --lsl`` against a virtual dial, read by real pylsl inlets.

Every sample the inlet receives carries exactly the host time the recording holds for it
(``samples.host_ns / 1e9``, compared to the microsecond), the stream survives an unplug and
replug under the same ``source_id``, and button presses arrive as markers.

Inlets are opened with ``processing_flags=0``: raw timestamps, no clock correction (on one
machine the correction is 0 anyway; LabRecorder stores raw stamps plus clock offsets too).
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from daemonrun import finish, query, start_daemon, wait_until

pylsl = pytest.importorskip("pylsl")

from ratedial.virtual import VirtualDial  # noqa: E402

pytestmark = pytest.mark.slow


class Puller(threading.Thread):
    """Pulls an inlet continuously (as LabRecorder does) until stopped."""

    def __init__(self, inlet) -> None:
        super().__init__(daemon=True)
        self.inlet = inlet
        self.samples: list[list] = []
        self.stamps: list[float] = []
        self.last_rx = time.monotonic()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            data, ts = self.inlet.pull_chunk(timeout=0.2, max_samples=4096)
            if ts:
                self.samples += data
                self.stamps += ts
                self.last_rx = time.monotonic()

    def finish(self, quiet_s: float = 1.0, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() - self.last_rx < quiet_s and time.monotonic() < end:
            time.sleep(0.1)
        self._halt.set()
        self.join(5)


def resolve_source(source_id: str, timeout: float = 15.0) -> list:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = pylsl.resolve_byprop("source_id", source_id, minimum=1, timeout=1.0)
        if found:
            return found
    raise AssertionError(f"no LSL stream with source_id {source_id}")


def test_lsl_samples_match_recording_through_unplug_and_markers(tmp_path):
    uid = os.urandom(8).hex()  # unique on this network, so other runs' streams never match
    path = tmp_path / "lsl.ratedial"
    with VirtualDial(seed=31, uid=uid, subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                            "--duration", "14", "--lsl", "--rater", f"client={uid}")
        (info,) = resolve_source(uid)
        inlet = pylsl.StreamInlet(info, max_buflen=60, processing_flags=0)
        full = inlet.info(timeout=5)
        pulls = [Puller(inlet)]
        pulls[0].start()
        # Every ratedial marker stream seen within 2 s (another daemon on this machine has
        # the same marker source_id); ours is told apart by the dial id in its markers.
        markers = [pylsl.StreamInlet(m, processing_flags=0) for m in
                   pylsl.resolve_streams(wait_time=2.0)
                   if m.type() == "Markers" and m.source_id().startswith("ratedial-markers-")]
        assert markers
        for m in markers:
            m.open_stream(timeout=5)  # connect now: markers are not replayed to late inlets
            pulls.append(Puller(m))
            pulls[-1].start()

        wait_until(path, "SELECT count(*) FROM samples", lambda n: n >= 3000)
        dial.control("button 0.3")
        dial.control("unplug 1.5")  # returns once the port is back
        n_after_replug = len(pulls[0].samples)
        wait_until(path, "SELECT count(*) FROM events WHERE kind = 'dial_connected'",
                   lambda n: n >= 2)
        again = resolve_source(uid)  # LabRecorder-style: the same stream, by source_id
        assert [s.uid() for s in again] == [info.uid()]
        out, _ = finish(proc)
        for p in pulls:
            p.finish()

    # The stream's description.
    assert full.type() == "Rating" and full.channel_count() == 2
    assert full.nominal_srate() == 1000 and full.source_id() == uid
    assert full.name() == "ratedial client"
    desc = full.desc()
    ch = desc.child("channels").child("channel")
    labels = []
    while not ch.empty():
        labels.append((ch.child_value("label"), ch.child_value("unit")))
        ch = ch.next_sibling()
    assert labels == [("count", "counts"), ("rating", "points")]
    assert desc.child_value("rater") == "client"
    assert desc.child("scale").child_value("maximum") == "100"
    assert not desc.child("synchronization").empty()

    # Every sample, with the recording's host time to the microsecond.
    rows = query(path, "SELECT s.host_ns, s.count, s.rating FROM samples s JOIN epochs e "
                       "USING (epoch_id) WHERE s.host_ns IS NOT NULL "
                       "ORDER BY e.epoch_id, s.sample_index")
    got = pulls[0]
    assert len(got.stamps) > 8_000
    first = round(got.stamps[0] * 1e6)
    start = next(i for i, r in enumerate(rows) if round(r[0] / 1000) == first)
    expect = rows[start:]
    assert len(got.stamps) == len(expect), (len(got.stamps), len(expect))
    worst_us = max(abs(t * 1e9 - r[0]) / 1000 for t, r in zip(got.stamps, expect, strict=True))
    assert worst_us < 1.0, worst_us
    assert [(int(s[0]), s[1]) for s in got.samples] == [(r[1], r[2]) for r in expect]
    assert len(got.stamps) > n_after_replug  # it went on after the replug
    unplugged = query(path, "SELECT count(*) FROM gaps WHERE reason = 'unplugged'")[0][0]
    assert unplugged == 1

    # Markers: the button press and release, the loss and the return of the dial.
    ours = [json.loads(s[0]) for p in pulls[1:] for s in p.samples]
    ours = [m for m in ours if m.get("dial") == uid]
    kinds = [m["event"] for m in ours]
    recorded = query(path, "SELECT e.event_id, e.kind FROM events e JOIN dials d "
                           "USING (dial_id) WHERE d.uid = ? AND e.kind IN "
                           "('button', 'dial_lost', 'dial_connected') ORDER BY 1", uid)
    # markers are not replayed to a late inlet: the dial's first dial_connected came before
    # ours connected; from the first marker on, every one, in order
    assert ours and recorded[0][1] == "dial_connected", recorded
    recorded = [(i, k) for i, k in recorded if i >= ours[0]["event_id"]]
    assert [k for _, k in recorded] == kinds  # every one, in order
    assert [m["event_id"] for m in ours] == [i for i, _ in recorded]
    assert "button" in kinds and "dial_lost" in kinds, kinds
    assert next(m for m in ours if m["event"] == "button")["pressed"] is True
    assert all(m.get("rater") == "client" for m in ours)
    print(f"lsl: {len(got.stamps)} samples, worst |LSL - recording| {worst_us:.4f} us, "
          f"markers {kinds}")
    assert out


def test_markers_carry_no_file_names() -> None:
    """LSL streams are visible to the whole network: a marker leaves out the event keys that
    name files (the video's path, the recording, the port), as MQTT payloads do."""
    from ratedial.lsl import LslSink
    from ratedial.outputs import LOCAL_ONLY, EventOut

    sink = LslSink(raters=lambda uid: None, pylsl=pylsl)
    pushed: list[dict[str, object]] = []

    class Outlet:
        def push_sample(self, values: list[str], t: float) -> None:
            pushed.append(json.loads(values[0]))

    sink._markers = Outlet()
    sink.handle([EventOut("", 1, "media_load", {"path": "/v/Jane Doe therapy.mp4",
                                                "duration_s": 3000.0}),
                 EventOut("ab" * 8, 2, "dial_connected", {"port": "/dev/ttyACM0",
                                                          "dial_id": 1}),
                 EventOut("", 3, "run_start", {"recording": "D07.ratedial"})])
    assert [m["event"] for m in pushed] == ["media_load", "dial_connected"]  # run_start: no marker
    assert pushed[0]["duration_s"] == 3000.0 and pushed[1]["dial_id"] == 1
    for m in pushed:
        assert not LOCAL_ONLY.intersection(m), m
        assert "Jane" not in json.dumps(m)


def test_a_liblsl_that_cannot_load_is_one_line(tmp_path) -> None:
    """Found by a black-box test: pylsl installed but its liblsl not loadable (PYLSL_LIB
    naming the wrong file; platforms without a bundled liblsl) made --lsl a traceback."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "not-liblsl.so"
    bad.write_text("x")
    res = subprocess.run([sys.executable, "-m", "ratedial", "run", "--broker", "none",
                          "--no-scan", "--duration", "0.5", "--lsl", "--record",
                          str(tmp_path / "r.ratedial")], capture_output=True, text=True,
                         timeout=60, check=False, env={**os.environ, "PYLSL_LIB": str(bad)})
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    assert "cannot load liblsl" in res.stderr
    assert not (tmp_path / "r.ratedial").exists()


def test_a_dials_markers_always_carry_its_rater() -> None:
    """An audit (2026-12-05): a dial without a label gave markers without a ``rater`` key,
    while the docs' example always has one (null now, as on MQTT)."""
    from ratedial.lsl import LslSink
    from ratedial.outputs import EventOut

    labels = {"ab" * 8: "client"}
    sink = LslSink(raters=labels.get, pylsl=pylsl)
    pushed: list[dict[str, object]] = []

    class Outlet:
        def push_sample(self, values: list[str], t: float) -> None:
            pushed.append(json.loads(values[0]))

    sink._markers = Outlet()
    sink.handle([EventOut("ab" * 8, 1, "button", {"pressed": True}),
                 EventOut("cd" * 8, 2, "button", {"pressed": True}),
                 EventOut("", 3, "media_play", {"media_s": 1.0})])
    assert [(m.get("dial"), m.get("rater", "absent")) for m in pushed] == [
        ("ab" * 8, "client"), ("cd" * 8, None), (None, "absent")]


@pytest.mark.parametrize("lab_config", [False, True])
def test_liblsl_says_no_info_lines_unless_the_labs_config_asks(tmp_path, lab_config) -> None:
    """An audit (2026-12-05): --lsl put liblsl's ``INFO| Loaded default config`` and its
    build on stderr, where a --json script reads the live view's URL. A lab's own
    lsl_api.cfg is still what liblsl reads (its level too)."""
    import subprocess
    import sys

    if os.path.exists("/etc/lsl_api/lsl_api.cfg"):
        pytest.skip("this machine has an /etc/lsl_api/lsl_api.cfg")
    if lab_config:
        (tmp_path / "lsl_api.cfg").write_text("[log]\nlevel = 0\n")
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    env["HOME"] = str(tmp_path)  # no ~/lsl_api/lsl_api.cfg of this machine's user
    res = subprocess.run([sys.executable, "-m", "ratedial", "run", "--broker", "none",
                          "--no-scan", "--duration", "0.3", "--lsl", "--json", "--web",
                          "--record", str(tmp_path / "r.ratedial")], capture_output=True,
                         text=True, timeout=60, check=False, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    if lab_config:
        assert any("INFO|" in line and "lsl_api.cfg" in line for line in lines), lines
    else:
        assert not any("INFO|" in line or "git:" in line for line in lines), lines
        assert any(line.startswith("ratedial: live view on ") for line in lines), lines
