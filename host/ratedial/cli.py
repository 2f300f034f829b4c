"""The ``ratedial`` command. One handler per command; heavy parts are imported lazily.

Every :class:`~ratedial.errors.RatedialError` becomes a one-line message and an exit code;
nothing a user can cause ends in a traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from . import __version__
from ._platform.signals import write_errors_for_file_size_limit
from ._platform.stopsignal import exit_stopped
from .cli_group import Commands, Stopped
from .cli_types import FiniteRange, HomePath, check_text
from .errors import RatedialError, UsageError, hide_userinfo

if TYPE_CHECKING:
    import ssl

    from .config import MqttConfig
    from .mqtt.requests import BrokerAddress


# a serial port: ~ expanded; its permissions are said by the open, in ratedial's words
_PORT = HomePath(readable=False)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ratedial")
def cli() -> None:
    """Moment-to-moment rating with a physical dial, synchronised to video."""


@cli.command()
@click.option("--seconds", type=FiniteRange(min=8), default=40.0, show_default=True,
              help="Length of the test video (and so of the run).")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seed of the simulated dials.")
@click.option("--no-video", is_flag=True,
              help="Record without a video player: the analysis runs on run time.")
def demo(seconds: float, seed: int, no_video: bool) -> None:
    """The whole study in about a minute: a test video, two rating dials, the analysis.

    ffmpeg makes a test video (clock and frame counter burned in) that mpv plays (in a
    window, or headless without a display); two virtual dials (the real firmware under
    MicroPython) rate it as a scripted client and therapist; the daemon records and
    publishes them (embedded MQTT broker) with its live view; then the recording is
    analysed: the report, top and bottom segments, figures, and the next commands to try.
    """
    try:
        import ratedial.virtual  # noqa: F401  (pseudo-terminals: Linux only)
    except ImportError:
        raise RatedialError("demo runs virtual dials, which need Linux (pseudo-terminals); "
                            "here, plug in a dial and use ratedial run") from None
    from .demo import run_demo

    run_demo(seconds=seconds, seed=seed, video=not no_video)


def _check_credentials(mqtt: MqttConfig, address: BrokerAddress
                       ) -> tuple[str | None, ssl.SSLContext | None]:
    """The password and, for an ``mqtts://`` broker, the TLS context, read now (a file that
    cannot be read or used, or an empty password file: one line before anything starts);
    a password that would not be sent (no user name) or would cross the network in clear
    is said. Returns both (the run's and the collector's connections read them again at
    every connection, so a rotated file is taken up)."""
    import os

    from .web.server import is_loopback

    tls = mqtt.tls_context() if address.tls else None
    password = mqtt.password()
    if mqtt.password_file and not mqtt.username:
        raise UsageError(f"mqtt.password_file {mqtt.password_file} is set but mqtt.username is "
                         "not: MQTT sends a password only with a user name; set [mqtt] username")
    if os.environ.get("RATEDIAL_MQTT_PASSWORD") and not mqtt.username:
        click.echo("ratedial: note: RATEDIAL_MQTT_PASSWORD is set but [mqtt] username is not: "
                   "no password is sent (MQTT sends one only with a user name)", err=True)
        return password, tls
    if password and mqtt.username and not address.tls and not is_loopback(address.host):
        click.echo(f"ratedial: note: the MQTT password crosses the network unencrypted "
                   f"(mqtt://{address.host}); use mqtts:// (docs/mqtt.md, TLS)", err=True)
    return password, tls


def _platform_notes(path: str) -> None:
    """Notes that matter on this OS: who can read the recording, how fine the clock is."""
    from ._platform import clock_note
    from ._platform.privacy import privacy_warning

    for note in (privacy_warning(path), clock_note()):
        if note is not None:
            click.echo(f"ratedial: note: {note}", err=True)


def _pairs(values: tuple[str, ...], what: str, *, one_sign: bool = False) -> dict[str, str]:
    """``KEY=VALUE`` options; with ``one_sign`` (``--rater``: a label and a port may both
    hold ``=``) a second ``=`` is refused rather than guessed."""
    out: dict[str, str] = {}
    for v in values:
        label, sep, ident = v.partition("=")
        if not sep or not label or not ident:
            raise click.BadParameter(f"{v!r}: expected LABEL=VALUE", param_hint=what)
        check_text(label, what)
        if what == "--session":  # a port may be any path
            check_text(ident, what)
        if one_sign and "=" in ident:
            raise click.BadParameter(
                f"{v!r} has more than one '=': which is the label? Name a label or a port "
                "that holds '=' in the config file's [raters] table", param_hint=what)
        if label in out:
            raise click.BadParameter(f"{label} is given twice", param_hint=what)
        out[label] = ident
    return out


@cli.command()
@click.option("--port", "ports", multiple=True, metavar="PATH", type=_PORT,
              help="Serial port of a dial (repeatable), e.g. /dev/ttyACM0 or a virtual dial.")
@click.option("--rater", "raters", multiple=True, metavar="LABEL=DIAL",
              help="Give a dial a pseudonymous rater label, by dial id or port: "
                   "--rater client=e66038b7132f4a2c (repeatable).")
@click.option("--record", type=HomePath(), default=None,
              help="Recording file to create (default recordings/<date>-<time>.ratedial); "
                   "a folder (or a name ending in /): a new <date>-<time>.ratedial in it.")
@click.option("--duration", type=FiniteRange(min=0.1), default=None,
              help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--config", "config_path", type=HomePath(dir_okay=False), default=None,
              help="TOML configuration file; flags override it.")
@click.option("--broker", default=None, metavar="URL|embedded|none",
              help="MQTT broker: mqtt://host:port (default mqtt://localhost:1883), "
                   "mqtts://host:port, embedded (in-process, localhost only) or none.")
@click.option("--scan/--no-scan", default=None,
              help="Look for dials on USB ports besides the --port ports (the default), or "
                   "only use the --port ports. Config: scan.")
@click.option("--daemon-id", default=None, metavar="ID",
              help="Pseudonymous id of this daemon in MQTT topics (letters, digits, - and _; "
                   "default: a hash of the host name). Give each daemon on one machine its own.")
@click.option("--session", "session", multiple=True, metavar="KEY=VALUE",
              help="Pseudonymous session labels stored in the recording, e.g. --session dyad=D07.")
@click.option("--player", default=None, metavar="SPEC",
              help="Video player to follow: mpv[:SOCKET], vlc[:URL|PORT], mpc[:URL|PORT] "
                   "(mpc-hc, mpc-be; default 127.0.0.1:8080 and :13579), mpris[:NAME] (any "
                   "MPRIS player on Linux), manual[:SECONDS] or none (default none: wall "
                   "clock only).")
@click.option("--video", type=HomePath(dir_okay=False), default=None,
              help="Play this file in an mpv started by ratedial (implies --player mpv).")
@click.option("--osd/--no-osd", default=None,
              help="Show the current rating on mpv's OSD, or not (the default). Config: osd.")
@click.option("--lsl/--no-lsl", default=None,
              help="Publish each dial and a marker stream over Lab Streaming Layer (needs the "
                   "lsl extra), or not (the default). Config: lsl.")
@click.option("--web", is_flag=False, flag_value="127.0.0.1:0", default=None, metavar="[ADDR]",
              help="Serve a live view of the dials at ADDR (HOST:PORT, [IPV6]:PORT, HOST or "
                   "PORT; alone: 127.0.0.1 and a free port, printed). Config: web.")
@click.option("--no-web", is_flag=True, default=False,
              help="No live view, even if the config file has web.")
@click.option("--serial-io", type=click.Choice(["asyncio", "thread"]), default=None,
              help="How dials' serial ports are read: asyncio (the event loop waits on the "
                   "port; default on Linux and macOS) or thread (a thread per port blocked "
                   "in the read stamps each arrival; default on Windows, where asyncio can "
                   "only poll). Config: [serial] io.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def run(ports: tuple[str, ...], raters: tuple[str, ...], record: str | None,
        duration: float | None, config_path: str | None, broker: str | None, scan: bool | None,
        daemon_id: str | None, session: tuple[str, ...], player: str | None,
        video: str | None, osd: bool | None, lsl: bool | None, web: str | None,
        no_web: bool, serial_io: str | None, as_json: bool) -> None:
    """Record dials (and publish them over MQTT) until stopped.

    Finds dials on USB (or uses --port), maps their clocks to this computer's clock,
    accounts for every sample, records everything to one SQLite file and publishes the
    stream live over MQTT. Secrets (MQTT password) come from RATEDIAL_MQTT_PASSWORD or
    mqtt.password_file in the config, never from the command line.
    """

    from rich.console import Console

    from .config import load_config, with_overrides
    from .daemon.app import serve
    from .daemon.rater_ports import unopened_rater_error
    from .daemon.summary import (
        json_summary,
        name_together,
        print_summary,
        silent_ports_error,
    )
    from .player_choice import choose_player

    if web is not None and no_web:
        raise UsageError("--web and --no-web: give one")
    cfg = load_config(config_path)
    if no_web:
        cfg = dataclasses.replace(cfg, web=None)  # the file's web, undone
    if config_path is not None:  # the file's own values: their errors name the key and file
        from .players.spec import parse_spec
        from .web.server import parse_addr

        _file_value(config_path, "player", cfg.player if player is None else None, parse_spec)
        _file_value(config_path, "web", cfg.web if web is None else None, parse_addr)
    if broker is not None and broker.strip().lower() in ("embedded", "none"):
        broker = broker.strip().lower()  # --broker None is the word, not a host named None
    if config_path is not None and broker is not None and \
            cfg.mqtt.broker not in ("embedded", "none"):
        # the file's own URL, though --broker overrides it: a password written there is
        # refused all the same (the file is read by whoever it is shared with)
        from .mqtt.requests import parse_broker

        parse_broker(cfg.mqtt.broker, tls=cfg.mqtt.tls, option=f"mqtt.broker in {config_path}",
                     words="embedded or none")
    mqtt = cfg.mqtt if broker is None else dataclasses.replace(cfg.mqtt, broker=broker)
    if daemon_id is not None:
        mqtt = dataclasses.replace(mqtt, daemon_id=daemon_id)
    cfg = with_overrides(
        cfg,
        ports=tuple(dict.fromkeys(cfg.ports + ports)) if ports else None,
        raters={**cfg.raters, **_pairs(raters, "--rater", one_sign=True)} if raters else None,
        record=record, duration_s=duration, mqtt=mqtt,
        scan=scan,
        session={**cfg.session, **_pairs(session, "--session")} if session else None,
        lsl=lsl, web=web,
        serial=None if serial_io is None else dataclasses.replace(cfg.serial, io=serial_io),
    )
    chosen = choose_player(cfg, path=config_path, player=player, video=video, osd=osd)
    for note in chosen.notes:
        click.echo(f"ratedial: note: {note}", err=True)
    cfg = chosen.cfg
    unopened = unopened_rater_error(cfg)
    if unopened is not None:  # else a whole session is recorded without that rater's dial
        raise UsageError(unopened)
    cfg.mqtt.check_tls_for(cfg.mqtt.broker)
    if cfg.mqtt.broker not in ("embedded", "none"):
        from .mqtt.requests import parse_broker

        named = "--broker" if broker is not None else f"mqtt.broker in {config_path}"
        address = parse_broker(cfg.mqtt.broker, tls=cfg.mqtt.tls, option=named,
                               words="embedded or none")
        _check_credentials(cfg.mqtt, address)  # files that cannot be used: one line now
    console = Console(stderr=as_json)  # with --json, stdout carries only the summary
    _platform_notes(cfg.record or "recordings")
    write_errors_for_file_size_limit()
    try:
        summary = serve(cfg, console=console, last=True)
    except RatedialError as exc:
        stopped = getattr(exc, "summary", None)  # the recording failed: still the counts
        if as_json and stopped is not None:
            click.echo(json_summary(stopped, error=str(exc)))
        raise
    silent = silent_ports_error(summary)  # the others' data is kept; a script must see it
    if as_json:
        click.echo(json_summary(summary, error=silent))
    else:
        print_summary(console, summary)
    labelled = {v.rater for v in summary.dials}
    for v in summary.dials:
        if len(v.conflict) > 1:  # said when the dial came; the end of a run says it again
            click.echo(f"ratedial: note: rater labels {name_together(v.conflict)} "
                       f"dial {v.uid}: it was recorded without a rater label", err=True)
        elif v.conflict:
            click.echo(f"ratedial: note: rater label {v.conflict[0]} named another dial on "
                       f"the same port first: dial {v.uid} was recorded without a rater label",
                       err=True)
        labelled.update(v.conflict)
    for label, ident in cfg.raters.items():
        if label not in labelled:  # a mistyped id leaves a dial unlabelled: say so
            click.echo(f"ratedial: note: rater {label}={ident}: no dial with that id or port "
                       "was seen in this run", err=True)
    if silent is not None:
        raise RatedialError(silent)


@cli.command()
@click.option("--port", "ports", multiple=True, metavar="PATH", type=_PORT,
              help="Also ask these ports (e.g. virtual dials).")
@click.option("--timeout", type=FiniteRange(min=0.2), default=2.0, show_default=True,
              help="Seconds to wait for each dial to answer.")
def devices(ports: tuple[str, ...], timeout: float) -> None:
    """List connected dials: id, port, board and firmware.

    The list goes to stdout, one dial a line; a port without a dial is explained in one line
    on stderr (for example permissions). Exits with status 1 when a port given with --port
    has no dial that answers.
    """
    from .devices import list_dials

    rows, problems = list_dials(extra_ports=ports, timeout=timeout)
    for r in rows:
        click.echo(r)
    for port, why in problems.items():  # a port asked for is an error; a scanned one a note
        click.echo(f"ratedial: {'error: ' if port in ports else ''}{port}: {why}", err=True)
    if not rows:
        click.echo("ratedial: no dials found (plugged in? for a virtual dial pass --port PATH)",
                   err=True)
    if any(p in problems for p in ports):
        sys.exit(1)


@cli.command()
@click.option("--broker", default=None,
              help="MQTT broker to subscribe to (default: the config's [mqtt] broker, else "
                   "mqtt://localhost:1883).")
@click.option("--prefix", default=None,
              help="Topic prefix (default: the config's [mqtt] topic_prefix, else ratedial).")
@click.option("--duration", type=FiniteRange(min=0.1), default=None,
              help="Stop after this many seconds.")
@click.option("--config", "config_path", type=HomePath(dir_okay=False), default=None,
              help="TOML config file: its [mqtt] table (broker, topic_prefix, username, "
                   "password_file, tls, ca_file, cert_file, key_file; the password may come "
                   "from RATEDIAL_MQTT_PASSWORD). Flags override it.")
def monitor(broker: str | None, prefix: str | None, duration: float | None,
            config_path: str | None) -> None:
    """Subscribe to a broker and show every dial's live rating, state and losses."""
    import asyncio

    import aiomqtt
    from rich.console import Console

    from ._platform.loops import selector_loop
    from .config import load_config
    from .mqtt.monitor import monitor as run_monitor
    from .mqtt.requests import parse_broker

    mqtt = load_config(config_path).mqtt
    named = "--broker" if broker is not None else f"mqtt.broker in {config_path}"
    broker = mqtt.broker if broker is None else broker
    prefix = mqtt.topic_prefix if prefix is None else prefix
    if broker in ("embedded", "none"):
        raise UsageError(f"{named} {broker}: monitor subscribes to a running broker; give "
                         "--broker mqtt://HOST[:PORT] (a daemon with --broker embedded "
                         "prints its URL)")
    _check_prefix(prefix)
    mqtt.check_tls_for(broker)
    address = parse_broker(broker, tls=mqtt.tls, option=named, words="")  # not embedded/none
    password, tls = _check_credentials(mqtt, address)
    try:
        # Piped or logged output keeps whole columns instead of squeezing them into 80.
        console = Console() if sys.stdout.isatty() else Console(width=160)
        with asyncio.Runner(loop_factory=selector_loop) as runner:  # aiomqtt: add_reader
            runner.run(run_monitor(address, prefix=prefix, duration=duration, console=console,
                                   username=mqtt.username, password=password,
                                   tls_context=tls))
    except aiomqtt.MqttError as exc:
        from .mqtt.acks import credentials_refused, credentials_text

        if credentials_refused(exc):  # at connect, not at subscribe
            raise RatedialError(f"cannot connect to broker {hide_userinfo(broker)}: "
                                f"{credentials_text(exc)}") from None
        raise RatedialError(f"cannot subscribe at {broker}: {exc}") from None


