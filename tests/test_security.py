"""Security: MQTT over TLS with password auth (certificates made here, real mosquitto),
credentials kept out of logs, process titles and recordings, no listening sockets unless
asked, recordings readable by their owner only (0600)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brokers import Mosquitto
from daemonrun import assert_exact_accounting, finish, query, wait_until
from ratedial.virtual import VirtualDial
from subscriber import Subscriber

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None,
                       reason="needs the openssl and mosquitto_passwd commands"),
]

USER = "rater-station"
N_SAMPLES = "SELECT count(*) FROM samples"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (EC P-256)."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=ratedial test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "extendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=ratedial-{name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
                 "-extfile", f"{name}.ext", cwd=d)
    return {n: d / n for n in ("ca.crt", "server.crt", "server.key", "client.crt",
                               "client.key")}


class SecureBroker(Mosquitto):
    """mosquitto with one TLS listener that wants a client certificate and a password."""

    def __init__(self, workdir: Path, password: str) -> None:
        super().__init__(workdir)
        self.pki = make_pki(workdir / "pki")
        passwd = workdir / "passwd"
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), USER, password],
                       check=True, capture_output=True)
        passwd.chmod(0o600)
        self.extra = (f"allow_anonymous false\npassword_file {passwd}\n"
                      f"cafile {self.pki['ca.crt']}\ncertfile {self.pki['server.crt']}\n"
                      f"keyfile {self.pki['server.key']}\nrequire_certificate true\n")

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def subscriber(self, password: str) -> Subscriber:
        sub = Subscriber(self.port, client_id=f"sec-sub-{secrets.token_hex(3)}")
        sub.client.tls_set(ca_certs=str(self.pki["ca.crt"]), certfile=str(self.pki["client.crt"]),
                           keyfile=str(self.pki["client.key"]))
        sub.client.username_pw_set(USER, password)
        return sub


@pytest.fixture(scope="module")
def password() -> str:
    return "pw-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, password: str):
    b = SecureBroker(tmp_path_factory.mktemp("secure-broker"), password)
    b.start()
    yield b
    b.stop()


def write_config(path: Path, broker: SecureBroker, *, password_file: Path | None = None) -> Path:
    pki = broker.pki
    lines = ["[mqtt]", f'broker = "{broker.url}"', f'username = "{USER}"', "tls = true",
             f'ca_file = "{pki["ca.crt"]}"', f'cert_file = "{pki["client.crt"]}"',
             f'key_file = "{pki["client.key"]}"']
    if password_file is not None:
        lines.append(f'password_file = "{password_file}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def daemon(*args: str, env_password: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "RATEDIAL_MQTT_PASSWORD"}
    if env_password is not None:
        env["RATEDIAL_MQTT_PASSWORD"] = env_password
    return subprocess.Popen([sys.executable, "-m", "ratedial", "run", "--no-scan", "--json",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def recorded(path: Path) -> set[tuple[str, int, int]]:
    return {(u, b, i) for u, b, i in query(
        path, "SELECT d.uid, e.boot_id, s.sample_index FROM samples s JOIN epochs e "
              "USING (epoch_id) JOIN dials d ON d.dial_id = s.dial_id")}


def file_bytes(path: Path) -> bytes:
    """The recording and any WAL or shared-memory file beside it."""
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
                    if p.exists())


@pytest.mark.parametrize("via", ["env", "password_file"])
def test_tls_and_password_publish_and_the_password_leaks_nowhere(tmp_path, broker, password, via):
    pw_file = None
    if via == "password_file":
        pw_file = tmp_path / "mqtt-password"
        pw_file.write_text(password + "\n")
        pw_file.chmod(0o600)
    cfg = write_config(tmp_path / "ratedial.toml", broker, password_file=pw_file)
    sub = broker.subscriber(password)
    assert sub.started(), "subscriber could not connect over TLS"
    path = tmp_path / "tls.ratedial"
    with VirtualDial(seed=71, subprocess=True) as dial:
        proc = daemon("--config", str(cfg), "--port", dial.port, "--record", str(path),
                      "--duration", "6", env_password=password if via == "env" else None)
        wait_until(path, N_SAMPLES, lambda n: n >= 1000)
        title = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        wal_while_running = file_bytes(path)
        out, err = finish(proc)
    rec = recorded(path)
    assert len(rec) >= 1000  # a stream went through (how much of 6 s is up to start-up)
    assert sub.wait_for(lambda s: set(s.seen) >= rec, 20), len(rec - set(sub.seen))
    sub.stop()
    assert sub.duplicates == 0
    assert any(d.get("state") == "online" for d in sub.daemon_status)
    secret = password.encode()
    assert secret not in title
    assert password not in out and password not in err
    assert secret not in wal_while_running
    assert secret not in file_bytes(path)
    meta = " ".join(str(v) for (v,) in query(path, "SELECT value FROM meta"))
    assert password not in meta
    assert "password_file" not in meta  # RunConfig.public() drops it
    assert_exact_accounting(path)


def test_a_wrong_password_is_one_line_and_the_run_still_records(tmp_path, broker, password):
    wrong = "wrong-" + secrets.token_hex(8)
    cfg = write_config(tmp_path / "ratedial.toml", broker)
    path = tmp_path / "denied.ratedial"
    with VirtualDial(seed=72, subprocess=True) as dial:
        proc = daemon("--config", str(cfg), "--port", dial.port, "--record", str(path),
                      "--duration", "5", env_password=wrong)
        out, err = finish(proc)
    assert len(recorded(path)) >= 3000  # recording does not depend on the broker
    assert_exact_accounting(path)
    lines = [ln for ln in err.splitlines() if "MQTT" in ln or "mqtt" in ln]
    assert lines, err
    assert any("authori" in ln.lower() for ln in lines), lines
    assert all(len(ln) < 300 for ln in lines)
    # an audit (2026-12-05): said "unreachable" and summed up as "down": the broker is there
    assert any(f"MQTT broker 127.0.0.1:{broker.port} is there, but it refused the user name "
               "or password" in ln for ln in lines), lines
    assert not any("unreachable" in ln for ln in lines), lines
    assert json.loads(out.strip().splitlines()[-1])["broker"].startswith("refused ("), out
    for text in (out, err):
        assert wrong not in text and password not in text
    assert wrong.encode() not in file_bytes(path)


def test_monitor_with_a_wrong_password_says_the_broker_refused_it(tmp_path, broker):
    """An audit (2026-12-05): 'cannot subscribe at ...: [code:135] Not authorized', though it
    failed at connect, for a password."""
    cfg = write_config(tmp_path / "ratedial.toml", broker)
    env = {**os.environ, "RATEDIAL_MQTT_PASSWORD": "wrong-" + secrets.token_hex(8)}
    res = subprocess.run([sys.executable, "-m", "ratedial", "monitor", "--config", str(cfg),
                          "--duration", "3"], capture_output=True, text=True, env=env,
                         timeout=60, check=False)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"ratedial: error: cannot connect to broker {broker.url}: it refused the user name or "
        "password ([code:135] Not authorized): check [mqtt] username and the password "
        "(RATEDIAL_MQTT_PASSWORD or [mqtt] password_file)"], res.stderr


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN that process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = f[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # /proc prints each 32-bit word in host (little-endian) order
            words = [raw[i:i + 4][::-1] for i in range(0, len(raw), 4)]
            addr = b"".join(words)
            text = (".".join(str(b) for b in addr) if width == 8
                    else ":".join(addr[i:i + 2].hex() for i in range(0, 16, 2)))
            out.append((text, int(port_hex, 16)))
    return out


@pytest.mark.parametrize("mode", ["none", "mqtt", "embedded"])
def test_the_daemon_listens_only_when_asked_and_then_on_localhost(tmp_path, mode):
    from brokers import mosquitto  # a plain broker for the mqtt:// case

    path = tmp_path / "listen.ratedial"
    with VirtualDial(seed=73, subprocess=True) as dial, mosquitto(tmp_path / "plain") as plain:
        broker = {"none": "none", "mqtt": plain.url, "embedded": "embedded"}[mode]
        proc = daemon("--port", dial.port, "--broker", broker, "--record", str(path),
                      "--duration", "4")
        wait_until(path, N_SAMPLES, lambda n: n >= 1000)
        time.sleep(0.3)  # let the embedded broker bind (it starts before the first sample)
        socks = listening(proc.pid)
        finish(proc)
    if mode == "embedded":
        assert socks, "the embedded broker should listen"
        assert all(addr in ("127.0.0.1", "0000:0000:0000:0000:0000:0000:0000:0001")
                   for addr, _ in socks), socks
    else:
        assert socks == [], socks


def test_recordings_and_their_wal_are_readable_by_the_owner_only(tmp_path):
    path = tmp_path / "private.ratedial"
    old = os.umask(0o022)  # the usual umask: files would be 0644 unless created 0600
    try:
        with VirtualDial(seed=74, subprocess=True) as dial:
            proc = daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                          "--duration", "4")
            wait_until(path, N_SAMPLES, lambda n: n >= 1000)
            side = [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [path, *side]}
            finish(proc)
    finally:
        os.umask(old)
    assert side, "expected a WAL while recording"
    assert modes == dict.fromkeys(modes, 0o600), {k: oct(v) for k, v in modes.items()}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_password_file_gone_by_a_reconnect_keeps_the_run(tmp_path, password):
    """Found by a black-box test: the password file removed (or being rotated) when the broker
    came back ended the run at the reconnect with 'cannot read mqtt.password_file', exit 2,
    no summary and no end of the recording. The password read before is used, said once."""
    b = SecureBroker(tmp_path / "broker", password)
    b.start()
    try:
        pw_file = tmp_path / "mqtt-password"
        pw_file.write_text(password + "\n")
        pw_file.chmod(0o600)
        cfg = write_config(tmp_path / "ratedial.toml", b, password_file=pw_file)
        path = tmp_path / "rotated.ratedial"
        sub = b.subscriber(password)
        assert sub.started()
        with VirtualDial(seed=73, subprocess=True) as dial:
            proc = daemon("--config", str(cfg), "--port", dial.port, "--record", str(path),
                          "--duration", "120")
            try:
                assert sub.wait_for(lambda s: len(s.seen) > 0, 60), "nothing published"
                sub.stop()
                pw_file.unlink()
                b.restart()
                wait_until(path, "SELECT count(*) FROM events WHERE kind = 'broker_up'",
                           lambda n: n >= 1)
                assert proc.poll() is None
                proc.send_signal(signal.SIGINT)
                out, err = finish(proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        b.stop()
    assert "cannot read mqtt.password_file" in err and "using what was read before" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["broker"].startswith("connected")
    assert_exact_accounting(path)
    assert password not in out + err
