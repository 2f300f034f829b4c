"""Sampler, packer, transmit queue and app logic, under MicroPython with fake hardware.

Each ``check_*`` in tests/firmware/app_checks.py runs in a fresh interpreter: a manual
clock and timer (the timer callback runs with the heap locked), a link whose capacity the
check controls, and a reference decoder of the stream that reached the link. The checks
assert on exact values; here we assert they ran to the end.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mpy import FIRMWARE, TESTS, run_mpy

CHECKS = re.findall(
    r"^def (check_\w+)\(", (TESTS / "firmware" / "app_checks.py").read_text(), re.MULTILINE
)
BOARDS = sorted((FIRMWARE / "boards").glob("*.py"))
KEYS = {
    "board",
    "backend",
    "pin_a",
    "pin_b",
    "pin_button",
    "button_active_low",
    "pull_up",
    "rate_hz",
    "batch",
    "debounce_ms",
    "queue_frames",
}


def test_checks_found() -> None:
    assert len(CHECKS) >= 15
    for name in (
        "check_host_not_reading",
        "check_ring_overflow",
        "check_button_debounce",
        "check_heap_lock_catches_allocation",
        "check_run_asyncio_shell",
        "check_run_scheduled_shell",
        "check_steady_state_allocates_nothing",
        "check_frame_job_waits_for_main_loop_work",
        "check_first_frame_goes_at_once",
    ):
        assert name in CHECKS


# run_mpy empties MICROPYPATH, which also drops the frozen modules (asyncio) from sys.path.
PRELUDE = "import sys\nsys.path.append('.frozen')\n"


@pytest.mark.parametrize("name", CHECKS)
def test_app_check(name: str) -> None:
    out = run_mpy(f"{PRELUDE}import app_checks\napp_checks.{name}()\nprint('PASS')\n", timeout=60)
    assert out.splitlines()[-1] == "PASS", out


def test_host_not_reading_reports_drops() -> None:
    out = run_mpy(f"{PRELUDE}import app_checks\napp_checks.check_host_not_reading()\n")
    m = re.search(r"dropped frames (\d+) samples (\d+)", out)
    assert m is not None, out
    frames, samples = int(m[1]), int(m[2])
    # 1.5 s of a stalled host at 100 frames/s with 8 slots: most frames are dropped,
    # ten samples each (plus the non-sample frames)
    assert frames > 100
    assert 10 * (frames - 20) <= samples <= 10 * frames


def test_irq_allocation_fails_the_run() -> None:
    # The heap lock around the timer callback is what proves the sampler never allocates;
    # an allocating callback must fail the MicroPython run.
    with pytest.raises(AssertionError, match="MemoryError"):
        run_mpy(
            "from fakehw import FakeHW\n"
            "hw = FakeHW()\n"
            "hw.start_timer(1000, lambda t: [t])\n"
            "hw.step()\n"
        )


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_board_config(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assigns = [n for n in tree.body if isinstance(n, ast.Assign)]
    assert len(assigns) == 1
    assert assigns[0].targets[0].id == "CONFIG"
    cfg = ast.literal_eval(assigns[0].value)
    assert set(cfg) >= KEYS, KEYS - set(cfg)
    assert cfg["backend"] in {"pio", "pcnt", "irq", "adc"}
    if cfg["backend"] == "adc":
        assert isinstance(cfg["pin_adc"], int)
    else:
        assert isinstance(cfg["pin_a"], int)
        assert isinstance(cfg["pin_b"], int)
    if cfg["backend"] == "pio":
        assert cfg["pin_b"] == cfg["pin_a"] + 1
        assert cfg["timer_sm"] // 4 != cfg["pio_sm"] // 4  # the counter fills its PIO block
    if cfg["board"].startswith("pico"):
        assert 4 <= cfg["timer_sm"] <= 11  # the sample clock: PIO1 or PIO2 (dial.hw_rp2)
    assert 50 <= cfg["rate_hz"] <= 2000
    assert 1 <= cfg["batch"] <= 100
    assert cfg["queue_frames"] >= 2
    assert cfg["debounce_ms"] == 5
    # frames/s x wire bytes per frame fits the link: 115200 baud boards stay under 11.5 kB/s
    frame = 4 + 25 + 4 * cfg["batch"] + 4 + 2
    load = cfg["rate_hz"] / cfg["batch"] * frame
    if cfg["board"] == "esp32-devkitc":
        assert load < 0.5 * 11_520, load


def test_expected_boards() -> None:
    assert {"esp32_devkitc", "esp32_s3", "pico", "pico2", "pico_w", "virtual"} <= {
        p.stem for p in BOARDS
    }
