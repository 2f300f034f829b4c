"""Configuration: a TOML file, overridden by command-line flags (pure).

Invariants: unknown keys and wrong types are refused with a one-line :class:`UsageError`
naming the key; secrets never come from the command line, only from the environment or a
file (``password_file``), and never appear in :meth:`RunConfig.public`.
"""

from __future__ import annotations

import math
import os
import ssl
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, overload

from ._platform import SERIAL_IO, default_serial_io, port_key
from .errors import UsageError
from .scale import RatingScale

T = TypeVar("T")


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot start ratedial's topics (None: it can). Levels are separated by
    ``/``; none may be empty or hold a wildcard, or a subscriber's filter would mean
    something else."""
    if not prefix:
        return "empty (the default is ratedial)"
    if any(c in prefix for c in "+#\0"):
        return "holds a wildcard (+ or #) or a NUL"
    if any(level == "" for level in prefix.split("/")):
        return "has an empty level (a leading, trailing or doubled /)"
    if prefix.startswith("$"):  # $SYS and the like: brokers refuse clients' messages there
        return "starts with $ (topics starting with $ are the broker's own)"
    try:
        size = len(prefix.encode())
    except UnicodeEncodeError:
        return "is not UTF-8 text (a byte of another encoding?)"
    if size > MAX_PREFIX_BYTES:
        return f"longer than {MAX_PREFIX_BYTES:,} bytes"
    return None


# A topic is at most 65,535 bytes (MQTT): the prefix leaves room for ratedial's levels after it
MAX_PREFIX_BYTES = 1000
MQTT_STRING_BYTES = 65_535  # an MQTT string's length is two bytes (client id, user name)


def mqtt_string_problem(value: str) -> str | None:
    """Why ``value`` cannot be an MQTT string field (None: it can)."""
    if len(value.encode()) > MQTT_STRING_BYTES:
        return f"longer than MQTT's {MQTT_STRING_BYTES:,} bytes"
    return None


MAX_LATENCY_MS = 1000.0  # bound on player_latency_ms either way
MAX_SCALE = 1e9  # bound on a scale's ends either way


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttConfig:
    broker: str = "mqtt://localhost:1883"  # or "embedded" or "none"
    topic_prefix: str = "ratedial"
    username: str | None = None
    password_file: str | None = None  # the password itself comes from RATEDIAL_MQTT_PASSWORD
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    batch_ms: int = 50
    live_expiry_s: int = 60
    live_qos: int = 1  # 1: the broker queues live batches for persistent-session subscribers
    client_id: str | None = None
    daemon_id: str | None = None  # pseudonymous id in topics; default: hash of the host name

    def __post_init__(self) -> None:
        problem = prefix_problem(self.topic_prefix)
        if problem:
            raise UsageError(f"config: mqtt.topic_prefix {self.topic_prefix!r}: {problem}")
        if not 0 <= self.batch_ms <= 86_400_000:
            raise UsageError("config: mqtt.batch_ms must be 0 or more (ms), at most a day")
        if not 0 <= self.live_expiry_s <= 2**32 - 1:
            raise UsageError("config: mqtt.live_expiry_s must be 0 (never) or more seconds, at "
                             "most 4294967295 (MQTT's limit)")
        for name in ("username", "client_id"):
            value = getattr(self, name)
            problem = None if value is None else mqtt_string_problem(value)
            if problem:
                raise UsageError(f"config: mqtt.{name} is {problem}")
            if value == "" and name == "client_id":
                raise UsageError("config: mqtt.client_id cannot be empty (leave it out for the "
                                 "default)")
        if self.live_qos not in (0, 1, 2):
            raise UsageError("config: mqtt.live_qos must be 0, 1 or 2")
        if self.key_file and not self.cert_file:
            raise UsageError("config: mqtt.key_file is the key of a client certificate: give "
                             "mqtt.cert_file too")
        for name in ("password_file", "ca_file", "cert_file", "key_file"):  # ~: as a shell
            object.__setattr__(self, name, home(getattr(self, name)))

    def check_tls_for(self, broker: str) -> None:
        """A CA or client certificate file with a plain ``mqtt://`` broker: the user meant
        TLS, and the password would go in plain text; refused in one line."""
        name = "ca_file" if self.ca_file else "cert_file" if self.cert_file else None
        if name is None or self.tls or broker in ("embedded", "none") or \
                broker.strip().lower().startswith("mqtts://"):
            return
        raise UsageError(f"config: mqtt.{name} is set but the broker {broker} is plain "
                         "mqtt://: use mqtts://HOST[:PORT] or tls = true")

    def tls_context(self) -> ssl.SSLContext:
        """The TLS settings for an ``mqtts://`` broker: the CA to trust (``ca_file``, else
        the system's) and this client's certificate, if any; a file that cannot be read is
        one line naming it."""
        name, path = "ca_file", self.ca_file
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                name, path = "cert_file", self.cert_file
                # OpenSSL would ask for an encrypted key's passphrase on the terminal (and
                # wait there, or fail naming the certificate): say which file and why
                ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_passphrase)
        except _EncryptedKey:
            raise UsageError(f"mqtt.key_file {self.key_file or self.cert_file} is encrypted "
                             "(protected by a passphrase), which ratedial cannot ask for: keep "
                             "an unencrypted copy readable only by you (openssl pkey -in KEY "
                             "-out KEY.plain; chmod 600 KEY.plain) and name that") from None
        except (OSError, ssl.SSLError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, ssl.SSLError) and name == "cert_file" and not self.key_file \
                    and not _holds_key(self.cert_file):  # OpenSSL says only "PEM lib"
                why = ("it holds no private key: name the certificate's key in "
                       "mqtt.key_file")
            raise UsageError(f"cannot use mqtt.{name} {path}: {why}") from None
        return ctx

    def password(self) -> str | None:
        env = os.environ.get("RATEDIAL_MQTT_PASSWORD")
        if env:
            return env
        if self.password_file:
            secret = read_secret(self.password_file, "mqtt.password_file")
            if not secret:
                raise UsageError(f"mqtt.password_file {self.password_file} is empty: put the "
                                 "password in it")
            return secret
        return None


def _holds_key(path: str | None) -> bool:
    """Whether the PEM file ``path`` holds a private key (as a certificate may, beside it)."""
    try:
        return path is not None and b"PRIVATE KEY-----" in Path(path).read_bytes()
    except OSError:
        return True  # said as it is, by OpenSSL's words


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> str:
    raise _EncryptedKey


class Reread(Generic[T]):
    """A file-backed setting (the MQTT password, the TLS context) for each (re)connection,
    read again each time (a rotated password file or certificate is taken up); a file that
    can no longer be read (removed, emptied while rewritten) keeps what was read before,
    said once, rather than ending a run over a reconnect. The first read's failure is the
    caller's (checked at start)."""

    def __init__(self, read: Callable[[], T], warn: Callable[[str], None]) -> None:
        self._read = read
        self._warn = warn
        self._last: T | None = None
        self._have = False
        self._said = False

    def __call__(self) -> T:
        try:
            self._last, self._have, self._said = self._read(), True, False
        except UsageError as exc:
            if not self._have:
                raise
            if not self._said:
                self._said = True
                self._warn(f"{exc}; using what was read before")
        return cast(T, self._last)


