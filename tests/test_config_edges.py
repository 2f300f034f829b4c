"""Config files and option values as an independent audit (2026-12-04) tried them: a key
written with dashes, written twice, a file saved with a byte-order mark, values from the
file named by their key, numbers too large to compute with, names longer than MQTT allows,
two rater labels for one dial, and the folders a failed start created."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ratedial.config import MqttConfig, RunConfig, load_config, prefix_problem
from ratedial.errors import UsageError


def run(*args: str, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], text=True,
                          capture_output=True, timeout=60, check=False, cwd=cwd, env=env)


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().count("\n") == 0, res.stderr
    return res.stderr.strip()


def test_duration_written_with_dashes_is_the_same_key(tmp_path: Path) -> None:
    """``duration-s`` was typed as text (its default is None and the check looked at the
    spelling): a number was refused, a string was a traceback."""
    path = tmp_path / "c.toml"
    path.write_text("duration-s = 5\n")
    assert load_config(path).duration_s == 5.0
    path.write_text('duration-s = "5"\n')
    with pytest.raises(UsageError, match="duration-s must be a number"):
        load_config(path)
    res = run("run", "--config", str(path), "--no-scan", "--broker", "none",
              "--record", str(tmp_path / "r.ratedial"))
    assert res.returncode == 2 and "duration-s must be a number" in one_line(res)
    assert not (tmp_path / "r.ratedial").exists()


def test_a_key_written_both_ways_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("ping_interval_s = 0.2\nping-interval-s = 0.3\n")
    with pytest.raises(UsageError, match="ping_interval_s and ping-interval-s are the same key"):
        load_config(path)
    path.write_text("[mqtt]\nbatch_ms = 10\nbatch-ms = 20\n")
    with pytest.raises(UsageError, match=r"mqtt\.batch_ms and mqtt\.batch-ms"):
        load_config(path)


def test_a_byte_order_mark_is_not_part_of_the_file_or_the_password(tmp_path: Path) -> None:
    """Windows Notepad may save UTF-8 with a BOM: the config was "not valid TOML" and a
    password file's BOM became part of the password (the broker said "not authorized")."""
    (tmp_path / "pw.txt").write_bytes("\ufeffs3cret\r\n".encode())
    path = tmp_path / "c.toml"
    path.write_bytes('\ufeffduration_s = 1\n[mqtt]\npassword_file = "pw.txt"\n'.encode())
    cfg = load_config(path)
    assert cfg.duration_s == 1.0
    assert cfg.mqtt.password() == "s3cret"