@cli.command()
@click.option("--mqtt", "broker", required=True, metavar="URL",
              help="Broker to collect from: mqtt://host:port or mqtts://host:port.")
@click.option("--record", type=HomePath(dir_okay=False), required=True,
              help="Recording file to write; an existing file written by record --mqtt is "
                   "continued (after a crash or restart).")
@click.option("--prefix", default=None, help="Topic prefix (default ratedial, or the config's).")
@click.option("--client-id", default=None, metavar="ID",
              help="MQTT client id of the persistent session (default: derived from the host "
                   "name, prefix and --record path, so a restart resumes the session).")
@click.option("--duration", type=FiniteRange(min=0.1), default=None,
              help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--config", "config_path", type=HomePath(dir_okay=False), default=None,
              help="TOML configuration file: its [mqtt] username, password_file, TLS files.")
@click.option("--share", default=None, metavar="GROUP",
              help="Subscribe as one member of the shared subscription $share/GROUP/... "
                   "(several collectors; the broker must dispatch by publisher, "
                   "see docs/scaling.md). Each member writes its own recording.")
@click.option("--session-expiry", type=click.IntRange(min=1, max=2**32 - 1), default=3600,
              show_default=True,
              help="Seconds the broker keeps the session (and queues messages) while the "
                   "collector is away.")
