"""The live side against what a careful lab engineer tries: credentials in a URL, config
values out of range, file names on the broker, a monitor given what it cannot use, and the
first event of a dial in the recording."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ratedial.config import load_config
from ratedial.daemon.sinks import RecorderSink
from ratedial.errors import UsageError
from ratedial.mqtt.requests import parse_broker
from ratedial.mqtt.topics import event_payload
from ratedial.outputs import EventOut
from ratedial.recording.writer import Recorder


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], text=True,
                          capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("url", ["mqtt://labuser:s3cret@127.0.0.1:1883",
                                 "mqtts://labuser@broker.lab:8883", "mqtt://:s3cret@h"])
def test_credentials_in_a_broker_url_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_broker(url)
    assert "s3cret" not in str(err.value) and "labuser" not in str(err.value)
    assert "RATEDIAL_MQTT_PASSWORD" in str(err.value)
    res = run("monitor", "--broker", url, "--duration", "1")
    assert res.returncode == 2 and "s3cret" not in res.stderr + res.stdout, res.stderr
    assert res.stderr.count("\n") == 1 and "credentials" in res.stderr


def test_a_broker_url_takes_nothing_after_the_port() -> None:
    with pytest.raises(UsageError, match="nothing after the port"):
        parse_broker("mqtt://127.0.0.1:1883/extra/path")
    assert parse_broker("mqtt://127.0.0.1:1883/").port == 1883


@pytest.mark.parametrize(("text", "words"), [
    ("[mqtt]\nlive_expiry_s = -1\n", "live_expiry_s"),
    ("[mqtt]\nlive_qos = 3\n", "live_qos"),
    ("[mqtt]\nbatch_ms = -5\n", "batch_ms"),
    ("[mqtt]\ntopic_prefix = \"lab/#\"\n", "wildcard"),
    ("[mqtt]\ntopic_prefix = \"lab/+/x\"\n", "wildcard"),
    ("[mqtt]\ntopic_prefix = \"\"\n", "empty"),
    ("[mqtt]\ntopic_prefix = \"/lab/\"\n", "empty level"),
    # an audit (2026-12-05): the broker refused every message, and the run exited 0
    ("[mqtt]\ntopic_prefix = \"$SYS/lab\"\n", "are the broker's own"),
    ("duration_s = -3\n", "duration_s"),
    ("duration_s = 0\n", "duration_s"),
    ("duration_s = 1e308\n", "between 0.1 and 1e9"),  # as --duration (an audit, 2026-12-05)
    # an audit (2026-12-04): a date in [session] was a traceback and left a broken file;
    # a rater's dial given as a number, or an empty label, was taken as text
    ("[session]\nwhen = 2024-01-01\n", "session.when"),
    ("[session]\nx = nan\n", "session.x"),
    ("[session]\nx = [1, 2]\n", "session.x"),
    ("[raters]\nclient = 5\n", "raters.client"),
    ("[raters]\nclient = \"\"\n", "raters.client"),
    ("[raters]\n\"\" = \"b7adc53fe7ba5bcf\"\n", "empty key"),
    ("[scale]\nadc_units_per_point = 0\n", "adc_units_per_point"),
    ("[mqtt]\nlive_expiry_s = 1.5\n", "live_expiry_s"),
    ("[mqtt]\nkey_file = \"k.pem\"\n", "cert_file"),  # was silently ignored
])
def test_config_values_out_of_range_are_one_line(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=words):
        load_config(path)
    res = run("run", "--config", str(path), "--no-scan", "--broker", "none",
              "--record", str(tmp_path / "r.ratedial"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and words in res.stderr, res.stderr
    assert not (tmp_path / "r.ratedial").exists()


def test_a_missing_ca_file_is_named_at_start(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[mqtt]\ntls = true\nca_file = \"{tmp_path / 'nope.pem'}\"\n")
    res = run("run", "--config", str(path), "--no-scan", "--broker", "mqtt://127.0.0.1:1",
              "--record", str(tmp_path / "r.ratedial"))
    assert res.returncode == 2, res.stderr
    assert "nope.pem" in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr


def test_events_on_the_broker_name_no_files() -> None:
    for kind, data in (("media_load", {"media_id": 1, "path": "/v/Jane Doe therapy.mp4",
                                       "duration_s": 20.0}),
                       ("run_start", {"recording": "JaneDoe-client.ratedial"}),
                       ("dial_connected", {"port": "/dev/ttyACM0", "boot_id": 7})):
        payload = json.loads(event_payload(event_id=1, kind=kind, host_ns=1, wall_ns=2,
                                           dial=None, daemon="d1", data=data))
        text = json.dumps(payload)
        assert "Jane" not in text and "ttyACM0" not in text, text
    assert payload["data"] == {"boot_id": 7}


@pytest.mark.parametrize(("args", "words"), [
    (("--prefix", "a/#"), "--prefix"),
    (("--prefix", "a//b"), "--prefix"),
    (("--broker", "none"), "monitor subscribes to a running broker"),
    (("--broker", "embedded"), "monitor subscribes to a running broker"),
    # names only what monitor takes (it refuses embedded and none, above)
    (("--broker", "http://x"), "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]\n"),
])
def test_monitor_refuses_what_it_cannot_use_in_one_line(args: tuple[str, ...],
                                                        words: str) -> None:
    res = run("monitor", *args, "--duration", "1")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and words in res.stderr, res.stderr


def test_a_dials_first_event_has_its_dial_id(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "r.ratedial", meta={})
    sink = RecorderSink(rec, raters=lambda uid: "client")
    sink.handle([EventOut("aa" * 8, 5, "dial_connected",
                          {"port": "/dev/ttyACM0", "boot_id": 3, "firmware": "1.2",
                           "board": "rp2", "backend": "pio"}),
                 EventOut("", 6, "run_note", {})])
    rec.close()
    con = sqlite3.connect(tmp_path / "r.ratedial")
    events = con.execute("SELECT kind, dial_id FROM events ORDER BY event_id").fetchall()
    dials = con.execute("SELECT dial_id, uid, rater, board, firmware, backend FROM dials")
    assert events == [("dial_connected", 1), ("run_note", None)]
    assert dials.fetchall() == [(1, "aa" * 8, "client", "rp2", "1.2", "pio")]


def test_two_raters_on_one_dial_are_refused(tmp_path: Path) -> None:
    res = run("run", "--no-scan", "--broker", "none", "--rater", "client=AA00000000000000",
              "--rater", "therapist=aa00000000000000", "--record", str(tmp_path / "r.ratedial"))
    assert res.returncode == 2, res.stderr
    assert "client and therapist both name dial" in res.stderr
    assert res.stderr.strip().count("\n") == 0 and not (tmp_path / "r.ratedial").exists()


def test_a_rater_whose_dial_never_came_is_named_at_the_end(tmp_path: Path) -> None:
    from ratedial.virtual import VirtualDial

    with VirtualDial(seed=74, subprocess=True) as dial:
        res = run("run", "--port", dial.port, "--no-scan", "--broker", "none", "--duration",
                  "2", "--rater", "client=0000000000000000", "--rater",
                  f"therapist={dial.port}", "--record", str(tmp_path / "r.ratedial"))
    assert res.returncode == 0, res.stderr
    assert "rater client=0000000000000000: no dial with that id or port was seen" in res.stderr
    assert "therapist=" not in res.stderr


def test_relative_file_names_in_a_config_are_beside_it(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A password file kept next to the config is found whatever folder the command runs
    in; absolute names stay as they are."""
    conf = tmp_path / "lab"
    conf.mkdir()
    (conf / "secret.txt").write_text("s3cret\n")
    path = conf / "c.toml"
    path.write_text(f'[mqtt]\npassword_file = "secret.txt"\nca_file = "{tmp_path / "ca.pem"}"\n'
                    'cert_file = "certs/me.pem"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("RATEDIAL_MQTT_PASSWORD", raising=False)
    mqtt = load_config(path).mqtt
    assert mqtt.password() == "s3cret"
    assert mqtt.ca_file == str(tmp_path / "ca.pem")
    assert mqtt.cert_file == str(conf / "certs" / "me.pem")


def test_a_scale_range_without_a_start_starts_in_its_middle(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[scale]\nminimum = 1\nmaximum = 7\n")
    assert load_config(path).scale.scale().start == 4.0
    path.write_text("[scale]\nminimum = 1\nmaximum = 7\nstart = 2\n")
    assert load_config(path).scale.scale().start == 2.0
    path.write_text("[scale]\nminimum = 1\nmaximum = 7\nstart = 50\n")
    with pytest.raises(UsageError, match="start"):
        load_config(path)


@pytest.mark.parametrize(("seconds", "expected_us"), [(0.0, None), (1.5, 1_500_000)])
def test_long_press_s_zero_means_the_button_never_resets(seconds: float,
                                                         expected_us: int | None) -> None:
    from ratedial.config import RunConfig, ScaleConfig
    from ratedial.daemon.run import Daemon
    from ratedial.wire import Hello

    daemon = Daemon(RunConfig(scan=False, scale=ScaleConfig(long_press_s=seconds)), [])
    h = Hello(seq=1, boot_id=7, time_us=1000, period_us=1000, rate_hz=1000, batch=10,
              tick_bits=30, flags=1, debounce_ms=5, uid=bytes(range(8)), board="virtual",
              firmware="0.1.0", backend="irq")
    core = daemon._bind("/dev/null-port", h, 1)
    assert core is not None and core.rating.long_press_us == expected_us


def test_a_negative_long_press_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[scale]\nlong_press_s = -1\n")
    with pytest.raises(UsageError, match="long_press_s"):
        load_config(path)


@pytest.mark.parametrize("args", [
    ("record", "--mqtt", "mqtt://127.0.0.1:1", "--record", "x.ratedial", "--settle", "nan"),
    ("run", "--no-scan", "--broker", "none", "--duration", "inf"),
    ("devices", "--timeout", "nan"),
    ("virtual-dial", "--drift-ppm", "nan"),
    # without --native-usb a reboot keeps the port: the value did nothing, with no word
    ("virtual-dial", "--reenumerate-s", "2", "--duration", "1"),
    # a Latin-1 byte in a label (a surrogate to Python): it crashed the recorder thread
    ("run", "--no-scan", "--broker", "none", "--rater", "kl\udce9=/dev/null"),
    ("run", "--no-scan", "--broker", "none", "--session", "dyad=\udcff"),
    ("run", "--no-such-option"),
])
def test_a_bad_option_value_is_one_line_and_nan_is_not_a_number(
        args: tuple[str, ...], tmp_path: Path) -> None:
    """``--settle nan`` used to be taken (click's FloatRange lets nan through its bounds) and
    switched every replay request off; a bad value is one line, naming where help is."""
    res = subprocess.run([sys.executable, "-m", "ratedial", *args], text=True,
                         capture_output=True, timeout=60, check=False, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith("ratedial"), res.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_run_whose_port_never_answers_exits_1_and_leaves_no_file(tmp_path: Path) -> None:
    """A --port that exists but where no dial answers for the whole run: exit 1 and one
    line at the end, no file (it used to exit 0 and leave a recording of nothing)."""
    import os as _os

    master, slave = _os.openpty()
    try:
        port = _os.ttyname(slave)
        rec = tmp_path / "probe.ratedial"
        res = run("run", "--no-scan", "--broker", "none", "--port", port, "--record", str(rec),
                  "--duration", "1")
    finally:
        _os.close(master)
        _os.close(slave)
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("ratedial: error: no dial answered on ") and port in last, res.stderr
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())


def test_a_run_whose_port_never_answers_prints_its_json_summary(tmp_path: Path) -> None:
    """An audit (2026-12-05): with --json and no dial answering on its --port, stdout was
    empty (a script parsing it crashed in the case it most needs to detect), while a run
    where another dial answered printed ``error`` and ``silent_ports``. Now both do; the
    exit status stays 1 and no file is kept (``path`` null)."""
    import os as _os

    master, slave = _os.openpty()
    try:
        port = _os.ttyname(slave)
        res = run("run", "--no-scan", "--broker", "none", "--port", port, "--record",
                  str(tmp_path / "probe.ratedial"), "--duration", "1", "--json")
    finally:
        _os.close(master)
        _os.close(slave)
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    summary = json.loads(res.stdout)
    assert summary["error"] == last.removeprefix("ratedial: error: ")
    assert summary["error"].startswith(f"no dial answered on {port} during the run")
    assert summary["silent_ports"] == [port]
    assert summary["path"] is None and summary["dials"] == []
    assert summary["ended"] == "duration"
    assert not list(tmp_path.iterdir())


def test_a_port_that_never_answers_beside_a_dial_that_does_exits_1_and_keeps_the_data(
        tmp_path: Path) -> None:
    """An audit (2026-12-05): with two --ports and one silent, the run exited 0, and its
    --json summary did not say which rater's dial was missing. The data of the dial that
    answered is kept; the exit status and ``silent_ports`` say the other never did."""
    import os as _os

    from ratedial.virtual import VirtualDial

    master, slave = _os.openpty()
    try:
        silent = _os.ttyname(slave)
        rec = tmp_path / "two.ratedial"
        with VirtualDial(seed=76, subprocess=True) as dial:
            res = run("run", "--no-scan", "--broker", "none", "--port", dial.port, "--port",
                      silent, "--record", str(rec), "--duration", "4", "--json")
    finally:
        _os.close(master)
        _os.close(slave)
    assert res.returncode == 1, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last == (f"ratedial: error: no dial answered on {silent} during the run (is the "
                    "firmware installed? try: ratedial flash); the recording "
                    f"{rec} holds the other dials"), res.stderr
    # the line said when it happened gives the same hint (an audit: flash, then devices)
    assert f"ratedial: {silent}: no ratedial dial answered (is the firmware installed? try: " \
        "ratedial flash)" in res.stderr.splitlines(), res.stderr
    summary = json.loads(res.stdout)
    assert summary["silent_ports"] == [silent]
    assert summary["error"] == last.removeprefix("ratedial: error: ")
    assert [d["uid"] for d in summary["dials"]] == [dial.options.uid_bytes.hex()]
    con = sqlite3.connect(rec)
    (n,) = con.execute("SELECT count(*) FROM samples").fetchone()
    con.close()
    assert n == summary["dials"][0]["received"] > 0


def test_a_run_stopped_before_a_slow_dial_answered_says_so() -> None:
    """A code review (2026-12-05): a run stopped (Ctrl+C, a short --duration) before a
    second dial's first answer blamed its firmware."""
    from ratedial.daemon.summary import RunSummary, silent_ports_error

    early = RunSummary(path=Path("r.ratedial"), seconds=1.2, silent_ports=["/dev/ttyACM1"])
    assert silent_ports_error(early) == (
        "stopped before a dial answered on /dev/ttyACM1; the recording r.ratedial holds the "
        "other dials")
    late = RunSummary(path=Path("r.ratedial"), seconds=60.0, silent_ports=["/dev/ttyACM1"])
    assert "is the firmware installed?" in (silent_ports_error(late) or "")
    assert silent_ports_error(RunSummary(path=Path("r.ratedial"), seconds=60.0)) is None
    import io

    from rich.console import Console

    from ratedial.daemon.summary import print_summary

    out = io.StringIO()
    print_summary(Console(file=out, width=200), early)
    assert "/dev/ttyACM1: no dial answered before the run was stopped" in out.getvalue()


def test_a_video_without_a_player_is_stored_as_mpv() -> None:
    """``--video`` implies ``--player mpv``: the recording's meta.config said "none"."""
    from ratedial.config import RunConfig, with_overrides

    assert with_overrides(RunConfig(), video="v.mp4").player == "mpv"
    assert with_overrides(RunConfig(), video=None).player == "none"
    assert with_overrides(RunConfig(), video="v.mp4", player="vlc").player == "vlc"


def test_a_password_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"\xff\xfe\x00pw")
    conf = tmp_path / "c.toml"
    conf.write_text('[mqtt]\npassword_file = "secret"\n')
    res = run("run", "--config", str(conf), "--no-scan", "--broker", "mqtt://127.0.0.1:1",
              "--record", str(tmp_path / "r.ratedial"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "not UTF-8" in res.stderr, res.stderr
    assert not (tmp_path / "r.ratedial").exists()


@pytest.mark.parametrize("option", ["--rater", "--session"])
def test_a_label_given_twice_is_refused(tmp_path: Path, option: str) -> None:
    """It used to keep the last one silently (the dial named first went unlabelled)."""
    res = run("run", "--no-scan", "--broker", "none", "--record", str(tmp_path / "r.ratedial"),
              option, "client=b7adc53fe7ba5bcf", option, "client=/dev/ttyACM5")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "client is given twice" in res.stderr
    assert not (tmp_path / "r.ratedial").exists()


def test_monitor_takes_broker_and_prefix_from_the_config(tmp_path: Path) -> None:
    """docs/configuration.md: monitor reads the config's [mqtt] table; it used to ignore
    broker and topic_prefix there and subscribe at localhost:1883."""
    conf = tmp_path / "c.toml"
    conf.write_text('[mqtt]\nbroker = "mqtt://127.0.0.1:1"\ntopic_prefix = "lab7"\n')
    res = run("monitor", "--config", str(conf), "--duration", "1")
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "127.0.0.1:1" in res.stderr, res.stderr
    conf.write_text('[mqtt]\nbroker = "embedded"\n')
    res = run("monitor", "--config", str(conf), "--duration", "1")
    assert res.returncode == 2 and f"mqtt.broker in {conf} embedded" in res.stderr, res.stderr


def test_a_web_view_that_cannot_start_leaves_no_recording(tmp_path: Path) -> None:
    """An audit (2026-12-04): a bad --web address or a port in use was refused in one line,
    but after the recording was created: the empty file then refused the corrected command."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        for addr in ("127.0.0.1:99999", f"127.0.0.1:{busy.getsockname()[1]}"):
            path = tmp_path / "r.ratedial"
            res = run("run", "--no-scan", "--broker", "none", "--record", str(path),
                      "--web", addr, "--duration", "1")
            assert res.returncode in (1, 2), res.stderr
            assert res.stderr.strip().count("\n") == 0, res.stderr
            assert not path.exists() and not list(tmp_path.iterdir()), res.stderr


def test_default_recording_names_of_one_second_do_not_collide(tmp_path: Path,
                                                              monkeypatch) -> None:
    """Two daemons started in the same second: the second used to fail with "already
    exists" (an audit, 2026-12-04)."""
    from ratedial.daemon import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app.time, "strftime", lambda fmt: "20261204-155333")
    first = app.default_recording_path()
    assert first == Path("recordings/20261204-155333.ratedial")
    first.parent.mkdir()
    first.touch()
    assert app.default_recording_path() == Path("recordings/20261204-155333-2.ratedial")
    Path("recordings/20261204-155333-2.ratedial").touch()
    assert app.default_recording_path() == Path("recordings/20261204-155333-3.ratedial")


def test_help_shows_no_empty_ranges() -> None:
    """Options that take any finite number said ``[default: 1.0; x<=None]``."""
    for cmd in ("run", "virtual-dial", "monitor", "record", "analyze"):
        res = run(cmd, "--help")
        assert res.returncode == 0 and "None]" not in res.stdout, (cmd, res.stdout)


def test_record_into_a_folder(tmp_path: Path) -> None:
    """``--record FOLDER/`` used to create a file named FOLDER."""
    import stat

    res = run("run", "--no-scan", "--broker", "none", "--duration", "0.2",
              "--record", f"{tmp_path / 'new'}/")
    assert res.returncode == 0, res.stderr
    (made,) = (tmp_path / "new").glob("*.ratedial")
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    res = run("run", "--no-scan", "--broker", "none", "--duration", "0.2",
              "--record", str(tmp_path / "new"))  # an existing folder: another file in it
    assert res.returncode == 0, res.stderr
    assert len(list((tmp_path / "new").glob("*.ratedial"))) == 2


def test_a_rater_by_port_matches_however_the_port_is_written(tmp_path: Path,
                                                             monkeypatch) -> None:
    """``--rater client=dial0`` (relative) or a by-id link named the port of a dial opened
    as its absolute path: the labels were compared as text and the dial went unlabelled."""
    from ratedial.config import RunConfig

    port = tmp_path / "dial0"
    port.touch()
    link = tmp_path / "by-id-usb-ratedial"
    link.symlink_to(port)
    monkeypatch.chdir(tmp_path)
    for ident in ("dial0", str(link), str(port)):
        cfg = RunConfig(raters={"client": ident})
        assert cfg.raters_for("e66038b7132f4a2c", str(port)) == ["client"], ident
    assert RunConfig(raters={"client": "dial1"}).raters_for("e66038b7132f4a2c",
                                                            str(port)) == []


def test_a_rater_names_a_windows_port_however_it_is_written(monkeypatch) -> None:
    """The check before a run takes ``--rater client=com3`` for ``--port COM3`` (one
    port, as Windows sees it): the dial that answers there gets the label too (a review:
    the label was compared as text, and the dial went unlabelled). Windows' port names
    are played here by giving the config the win32 key."""
    from ratedial import _platform, config

    monkeypatch.setattr(config, "port_key", lambda p: _platform.port_key(p, "win32"))
    for ident in ("COM3", "com3", "\\\\.\\COM3"):
        cfg = config.RunConfig(raters={"client": ident})
        assert cfg.raters_for("e66038b7132f4a2c", "COM3") == ["client"], ident
    assert config.RunConfig(raters={"client": "COM4"}).raters_for("e66038b7132f4a2c",
                                                                   "COM3") == []


def test_a_bare_ratedial_prints_its_help_not_an_error() -> None:
    """An audit (2026-12-05): `ratedial` alone said "ratedial: error: Usage: ..." with the
    whole help inside an error line and a hint to see the help."""
    res = run()
    assert res.returncode == 2 and res.stdout.startswith("Usage: "), res
    assert "error" not in res.stderr and "Commands:" in res.stdout
