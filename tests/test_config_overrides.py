"""The command line over the config file, as an audit (2026-12-05, config) read
docs/configuration.md: ``--player`` and ``--video`` override the file's ``player`` and
``video``; a ``true`` or ``false`` in the file is undone from the command line; ``~`` in a
path is the home folder; and smaller messages that named the wrong thing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ratedial.config import RunConfig, load_config
from ratedial.errors import UsageError


def run(*args: str, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], text=True,
                          capture_output=True, timeout=120, check=False, cwd=cwd, env=env)


def stored_config(folder: Path) -> dict[str, object]:
    (path,) = folder.glob("*.ratedial")
    with sqlite3.connect(path) as con:
        (value,) = con.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
    config: dict[str, object] = json.loads(value)
    return config


def empty_run(tmp_path: Path, conf: str, *flags: str) -> tuple[subprocess.CompletedProcess[str],
                                                                Path]:
    """A run with no dial (--no-scan and no port: it records nothing for half a second)."""
    (tmp_path / "c.toml").write_text(conf)
    out = tmp_path / "out"
    res = run("run", "--config", "c.toml", "--no-scan", "--broker", "none", "--duration",
              "0.5", "--record", "out/", *flags, cwd=tmp_path)
    return res, out


def test_player_flags_override_the_files_player_and_video(tmp_path: Path) -> None:
    """``--player none`` was ignored (mpv played the file's video); ``--player manual:0`` and
    ``--video`` beside the file's other player were refused, naming flags never typed."""
    from ratedial.player_choice import choose_player

    res, out = empty_run(tmp_path, 'video = "gone.mp4"\nosd = true\n', "--player", "none")
    assert res.returncode == 0, res.stderr
    config = stored_config(out)
    assert (config["player"], config["video"], config["osd"]) == ("none", None, False)
    assert ("ratedial: note: --player none: video = 'gone.mp4' and osd = true in c.toml are "
            "for mpv: left unused") in res.stderr.splitlines()

    cfg = RunConfig(video="v.mp4")
    chosen = choose_player(cfg, path="c.toml", player="manual:0", video=None, osd=None)
    assert (chosen.cfg.player, chosen.cfg.video) == ("manual:0", None)
    assert chosen.notes == ("--player manual:0: video = 'v.mp4' in c.toml is for mpv: "
                            "left unused",)
    chosen = choose_player(cfg, path="c.toml", player="mpv:/tmp/s", video=None, osd=None)
    assert (chosen.cfg.player, chosen.cfg.video, chosen.notes) == ("mpv:/tmp/s", "v.mp4", ())
    for file_player, played_by in (("vlc", "mpv"), ("manual:3", "mpv"),
                                   ("mpv:/tmp/s", "mpv:/tmp/s")):
        chosen = choose_player(RunConfig(player=file_player), path="c.toml", player=None,
                               video="w.mp4", osd=None)
        assert (chosen.cfg.player, chosen.cfg.video) == (played_by, "w.mp4")
    chosen = choose_player(RunConfig(video="v.mp4", osd=True), path="c.toml", player=None,
                           video=None, osd=False)
    assert (chosen.cfg.player, chosen.cfg.osd) == ("mpv", False)


def test_a_combination_that_cannot_be_names_where_each_part_came_from() -> None:
    from ratedial.player_choice import choose_player

    def refused(cfg: RunConfig, **flags: object) -> str:
        args: dict[str, object] = {"player": None, "video": None, "osd": None, **flags}
        with pytest.raises(UsageError) as info:
            choose_player(cfg, path="c.toml", **args)  # type: ignore[arg-type]
        return str(info.value)

    assert refused(RunConfig(), player="vlc", video="v.mp4") == \
        "--video plays the file in mpv; it cannot be used with --player vlc"
    assert refused(RunConfig(player="vlc", video="v.mp4")) == \
        ("video = 'v.mp4' in c.toml plays the file in mpv; it cannot be used with "
         "player = 'vlc' in c.toml")
    assert refused(RunConfig(player="vlc"), osd=True) == \
        "--osd draws the rating on mpv's screen; it cannot be used with player = 'vlc' in c.toml"
    assert refused(RunConfig(player="vlc", osd=True)) == \
        ("osd = true in c.toml draws the rating on mpv's screen; it cannot be used with "
         "player = 'vlc' in c.toml (--no-osd leaves it off)")
    chosen = choose_player(RunConfig(osd=True), path="c.toml", player=None, video=None,
                           osd=None)
    assert chosen.notes == ("osd = true in c.toml: no mpv is started or followed (no --player "
                            "or --video): no rating is drawn",)
    chosen = choose_player(RunConfig(), path=None, player="none", video=None, osd=True)
    assert chosen.notes == ("--osd: no mpv is started or followed (--player none): no rating "
                            "is drawn",)  # a code review: it said "no --player or --video"


@pytest.mark.slow
def test_video_on_the_command_line_plays_in_mpv_beside_the_files_vlc(tmp_path: Path) -> None:
    from conftest_media import make_test_video

    video = make_test_video(tmp_path / "v.mp4", seconds=2)
    res, out = empty_run(tmp_path, 'player = "vlc"\n', "--video", str(video))
    assert res.returncode == 0, res.stderr
    config = stored_config(out)
    assert (config["player"], config["video"]) == ("mpv", str(video))
    assert "vlc" not in res.stderr


def test_a_true_or_false_in_the_file_is_undone_by_a_flag(tmp_path: Path) -> None:
    """``osd = true``, ``lsl = true`` and ``scan = false`` had no flag to undo them."""
    res, out = empty_run(tmp_path, "osd = true\nlsl = true\nscan = false\n",
                         "--no-osd", "--no-lsl", "--scan")
    assert res.returncode == 0, res.stderr
    config = stored_config(out)
    assert (config["osd"], config["lsl"], config["scan"]) == (False, False, True)
    assert "osd" not in res.stderr
    kept = tmp_path / "kept"
    kept.mkdir()
    res, out = empty_run(kept, "osd = true\n")
    assert res.returncode == 0, res.stderr
    assert stored_config(out)["osd"] is True  # the file's, with a note: nothing to draw on
    assert ("ratedial: note: osd = true in c.toml: no mpv is started or followed (no --player "
            "or --video): no rating is drawn") in res.stderr.splitlines()
    helped = run("run", "--help").stdout
    for flag in ("--osd / --no-osd", "--lsl / --no-lsl", "--scan / --no-scan"):
        assert flag in helped


def test_a_tilde_in_a_path_is_the_home_folder(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``record = "~/recs/"`` made a folder named ``~`` in the current folder."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    (tmp_path / "c.toml").write_text('record = "~/recs/"\n[mqtt]\npassword_file = "~/pw"\n'
                                     'ca_file = "~/ca.pem"\n')
    res = run("run", "--config", "c.toml", "--no-scan", "--broker", "none", "--duration",
              "0.5", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "~").exists()
    (made,) = (home / "recs").glob("*.ratedial")
    assert f"recording: {made}" in res.stdout
    mqtt = stored_config(home / "recs")["mqtt"]
    assert isinstance(mqtt, dict) and mqtt["ca_file"] == str(home / "ca.pem")
    res = run("run", "--no-scan", "--broker", "none", "--duration", "0.5", "--record",
              "~/flag/", "--port", "~/nodial", cwd=tmp_path, env=env)
    assert res.returncode == 1 and f"cannot open {home}/nodial: no such port" in res.stderr
    res = run("run", "--no-scan", "--broker", "none", "--duration", "0.5", "--record",
              "~/flag/", cwd=tmp_path, env=env)
    assert res.returncode == 0 and len(list((home / "flag").glob("*.ratedial"))) == 1
    res = run("devices", "--port", "~/nodial", "--timeout", "0.2", cwd=tmp_path, env=env)
    assert f"{home}/nodial: no such port" in res.stdout + res.stderr
    res = run("analyze", "~/none.ratedial", cwd=tmp_path, env=env)
    assert str(home / "none.ratedial") in res.stderr
    (tmp_path / "c.toml").write_text('video = "~/v.mp4"\nports = ["~/d"]\n'
                                     '[raters]\nclient = "~/d"\n')
    monkeypatch.setenv("HOME", str(home))
    cfg = load_config(tmp_path / "c.toml")
    assert (cfg.video, cfg.ports, cfg.raters) == (f"{home}/v.mp4", (f"{home}/d",),
                                                  {"client": f"{home}/d"})


def test_a_bad_broker_port_is_said_with_its_range() -> None:
    """``:0`` said "bad port (1-65535)", ``:99999`` and ``:abc`` just "bad port"."""
    from ratedial.mqtt.requests import parse_broker

    for port in ("0", "99999", "abc"):
        with pytest.raises(UsageError, match=r"bad port \(1-65535\)$"):
            parse_broker(f"mqtt://h:{port}")


def test_manual_seconds_that_are_not_a_number_are_said_so() -> None:
    """``manual:nan`` got "SECONDS must be 0 or more"."""
    from ratedial.players.spec import parse_spec

    for spec in ("manual:nan", "manual:inf", "manual:x"):
        with pytest.raises(UsageError, match="needs a number of seconds"):
            parse_spec(spec)
    with pytest.raises(UsageError, match="must be 0 or more"):
        parse_spec("manual:-1")


def test_session_keys_that_differ_only_in_case_are_refused(tmp_path: Path) -> None:
    """``--session dyad=a --session Dyad=b`` stored both keys; ``dyad`` pairs recordings."""
    with pytest.raises(UsageError, match="dyad and Dyad differ only in case"):
        RunConfig(session={"dyad": "a", "Dyad": "b"})
    res = run("run", "--session", "dyad=a", "--session", "Dyad=b", "--no-scan", "--broker",
              "none", "--duration", "0.5", "--record", str(tmp_path / "s.ratedial"))
    assert res.returncode == 2 and "dyad and Dyad differ only in case" in res.stderr
    assert not (tmp_path / "s.ratedial").exists()


def test_credentials_in_the_files_broker_url_are_refused_in_words_about_the_file(
        tmp_path: Path) -> None:
    """The message talked about "a command line" for a URL written in the config file."""
    (tmp_path / "c.toml").write_text('[mqtt]\nbroker = "mqtt://u:pw@127.0.0.1:1"\n')
    res = run("run", "--config", "c.toml", "--no-scan", "--duration", "0.5", cwd=tmp_path)
    assert res.returncode == 2 and "command line" not in res.stderr
    assert "mqtt.broker in c.toml mqtt://***@127.0.0.1:1: credentials do not go in the URL " \
        "(a config file is read by whoever it is shared with" in res.stderr
    assert "pw" not in res.stderr
    res = run("run", "--broker", "mqtt://u:pw@127.0.0.1:1", "--no-scan", "--duration", "0.5")
    assert "a command line is visible to every user of this computer" in res.stderr
    # a --broker that overrides it does not make the file's password safe (an audit: with
    # --broker none, or another URL, the file was run with exit 0)
    for other in ("none", "embedded", "mqtt://127.0.0.1:1"):
        res = run("run", "--config", "c.toml", "--broker", other, "--no-scan", "--duration",
                  "0.5", "--record", "x.ratedial", cwd=tmp_path)
        assert res.returncode == 2, (other, res.stderr)
        assert "mqtt.broker in c.toml mqtt://***@127.0.0.1:1: credentials do not go in the " \
            "URL" in res.stderr and "pw" not in res.stderr
        assert not (tmp_path / "x.ratedial").exists()


def test_a_client_certificate_without_its_key_asks_for_key_file(tmp_path: Path) -> None:
    """``cert_file`` holding no key gave OpenSSL's "[SSL] PEM lib (_ssl.c:3926)"."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"), "-days", "1",
                    "-subj", "/CN=x"], check=True, capture_output=True, timeout=60)
    (tmp_path / "c.toml").write_text('[mqtt]\nbroker = "mqtts://127.0.0.1:1"\n'
                                     'cert_file = "c.pem"\n')
    with pytest.raises(UsageError) as info:
        load_config(tmp_path / "c.toml").mqtt.tls_context()
    assert str(info.value) == (f"cannot use mqtt.cert_file {tmp_path / 'c.pem'}: it holds no "
                               "private key: name the certificate's key in mqtt.key_file")
    (tmp_path / "c.toml").write_text('[mqtt]\nbroker = "mqtts://127.0.0.1:1"\n'
                                     'cert_file = "c.pem"\nkey_file = "k.pem"\n')
    load_config(tmp_path / "c.toml").mqtt.tls_context()  # with its key: used


def test_mpvs_socket_in_the_file_is_in_the_home_folder_and_stored_so() -> None:
    """An audit (2026-12-05): player = "mpv:~/sock" made the socket in the home folder, but
    meta.config kept '~' while configuration.md says such paths are stored expanded."""
    from ratedial.config import RunConfig

    assert RunConfig(player="mpv:~/sock").player == f"mpv:{Path.home()}/sock"
    assert RunConfig(player="mpv:/tmp/s").player == "mpv:/tmp/s"
    assert RunConfig(player="vlc:8080").player == "vlc:8080"