def test_a_vlc_password_file_that_is_not_text_is_one_line(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from ratedial.players.vlc import vlc_password

    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    monkeypatch.delenv("RATEDIAL_VLC_PASSWORD", raising=False)
    monkeypatch.setenv("RATEDIAL_VLC_PASSWORD_FILE", str(tmp_path / "bad.txt"))
    with pytest.raises(UsageError, match=r"RATEDIAL_VLC_PASSWORD_FILE .* is not UTF-8 text"):
        vlc_password()
    (tmp_path / "bom.txt").write_bytes("\ufeffvlcpw\n".encode())
    monkeypatch.setenv("RATEDIAL_VLC_PASSWORD_FILE", str(tmp_path / "bom.txt"))
    assert vlc_password() == "vlcpw"


@pytest.mark.parametrize(("text", "flag", "key"), [
    ('player = "bogus"\n', "--player", "player = 'bogus' in "),
    ('web = "x:y"\n', "--web", "web = 'x:y' in "),
    ('[mqtt]\nbroker = "bogus://x"\n', "--broker", "mqtt.broker in "),
])
def test_a_bad_value_from_the_file_names_its_key_and_file(tmp_path: Path, text: str,
                                                         flag: str, key: str) -> None:
    """The message named the flag (``--player bogus``) of a value the user never typed."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    res = run("run", "--config", str(path), "--no-scan", "--record",
              str(tmp_path / "r.ratedial"))
    line = one_line(res)
    assert res.returncode == 2, res.stderr
    assert key in line and str(path) in line and flag not in line, line
    assert not (tmp_path / "r.ratedial").exists()


@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_web_address_in_the_file_is_refused(tmp_path: Path, value: str) -> None:
    """An audit (2026-12-05): ``web = ""``, written to mean "off", started a view on
    127.0.0.1 and a free port."""
    path = tmp_path / "c.toml"
    path.write_text(f'web = "{value}"\n')
    res = run("run", "--config", str(path), "--no-scan", "--broker", "none", "--duration",
              "0.2", "--record", str(tmp_path / "r.ratedial"))
    line = one_line(res)
    assert res.returncode == 2, res.stderr
    assert f"web = {value!r} in {path}: an empty address is not 'off'" in line, line
    assert "--no-web" in line and not (tmp_path / "r.ratedial").exists()


def test_no_web_undoes_the_files_web(tmp_path: Path) -> None:
    """configuration.md: every key of the file can be undone for a run; ``web`` had no
    flag that did (``No such option '--no-web'``)."""
    path = tmp_path / "c.toml"
    path.write_text('web = "127.0.0.1:0"\n')
    common = ("run", "--config", str(path), "--no-scan", "--broker", "none", "--duration", "0.2")
    res = run(*common, "--record", str(tmp_path / "a.ratedial"))
    assert res.returncode == 0 and "live view on http://127.0.0.1:" in res.stdout, res.stderr
    res = run(*common, "--no-web", "--record", str(tmp_path / "b.ratedial"))
    assert res.returncode == 0 and "live view" not in res.stdout + res.stderr, res.stderr
    path.write_text('web = ""\n')  # undone, so not refused either
    res = run(*common, "--no-web", "--record", str(tmp_path / "c.ratedial"))
    assert res.returncode == 0, res.stderr
    res = run(*common, "--web", "--no-web", "--record", str(tmp_path / "d.ratedial"))
    assert res.returncode == 2 and "--web and --no-web: give one" in one_line(res)
    assert not (tmp_path / "d.ratedial").exists()


def test_monitor_names_the_broker_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[mqtt]\nbroker = "bogus://x"\n')
    res = run("monitor", "--config", str(path), "--duration", "1")
    line = one_line(res)
    assert res.returncode == 2 and f"mqtt.broker in {path}" in line, line


@pytest.mark.parametrize("args", [
    ("analyze", "x.ratedial", "--max-fill", "1e308"),
    ("export", "x.ratedial", "--max-fill", "1e308"),
    ("analyze", "x.ratedial", "--rate", "1e9"),
    ("analyze", "x.ratedial", "--window", "1e300"),
    ("virtual-dial", "--duration", "1e308"),
    ("record", "--mqtt", "mqtt://127.0.0.1:1", "--record", "x.ratedial",
     "--session-expiry", "99999999999"),
])
def test_numbers_too_large_to_compute_with_are_one_line(args: tuple[str, ...],
                                                       tmp_path: Path) -> None:
    """Each was a traceback (OverflowError, a 30 GiB array, struct.error)."""
    res = run(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert one_line(res).startswith("ratedial: error: Invalid value for"), res.stderr
    assert list(tmp_path.iterdir()) == []


def test_names_longer_than_mqtt_allows_are_refused(tmp_path: Path) -> None:
    """Over 65,535 bytes an MQTT string cannot be encoded (struct.error, and a recording
    left behind by ``record --prefix``)."""
    assert prefix_problem("p" * 1000) is None
    assert prefix_problem("p" * 1001) == "longer than 1,000 bytes"
    assert prefix_problem("lab\udce9") == "is not UTF-8 text (a byte of another encoding?)"
    with pytest.raises(UsageError, match=r"mqtt\.client_id is longer than MQTT.s 65,535 bytes"):
        MqttConfig(client_id="c" * 65_536)
    with pytest.raises(UsageError, match=r"mqtt\.username is longer"):
        MqttConfig(username="é" * 40_000)  # 80,000 bytes
    with pytest.raises(UsageError, match=r"mqtt\.client_id cannot be empty"):
        MqttConfig(client_id="")
    for args in (("--prefix", "p" * 70_000), ("--client-id", "c" * 70_000)):
        res = run("record", "--mqtt", "mqtt://127.0.0.1:1", "--record", "r.ratedial",
                  "--duration", "1", *args, cwd=tmp_path)
        assert res.returncode == 2 and "longer than" in one_line(res), res.stderr
        assert list(tmp_path.iterdir()) == []


def test_a_failed_start_leaves_no_folder_it_made(tmp_path: Path) -> None:
    """README: a run that cannot start exits 1 and keeps nothing; the folders made for the
    recording stayed behind, empty. A folder that was there before stays."""
    res = run("run", "--broker", "none", "--no-scan", "--port", str(tmp_path / "nope"),
              "--record", str(tmp_path / "new" / "deeper" / "r.ratedial"))
    assert res.returncode == 1 and "no such port" in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    res = run("run", "--broker", "none", "--no-scan", "--port", str(tmp_path / "nope"),
              "--record", str(tmp_path / "kept" / "sub" / "r.ratedial"))
    assert res.returncode == 1, res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]
    assert list((tmp_path / "kept").iterdir()) == []


def test_two_labels_for_one_port_written_two_ways_are_refused(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    port = tmp_path / "dial0"
    port.touch()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="client and therapist both name dial"):
        RunConfig(raters={"client": "dial0", "therapist": str(port)})


def test_a_dial_named_by_id_and_by_port_is_recorded_without_a_guessed_label(
        tmp_path: Path) -> None:
    """``--rater client=<id> --rater therapist=<its port>``: the dial was recorded as the
    client's, and "therapist" was only named at the end as never seen."""
    from ratedial.virtual import VirtualDial

    rec = tmp_path / "r.ratedial"
    with VirtualDial(seed=75, subprocess=True) as dial:
        uid = dial.options.uid_bytes.hex()
        res = run("run", "--port", dial.port, "--no-scan", "--broker", "none", "--duration",
                  "2", "--rater", f"client={uid}", "--rater", f"therapist={dial.port}",
                  "--record", str(rec))
    assert res.returncode == 0, res.stderr
    assert f"rater labels client and therapist both name dial {uid}" in res.stderr
    assert "was seen" not in res.stderr  # neither label is said to be missing
    con = sqlite3.connect(rec)
    assert con.execute("SELECT uid, rater FROM dials").fetchall() == [(uid, None)]
    # the dial's row has its HELLO's board and firmware (it was made from the conflict event,
    # which came first, and had none)
    assert con.execute("SELECT board, firmware FROM dials").fetchone() == ("virtual", "0.1.0")
    data = [json.loads(d) for (d,) in con.execute(
        "SELECT data FROM events WHERE kind = 'rater_conflict'")]
    assert data == [{"port": dial.port, "labels": ["client", "therapist"]}]


def test_a_bare_ipv6_address_is_a_web_host() -> None:
    from ratedial.web.server import parse_addr

    assert parse_addr("::1") == ("::1", 0)
    assert parse_addr("[::1]:8080") == ("::1", 8080)
    assert parse_addr("localhost:81") == ("localhost", 81)
    with pytest.raises(UsageError, match="port must be a number"):
        parse_addr("a:b:c")


def test_anchors_must_be_points_of_the_scale(tmp_path: Path) -> None:
    """A key that is not a number was taken and then dropped from SPSS value labels."""
    path = tmp_path / "c.toml"
    path.write_text('[scale]\nanchors = { x = "foo" }\n')
    with pytest.raises(UsageError, match="anchors: 'x' is not a point of the scale"):
        load_config(path)
    path.write_text('[scale]\nanchors = { "0" = "low", "12.5" = "some" }\n')
    assert load_config(path).scale.anchors == {"0": "low", "12.5": "some"}


def test_an_mpc_url_with_a_password_does_not_point_at_vlc() -> None:
    from ratedial.players.spec import parse_spec

    with pytest.raises(UsageError) as exc:
        parse_spec("mpc:http://u:pw@127.0.0.1:13579")
    assert "VLC" not in str(exc.value) and "no password in the URL" in str(exc.value)
    with pytest.raises(UsageError, match="RATEDIAL_VLC_PASSWORD"):
        parse_spec("vlc:http://:pw@127.0.0.1:8080")


def test_broker_words_ports_and_tls_files_an_audit_tried(tmp_path: Path) -> None:
    """``--broker None`` was taken as a host named None (the run recorded with the broker
    "down"); port 0 silently became 1883; a CA file with a plain mqtt:// broker was ignored
    and the password went unencrypted."""
    from ratedial.mqtt.requests import parse_broker

    with pytest.raises(UsageError, match="bad port"):
        parse_broker("mqtt://127.0.0.1:0")
    assert parse_broker("127.0.0.1:1884").port == 1884
    res = run("run", "--no-scan", "--broker", "None", "--duration", "0.5", "--record",
              str(tmp_path / "r.ratedial"))
    assert res.returncode == 0, res.stderr
    summary = res.stdout + res.stderr
    assert "unreachable" not in summary and "None:1883" not in summary, summary
    conf = tmp_path / "c.toml"
    conf.write_text(f'[mqtt]\nca_file = "{tmp_path / "ca.pem"}"\n')
    with pytest.raises(UsageError, match=r"mqtt\.ca_file is set but the broker"):
        load_config(conf).mqtt.check_tls_for("mqtt://broker.lab:1883")
    load_config(conf).mqtt.check_tls_for("mqtts://broker.lab")  # as meant: no error
    for args in (("run", "--no-scan", "--broker", "mqtt://127.0.0.1:1", "--record",
                  str(tmp_path / "r2.ratedial")),
                 ("monitor", "--broker", "mqtt://127.0.0.1:1", "--duration", "1"),
                 ("record", "--mqtt", "mqtt://127.0.0.1:1", "--record",
                  str(tmp_path / "r3.ratedial"))):
        res = run(*args, "--config", str(conf))
        assert res.returncode == 2 and "use mqtts://" in one_line(res), (args, res.stderr)
    assert not list(tmp_path.glob("r[23].ratedial*"))


def test_a_label_by_port_is_not_given_to_a_second_dial_on_that_port(tmp_path: Path) -> None:
    """``--rater therapist=PORT``: a dial unplugged and another plugged into the same port
    both became "therapist", and analyze then refused the file ("appears twice")."""
    import signal

    from daemonrun import query, start_daemon, wait_until
    from ratedial.virtual import VirtualDial

    link = tmp_path / "dialD"
    rec = tmp_path / "r.ratedial"
    first = VirtualDial(seed=81, subprocess=True, link=link)
    first.start()
    daemon = start_daemon("--port", str(link), "--no-scan", "--broker", "none", "--rater",
                          f"therapist={link}", "--record", str(rec))
    try:
        wait_until(rec, "SELECT count(*) FROM samples", lambda n: n > 200)
        uid1 = first.options.uid_bytes.hex()
        first.close()
        with VirtualDial(seed=82, subprocess=True, link=link) as second:
            uid2 = second.options.uid_bytes.hex()
            wait_until(rec, f"SELECT count(*) FROM samples JOIN dials USING (dial_id) "
                            f"WHERE uid = '{uid2}'", lambda n: n > 200)
            daemon.send_signal(signal.SIGINT)
            out, err = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    assert sorted(query(rec, "SELECT uid, rater FROM dials")) == sorted(
        [(uid1, "therapist"), (uid2, None)])
    (data,) = [json.loads(d) for (d,) in query(
        rec, "SELECT data FROM events WHERE kind = 'rater_conflict'")]
    assert data == {"port": str(link), "labels": ["therapist"], "labelled_dial": uid1}
    assert f"rater label therapist already names dial {uid1}" in out + err


# --- credentials (privacy audit, 2026-12-04) -----------------------------------------------


@pytest.mark.parametrize("args", [
    ("run", "--broker", "ftp://room2:TopSecretXYZ@localhost", "--no-scan", "--duration", "1"),
    ("run", "--broker", "room2:TopSecretXYZ@localhost", "--no-scan", "--duration", "1"),
    ("run", "--broker", "mqtt://room2:TopSecretXYZ@[::1", "--no-scan", "--duration", "1"),
    ("run", "--player", "vlc:http://:TopSecretXYZ@127.0.0.1:8080", "--broker", "none"),
    ("monitor", "--broker", "tcp://u:TopSecretXYZ@h"),
    ("record", "--mqtt", "ws://u:TopSecretXYZ@h", "--record", "x.ratedial"),
    # an audit (2026-12-05): a password holding '@', '/' or a space was shown in part or whole
    ("monitor", "--broker", "mqtt://u:Top@SecretXYZ@127.0.0.1:1883"),
    ("monitor", "--broker", "mqtt://u:Top/SecretXYZ@127.0.0.1:1883"),
    ("record", "--mqtt", "mqtt://u:Top SecretXYZ@127.0.0.1", "--record", "x.ratedial"),
    ("run", "--broker", "u:Top/SecretXYZ@localhost", "--no-scan", "--duration", "1"),
    ("monitor", "--broker", "mqtt://u:pa://SecretXYZ@127.0.0.1:1883"),  # '://' in it too
])
def test_a_password_typed_into_a_url_is_never_echoed(tmp_path: Path,
                                                       args: tuple[str, ...]) -> None:
    res = run(*args, cwd=tmp_path)
    assert res.returncode == 2
    assert "SecretXYZ" not in res.stderr + res.stdout and "***@" in one_line(res)


def test_a_password_in_a_config_url_is_never_echoed(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('player = "vlc:http://:TopSecretXYZ@127.0.0.1:8080"\n'
                                     '[mqtt]\nbroker = "ftp://u:TopSecretXYZ@h"\n')
    res = run("run", "--config", "c.toml", "--no-scan", "--duration", "1", cwd=tmp_path)
    assert res.returncode == 2 and "TopSecretXYZ" not in res.stderr and "***@" in one_line(res)


@pytest.mark.parametrize("cmd", [("run", "--broker", "mqtt://[::1", "--no-scan"),
                                 ("monitor", "--broker", "mqtt://[::1"),
                                 ("record", "--mqtt", "mqtt://[::1", "--record", "x.ratedial")])
def test_an_unclosed_ipv6_bracket_is_one_line(tmp_path: Path, cmd: tuple[str, ...]) -> None:
    res = run(*cmd, cwd=tmp_path)
    assert res.returncode == 2 and "not a valid URL" in one_line(res)


def test_password_files_that_send_nothing_are_said(tmp_path: Path) -> None:
    """An empty password file connected with no password ("Not authorized" for the whole
    run); a password without a user name is not sent by MQTT at all."""
    (tmp_path / "pw").write_text("  \n")
    (tmp_path / "c.toml").write_text('[mqtt]\nusername = "u"\npassword_file = "pw"\n')
    base = ("run", "--config", "c.toml", "--no-scan", "--duration", "0.5")
    res = run(*base, "--broker", "mqtt://127.0.0.1:1", cwd=tmp_path)
    assert res.returncode == 2 and "is empty" in one_line(res)
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "c.toml").write_text('[mqtt]\npassword_file = "pw"\n')
    res = run(*base, "--broker", "mqtt://127.0.0.1:1", cwd=tmp_path)
    assert res.returncode == 2 and "mqtt.username is not" in one_line(res)
    env = {**__import__("os").environ, "RATEDIAL_MQTT_PASSWORD": "secret"}
    res = run("record", "--mqtt", "mqtt://127.0.0.1:1", "--record", "r.ratedial", cwd=tmp_path,
              env=env)
    assert "RATEDIAL_MQTT_PASSWORD is set but [mqtt] username is not" in res.stderr


def test_a_password_sent_in_clear_over_the_network_is_said(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "c.toml").write_text('[mqtt]\nusername = "u"\npassword_file = "pw"\n')
    base = ("run", "--config", "c.toml", "--no-scan", "--duration", "0.5", "--record", "r/")
    res = run(*base, "--broker", "mqtt://192.0.2.1", cwd=tmp_path)  # TEST-NET-1: not here
    assert res.returncode == 0, res.stderr
    assert "crosses the network unencrypted" in res.stderr
    res = run(*base, "--broker", "mqtt://127.0.0.1:1", cwd=tmp_path)  # this machine: no note
    assert res.returncode == 0, res.stderr
    assert "unencrypted" not in res.stderr


def test_an_encrypted_client_key_is_one_line_and_never_a_prompt(tmp_path: Path) -> None:
    """OpenSSL asked for the key's passphrase on the terminal (the run waited there, past
    --duration) or, without one, failed naming the certificate."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", "k.pem",
                    "-out", "c.pem", "-days", "1", "-subj", "/CN=x", "-passout", "pass:kp"],
                   cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "c.toml").write_text('[mqtt]\ncert_file = "c.pem"\nkey_file = "k.pem"\n')
    res = subprocess.run([sys.executable, "-m", "ratedial", "run", "--config", "c.toml",
                          "--broker", "mqtts://127.0.0.1:1", "--no-scan", "--duration", "1"],
                         cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert "k.pem is encrypted" in one_line(res) and "pass phrase" not in res.stderr


def test_programs_ratedial_starts_get_none_of_its_secrets(monkeypatch) -> None:
    from ratedial.config import child_env

    monkeypatch.setenv("RATEDIAL_MQTT_PASSWORD", "a")
    monkeypatch.setenv("RATEDIAL_VLC_PASSWORD", "b")
    monkeypatch.setenv("RATEDIAL_VLC_PASSWORD_FILE", "/x")
    env = child_env()
    assert "RATEDIAL_MQTT_PASSWORD" not in env and "RATEDIAL_VLC_PASSWORD" not in env
    assert env["RATEDIAL_VLC_PASSWORD_FILE"] == "/x" and env["PATH"]


def test_reread_keeps_what_was_read_when_the_file_goes() -> None:
    from ratedial.config import Reread

    said: list[str] = []
    values = iter(["one", UsageError("cannot read x"), UsageError("cannot read x"), "two"])

    def read() -> str:
        v = next(values)
        if isinstance(v, Exception):
            raise v
        return v

    r = Reread(read, said.append)
    assert [r(), r(), r(), r()] == ["one", "one", "one", "two"]
    assert said == ["cannot read x; using what was read before"]
    with pytest.raises(UsageError):
        Reread(lambda: (_ for _ in ()).throw(UsageError("no")), said.append)()


@pytest.mark.parametrize("word", ["NONE", "None", " Embedded "])
def test_broker_words_in_a_config_file_are_taken_in_any_case(tmp_path: Path, word: str) -> None:
    """Found by a black-box test: broker = "NONE" in a file was a host named NONE ("MQTT
    broker none:1883 unreachable"), although the docs say both words in any case."""
    (tmp_path / "c.toml").write_text(f'[mqtt]\nbroker = "{word}"\n')
    assert load_config(tmp_path / "c.toml").mqtt.broker == word.strip().lower()


def test_two_labels_for_one_port_not_plugged_in_yet_are_refused(tmp_path: Path) -> None:
    """Found by a black-box test: /dev/ttyACM0 and /dev/../dev/ttyACM0 were two dials while
    the port was not there yet (only paths that existed were compared as paths)."""
    gone = tmp_path / "ttyGONE"
    with pytest.raises(UsageError, match="both name dial"):
        RunConfig(raters={"client": str(gone), "therapist": f"{tmp_path}/../{tmp_path.name}"
                                                           f"/ttyGONE"})
    RunConfig(raters={"client": str(gone), "therapist": str(tmp_path / "ttyOTHER")})


def test_one_port_written_two_ways_is_opened_once(tmp_path: Path) -> None:
    """An audit (2026-12-05): a config's ``ports = ["dialA"]`` plus ``--port $PWD/dialA`` (or
    /dev/ttyACM0 and its /dev/serial/by-id link) opened the port twice, and the run stopped
    with "port is busy: another program has it open"."""
    from ratedial.virtual import VirtualDial

    rec = tmp_path / "r.ratedial"
    with VirtualDial(seed=76, subprocess=True) as dial:
        link = tmp_path / "dialA"
        link.symlink_to(dial.port)
        conf = tmp_path / "c.toml"
        conf.write_text('ports = ["dialA"]\nscan = false\n[mqtt]\nbroker = "none"\n')
        res = run("run", "--config", str(conf), "--port", dial.port, "--port", str(link),
                  "--duration", "2", "--record", str(rec), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "busy" not in res.stderr
    (d,) = json.loads(res.stdout.strip().splitlines()[-1])["dials"]
    assert d["received"] > 0
    assert RunConfig(ports=("a", "./a", str(tmp_path / "b"), f"{tmp_path}/x/../b")).ports == \
        ("a", str(tmp_path / "b"))


def test_rater_labels_that_differ_only_in_case_are_refused() -> None:
    """An audit (2026-12-05): run recorded client and Client on two dials; analyze, which
    pairs labels in any case, then refused the file ("rater 'Client' appears twice")."""
    with pytest.raises(UsageError, match="client and Client differ only in case"):
        RunConfig(raters={"client": "dialA", "Client": "dialB"})
    res = run("run", "--broker", "none", "--no-scan", "--port", "dialA", "--port", "dialB",
              "--rater", "client=dialA", "--rater", "Client=dialB", "--duration", "1")
    assert res.returncode == 2 and "differ only in case" in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1


def test_a_rater_option_with_two_equals_signs_is_refused_not_guessed(tmp_path: Path) -> None:
    """An audit (2026-12-05): --rater 'Klient=x=dialA' was split at the first '=', so the
    dial ran unlabelled and the only word of it was a note at the end of the run."""
    res = run("run", "--broker", "none", "--no-scan", "--port", "dialA",
              "--rater", "Klient=x=dialA", "--duration", "1")
    assert res.returncode == 2 and "more than one '='" in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1
    cfg = tmp_path / "c.toml"  # the config file's table takes such a label
    cfg.write_text('[raters]\n"Klient=x" = "dialA"\n')
    assert load_config(cfg).raters == {"Klient=x": "dialA"}


@pytest.mark.parametrize("ms", [1e300, -1e300, -5000.0, 1000.5])
def test_a_display_latency_beyond_a_second_is_refused(tmp_path: Path, ms: float) -> None:
    """An audit (2026-12-05): player_latency_ms = 1e300 ran and left every sample without a
    media time; -5000 gave samples media times not shown yet."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"player_latency_ms = {ms!r}\n")
    res = run("run", "--config", str(cfg), "--broker", "none", "--no-scan", "--duration", "1")
    assert res.returncode == 2, res.stderr
    assert "player_latency_ms must be between -1000 and 1000" in res.stderr
    assert res.stderr.count("\n") == 1
    assert RunConfig(player_latency_ms=-1000.0).player_latency_ms == -1000.0


def test_a_scale_of_its_own_gets_its_own_anchors_and_refuses_impossible_ones(
        tmp_path: Path) -> None:
    """An audit (2026-12-05): a 1-7 scale kept the anchors 0/50/100 (the plot's axis had no
    labels, SPSS labelled 0 and 50 on -100..100), anchors outside the range and '10' beside
    '1e1' were taken, and -1e308..1e308 gave a neutral band of inf-inf."""
    cfg = tmp_path / "s.toml"
    cfg.write_text("[scale]\nminimum = 1\nmaximum = 7\n")
    assert load_config(cfg).scale.anchors == {"1": "hindering", "4": "neutral", "7": "helpful"}
    cfg.write_text("[scale]\nminimum = -100\nmaximum = 100\n")
    assert load_config(cfg).scale.anchors == {"-100": "hindering", "0": "neutral",
                                              "100": "helpful"}
    assert load_config(None).scale.anchors == {"0": "hindering", "50": "neutral",
                                               "100": "helpful"}
    cfg.write_text('[scale]\nanchors = {"1_0" = "ten", " 2e1 " = "twenty"}\n')
    assert load_config(cfg).scale.anchors == {"10": "ten", "2e1": "twenty"}  # as numbers
    for text, said in [
        ('[scale]\nanchors = {"150" = "off"}\n', "'150' is outside the scale (0 to 100)"),
        ('[scale]\nanchors = {"10" = "ten", "1e1" = "TEN"}\n', "'10' and '1e1' are one point"),
        ("[scale]\nminimum = -1e308\nmaximum = 1e308\n", "within ±1e9"),
    ]:
        cfg.write_text(text)
        with pytest.raises(UsageError, match=re.escape(said)):
            load_config(cfg)


def test_the_help_says_the_bound_an_option_without_its_own_has() -> None:
    """An audit (2026-12-05): --duration 2e9 was refused as 'at most 1e+09', a bound --help
    did not show ([x>=0.1])."""
    res = run("run", "--help")
    assert "[x>=0.1, at most 1e9]" in " ".join(res.stdout.split()), res.stdout
    res = run("run", "--duration", "2e9", "--no-scan", "--broker", "none")
    assert "2e9 is too large (at most 1e9)" in res.stderr and res.returncode == 2