def child_env() -> dict[str, str]:
    """The environment for the programs ratedial starts (mpv, ffprobe): without its
    secrets (``RATEDIAL_*PASSWORD``), which they have no use for."""
    return {k: v for k, v in os.environ.items()
            if not (k.startswith("RATEDIAL_") and k.endswith("PASSWORD"))}


def read_secret(path: str, name: str) -> str:
    """The secret kept in file ``path`` (``name`` says where it was named, for messages):
    its text without surrounding whitespace and without the byte-order mark Windows Notepad
    may save (it would become part of the password)."""
    try:
        return Path(path).read_text(encoding="utf-8-sig").strip()
    except OSError as exc:
        raise UsageError(f"cannot read {name} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{name} {path} is not UTF-8 text") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleConfig:
    minimum: float = 0.0
    maximum: float = 100.0
    start: float = 50.0
    counts_per_point: float = 1.0
    # Potentiometer dials (backend "adc") are absolute: rating = minimum + units / this.
    # 65535 ADC units over the pot's travel: 655.35 maps the travel onto 0-100.
    adc_units_per_point: float = 655.35
    long_press_s: float | None = 2.0  # None or 0: the button never resets the rating
    anchors: dict[str, str] = field(
        default_factory=lambda: {"0": "hindering", "50": "neutral", "100": "helpful"}
    )

    def scale(self) -> RatingScale:
        if self.long_press_s is not None and not self.long_press_s >= 0:
            raise UsageError("[scale] long_press_s must be 0 (never reset) or more (seconds)")
        if not self.adc_units_per_point > 0:
            raise UsageError("[scale] adc_units_per_point must be more than 0")
        if not (abs(self.minimum) <= MAX_SCALE and abs(self.maximum) <= MAX_SCALE):
            # a band of inf-inf and JSON that is not JSON came of -1e308..1e308
            raise UsageError("[scale] minimum and maximum must be within ±1e9")
        try:
            rating_scale = RatingScale(minimum=self.minimum, maximum=self.maximum,
                                       start=self.start, counts_per_point=self.counts_per_point)
        except ValueError as exc:
            raise UsageError(f"[scale] {exc}") from None
        seen: dict[float, str] = {}
        for point in self.anchors:
            try:
                value = float(point)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):  # SPSS value labels, plots and LSL need a number
                raise UsageError(f"[scale] anchors: {point!r} is not a point of the scale "
                                 "(a number, e.g. \"50\" = \"neutral\")")
            if not self.minimum <= value <= self.maximum:
                raise UsageError(f"[scale] anchors: {point!r} is outside the scale "
                                 f"({self.minimum:g} to {self.maximum:g})")
            other = seen.setdefault(value, point)
            if other != point:  # "1e1" and "10": one point, two labels
                raise UsageError(f"[scale] anchors: {other!r} and {point!r} are one point")
        return rating_scale


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialConfig:
    # How ports are read: "asyncio" (the event loop waits on the port) or "thread" (a thread
    # blocked in Serial.read stamps each read); "thread" is the default on Windows.
    io: str = field(default_factory=default_serial_io)

    def __post_init__(self) -> None:
        if self.io not in SERIAL_IO:
            raise UsageError(f"config: serial.io must be one of {', '.join(SERIAL_IO)}")