@click.option("--settle", type=FiniteRange(min=0.1), default=2.0, show_default=True,
              help="Seconds a missing sample must stay missing before it is asked for.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def record(broker: str, record: str, prefix: str | None, client_id: str | None,
           duration: float | None, config_path: str | None, share: str | None,
           session_expiry: int, settle: float, as_json: bool) -> None:
    """Collect a whole session (all daemons, all dials) from an MQTT broker into one recording.

    Subscribes with a persistent session to every dial's samples, backfill, events and status
    and to the daemons' status and events, writes each sample exactly once (deduplicated by
    dial, boot and index) into a recording in the same format as `ratedial run`, and asks
    the daemons to replay what it missed during its own outages. The password comes from
    RATEDIAL_MQTT_PASSWORD or mqtt.password_file in the config.
    """
    import json
    from pathlib import Path

    from .config import load_config
    from .daemon.app import scrub_command_line
    from .mqtt.collect_shell import CollectConfig, collect
    from .mqtt.requests import parse_broker

    cfg = load_config(config_path)
    if prefix is not None:
        _check_prefix(prefix)
    mqtt = dataclasses.replace(cfg.mqtt, broker=broker,
                               topic_prefix=prefix or cfg.mqtt.topic_prefix)
    if broker in ("embedded", "none"):
        raise click.BadParameter("expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]",
                                 param_hint="--mqtt")
    mqtt.check_tls_for(broker)
    address = parse_broker(broker, tls=mqtt.tls, option="--mqtt")
    _check_credentials(mqtt, address)
    if share is not None and (not share or any(c in share for c in "/+#")):
        raise click.BadParameter(f"{share!r}: a group name has no '/', '+' or '#'",
                                 param_hint="--share")
    _platform_notes(record)
    summary = collect(CollectConfig(
        mqtt=mqtt, record=Path(record), client_id=client_id, share=share, duration_s=duration,
        session_expiry_s=session_expiry, settle_s=settle,
        command_line=scrub_command_line(sys.argv)),
        on_message=lambda m: click.echo(f"ratedial: {m}", err=True))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"{summary['recording']}: {summary['samples']} samples of "
                   f"{summary['dials']} dials from {len(summary['daemons'])} daemons, "
                   f"{summary['gaps']} gaps ({summary['gap_samples']} samples), "
                   f"{summary['duplicates']} duplicates dropped, "
                   f"{summary['replay_requests']} replay requests, "
                   f"{summary['holes']} samples still missing")


