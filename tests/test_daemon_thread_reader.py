"""The daemon tests of test_daemon_virtual.py again, with every port read by the thread
serial reader (``--serial-io thread``, the Windows default): the same virtual dials, the same
exact accounting through unplugging, reboots, a broker outage and SIGKILL, and the same
clock bound. Each run's recording says which reader it used. The two long runs are shorter
here (20 s of two dials; 28 s of the clock, judged from 15 s on): the reader is the same
from the first second to the last."""

from __future__ import annotations

import json

import pytest

import test_daemon_virtual as base
from daemonrun import query, start_daemon

pytestmark = pytest.mark.slow

CASES = [
    base.test_two_dials_for_30_s_every_sample_recorded_and_published_once,
    base.test_unplug_and_replug_twice_gives_exact_gaps_and_the_run_goes_on,
    base.test_a_reboot_starts_a_new_epoch_without_mixing_indices,
    base.test_broker_down_for_10_s_then_every_sample_reaches_the_subscriber,
    base.test_sigkill_of_the_daemon_loses_at_most_the_commit_interval,
    base.test_clock_mapping_after_30_s_beats_arrival_stamping,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.removeprefix("test_") for c in CASES])
def test_with_the_thread_reader(case, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "TWO_DIALS_S", 20)
    monkeypatch.setattr(base, "CLOCK_RUN_S", 28)
    monkeypatch.setattr(base, "CLOCK_SETTLED_S", 15)
    monkeypatch.setattr(base, "start_daemon",
                        lambda *args: start_daemon("--serial-io", "thread", *args))
    case(tmp_path)
    (path,) = tmp_path.glob("*.ratedial")
    (config,) = query(path, "SELECT value FROM meta WHERE key = 'config'")
    assert json.loads(config[0])["serial"] == {"io": "thread"}