@overload
def home(path: str) -> str: ...
@overload
def home(path: None) -> None: ...
@overload
def home(path: str | None) -> str | None: ...


def home(path: str | None) -> str | None:
    """``path`` with a leading ``~`` or ``~USER`` made the home folder, as a shell makes it
    (a config file's value, or a quoted ``'~/x'``, reaches ratedial as written: it made a
    folder named ``~`` in the current one)."""
    return os.path.expanduser(path) if path is not None else None


def _first_clash(named: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The first two names, in order, that ``(key, name)`` pairs give one key; None if
    every key has one name."""
    seen: dict[str, str] = {}
    for key, name in named:
        other = seen.setdefault(key, name)
        if other != name:
            return other, name
    return None


def _dial_key(ident: str) -> str:
    """A port however written (./vd0 and the /dev/pts/1 it links to, /dev/../dev/x for a port
    not plugged in yet) is one key; a dial id or COM3 in any case."""
    is_path = os.path.exists(ident) or "/" in ident or os.sep in ident
    return port_key(ident) if is_path else ident.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    ports: tuple[str, ...] = ()
    raters: dict[str, str] = field(default_factory=dict)  # label -> dial uid or port path
    record: str | None = None  # recording path; default recordings/<date>-<time>.ratedial
    duration_s: float | None = None
    ping_interval_s: float = 0.1  # dense PINGs pin the clock's skew (docs/timing.md)
    player: str = "none"  # mpv[:SOCKET] | vlc:URL | mpc:URL | manual[:SECONDS] | none
    video: str | None = None  # a file: implies mpv launched by ratedial
    player_latency_ms: float = 0.0  # display latency added to the player's position
    osd: bool = False  # draw the current rating on mpv's OSD
    scan: bool = True  # look for dials on USB ports besides the given ones
    lsl: bool = False  # publish dials and markers over Lab Streaming Layer (extra "lsl")
    web: str | None = None  # HOST:PORT of the live web view (port 0: a free one)
    session: dict[str, Any] = field(default_factory=dict)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    serial: SerialConfig = field(default_factory=SerialConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ports", tuple(home(p) for p in self.ports))
        object.__setattr__(self, "raters", {k: home(v) for k, v in self.raters.items()})
        object.__setattr__(self, "record", home(self.record))
        object.__setattr__(self, "video", home(self.video))
        kind, sep, where = self.player.partition(":")
        if kind == "mpv" and sep and where.startswith("~"):  # mpv's socket: a path like those
            object.__setattr__(self, "player", f"mpv:{home(where)}")
        # One port however written (the config's ports and --port add up): opened twice, the
        # second open found the port busy and the run stopped ("another program has it").
        ports: dict[str, str] = {}
        for port in self.ports:
            ports.setdefault(port_key(port), port)
        object.__setattr__(self, "ports", tuple(ports.values()))
        clash = _first_clash((label.lower(), label) for label in self.raters)
        if clash:  # the analysis pairs labels in any case: one rater twice
            raise UsageError(f"raters: {clash[0]} and {clash[1]} differ only in case, and the "
                             "analysis takes them as one rater; give each its own label")
        clash = _first_clash((key.lower(), key) for key in self.session)
        if clash:  # "dyad" pairs recordings: "Dyad" beside it was a second key
            raise UsageError(f"session: {clash[0]} and {clash[1]} differ only in case; keep one")
        clash = _first_clash((_dial_key(ident), label) for label, ident in self.raters.items())
        if clash:
            raise UsageError(f"raters: {clash[0]} and {clash[1]} both name dial "
                             f"{self.raters[clash[1]]}; each rater needs a dial of their own")
        if self.duration_s is not None and not 0.1 <= self.duration_s <= 1e9:
            # the bound of --duration (and of every option without one of its own)
            raise UsageError("config: duration_s must be between 0.1 and 1e9 (seconds)")
        if not 0.01 <= self.ping_interval_s <= 60:
            raise UsageError("config: ping_interval_s must be between 0.01 and 60 (seconds)")
        if not -MAX_LATENCY_MS <= self.player_latency_ms <= MAX_LATENCY_MS:
            # a display shows a frame within a second of the player's report; 1e300 took
            # every sample's media time away, -5000 gave times not shown yet
            raise UsageError(f"config: player_latency_ms must be between -{MAX_LATENCY_MS:g} "
                             f"and {MAX_LATENCY_MS:g} (milliseconds)")

    def public(self) -> dict[str, Any]:
        """The configuration as stored in recordings: never contains secrets."""
        d = asdict(self)
        d["mqtt"].pop("password_file", None)
        return d

    def raters_for(self, uid: str, port: str) -> list[str]:
        """The labels that name the dial ``uid`` on ``port``: by its id, or by the port
        however it is written (relative, or a link such as /dev/serial/by-id/...). More
        than one (one by id, another by port) is a mistake only the dial's arrival shows.
        Ports compare by :func:`port_key`, as the check before a run does (on Windows
        ``com3`` and ``\\\\.\\COM3`` name ``COM3``)."""
        key = port_key(port)
        return [label for label, ident in self.raters.items()
                if ident.lower() == uid.lower() or ident == port or port_key(ident) == key]


_SECTIONS: dict[str, type] = {"scale": ScaleConfig, "mqtt": MqttConfig,
                               "serial": SerialConfig}


def _typed(section: str, cls: type, raw: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}  # key as written, by its name with "_"
    for key, value in raw.items():
        name = key.replace("-", "_")
        where = section + "." if section else ""
        if name not in known:
            shown = key if key.isidentifier() else repr(key)  # keep the message on one line
            raise UsageError(f"config: unknown key {where}{shown}")
        if name in spelled:
            raise UsageError(f"config: {where}{spelled[name]} and {where}{key} are the same key "
                             "written twice: keep one")
        spelled[name] = key
        if name in _SECTIONS and not section:
            if not isinstance(value, dict):
                raise UsageError(f"config: [{key}] must be a table")
            out[name] = _typed(name, _SECTIONS[name], value)
            continue
        default = getattr(cls(), name)
        out[name] = _coerce(f"{where}{key}", name, default, value)
    return cls(**out)


def _coerce(key: str, name: str, default: Any, value: Any) -> Any:
    """``value`` of the key written ``key`` (named in messages), whose name with "_" is
    ``name`` (which decides its type, with the field's ``default``)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UsageError(f"config: {key} must be true or false")
        return value
    if isinstance(default, int) and not isinstance(default, float):  # e.g. live_expiry_s
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"config: {key} must be an integer")
        return value
    if isinstance(default, float) or name.endswith(("_s", "duration")):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"config: {key} must be a number")
        try:
            number = float(value)
        except OverflowError:
            raise UsageError(f"config: {key} is out of range") from None
        if not math.isfinite(number):
            raise UsageError(f"config: {key} must be a finite number")
        return number
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"config: {key} must be a list of strings")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise UsageError(f"config: {key} must be a table")
        for k, v in value.items():
            if not k:
                raise UsageError(f"config: {key} has an empty key")
            if name.endswith("session"):  # TOML types are kept: text, numbers, true/false
                if (isinstance(v, float) and not math.isfinite(v)) or \
                        not isinstance(v, str | int | float):
                    raise UsageError(f"config: {key}.{k} must be text, a finite number, "
                                     "true or false")
            elif not isinstance(v, str) or not v:
                raise UsageError(f"config: {key}.{k} must be a non-empty string")
        return dict(value)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"config: {key} must be a string")
    return value