from .flash import flash  # noqa: E402  (the command lives with the flashing code)

cli.add_command(flash)


# Research analysis (the `analysis` extra); the module imports only click at this point.
from .analysis.cli import COMMANDS  # noqa: E402

for _command in COMMANDS:
    cli.add_command(_command)


def _file_value(path: str, key: str, value: str | None, parse: Callable[[str], object]) -> None:
    """Check ``value`` of ``key`` read from config file ``path`` (None: not given there, or a
    flag overrides it) with the flag's parser: its one-line error names the key and the
    file, not the flag the value did not come from."""
    if value is None:
        return
    try:
        parse(value)
    except UsageError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise UsageError(f"{key} = {hide_userinfo(repr(value))} in {path}: {reason}") from None


def _check_prefix(prefix: str) -> None:
    """A --prefix that cannot start ratedial's topics, refused as click refuses an option."""
    from .config import prefix_problem

    problem = prefix_problem(prefix)
    if problem:
        raise click.BadParameter(f"{prefix!r}: not a topic prefix ({problem})",
                                 param_hint="--prefix")


# click 8.2 and newer raise this for a bare `ratedial`; 8.1 prints the help itself
_NO_ARGS: type[click.UsageError] | tuple[()] = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main() -> None:
    # paho reports a lost connection as a log line ("failed to receive on socket: ...")
    # besides the exception every command turns into its own one-line message: without a
    # handler, Python's last-resort handler printed it raw on stderr (seen with `record`).
    # (The daemon's publisher passes a logger of its own, kept as quiet.)
    # aiomqtt hands paho the logger "mqtt", and sets its level when it is imported (later,
    # lazily): a filter outlives that.
    logging.getLogger("mqtt").addFilter(lambda _record: False)
    try:
        cli.main(standalone_mode=False)
    except Stopped as exc:
        exit_stopped(exc.signal)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # click turns Ctrl+C (and SIGTERM or SIGHUP, raised alike: ratedial.entry) into Abort
        cause = exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__
        if not isinstance(cause, KeyboardInterrupt):  # end of input at a prompt
            click.echo("aborted", err=True)
            sys.exit(130)
        exit_stopped(cause)
    except _NO_ARGS as exc:  # a bare `ratedial`: its help
        click.echo(exc.format_message())
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # a bad option or value: one line, like every error
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        click.echo(f"ratedial: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RatedialError as exc:
        click.echo(f"ratedial: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a file or folder the command had to write or read (read-only,
        # full, missing): the OS's words and the path, never a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"ratedial: error: {where}{exc.strerror or exc}", err=True)
        sys.exit(1)