def load_config(path: str | os.PathLike[str] | None) -> RunConfig:
    """Read a TOML config file (or the defaults when ``path`` is None)."""
    if path is None:
        return RunConfig()
    p = Path(path)
    try:
        # utf-8-sig: a byte-order mark, as Windows Notepad may save one, is not part of the TOML
        raw = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UsageError(f"config file {p} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {p} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {p} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"config file {p} nests too deeply") from None
    cfg: RunConfig = _typed("", RunConfig, raw)
    scale = raw.get("scale")
    if isinstance(scale, dict) and "start" not in scale:  # a range of its own: start mid-way
        middle = (cfg.scale.minimum + cfg.scale.maximum) / 2
        cfg = replace(cfg, scale=replace(cfg.scale, start=middle))
    if cfg.scale.anchors:  # a key as the number it is written as: " 2e1 " is "2e1", "1_0" "10"
        cfg = replace(cfg, scale=replace(cfg.scale, anchors={
            k.strip().replace("_", ""): v for k, v in cfg.scale.anchors.items()}))
    if isinstance(scale, dict) and "anchors" not in scale:  # the labels at its own points
        lo, hi = cfg.scale.minimum, cfg.scale.maximum
        if math.isfinite(lo) and math.isfinite(hi):
            cfg = replace(cfg, scale=replace(cfg.scale, anchors={
                f"{lo:g}": "hindering", f"{(lo + hi) / 2:g}": "neutral", f"{hi:g}": "helpful"}))
    cfg.scale.scale()  # validate now, with a one-line message
    return replace(cfg, mqtt=_beside(cfg.mqtt, p.parent))


def _beside(mqtt: MqttConfig, folder: Path) -> MqttConfig:
    """Relative ``[mqtt]`` file names are relative to the config file's folder (the secret
    kept beside the config is found from whatever folder the command runs in); the broker
    words ``embedded`` and ``none`` are taken in any case, as on the command line."""
    def beside(name: str | None) -> str | None:
        return str(folder / name) if name and not Path(name).is_absolute() else name

    word = mqtt.broker.strip().lower()  # "None" or "Embedded": the words, in any case
    if word in ("embedded", "none"):
        mqtt = replace(mqtt, broker=word)
    return replace(mqtt, password_file=beside(mqtt.password_file), ca_file=beside(mqtt.ca_file),
                   cert_file=beside(mqtt.cert_file), key_file=beside(mqtt.key_file))


def with_overrides(cfg: RunConfig, **changes: Any) -> RunConfig:
    """Apply command-line flags (``None`` means "not given"). A video and no player means mpv
    (``--video`` implies ``--player mpv``), and the stored config says so."""
    cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    return replace(cfg, player="mpv") if cfg.video and cfg.player == "none" else cfg
