"""mpv over its JSON IPC socket (``--input-ipc-server``), and mpv launched by ratedial.

Invariants:

* Event-driven: mpv pushes ``time-pos`` once per frame, so each report is a lower bound of the
  media clock at its receipt (:data:`Source.PUSH`); the clock never runs more than one frame
  past the last report. Observers die with the connection: every connection observes again,
  and the initial values it gets back re-synchronise the clock.
* Message -> clock input is pure (:class:`~.mpv_input.MpvInput`, shared with the
  benchmark).
* A launched mpv (``--video``) is started once and stopped when the run ends; if the rater
  quits it, the run goes on with the media time unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from .._platform import has_display
from .._platform.pipes import connect_ipc, endpoint_ready, private_endpoint, remove_stale
from ..config import child_env
from ..errors import UsageError
from ..media import MediaOutput
from .mpv_input import MpvInput, finite, mpv_clock_config
from .session import PlayerGone, PlayerSession

log = logging.getLogger("ratedial.players")

# ``path`` first: mpv answers each observer at once, in this order, and a file loaded after its
# position was reported would start a playing segment without a position.
OBSERVED = ("path", "time-pos", "pause", "speed", "seeking", "eof-reached", "idle-active")
LAUNCH_ARGS = ("--keep-open=yes", "--idle=yes", "--pause", "--no-terminal", "--osd-level=1")
OSD_PERIOD_S = 0.2
REQUEST_TIMEOUT_S = 2.0
SOCKET_WAIT_S = 10.0
LINE_LIMIT = 1 << 20  # bytes of one IPC message


class MpvSession(PlayerSession):
    player = "mpv"
    # Trying a local socket costs nothing; a restarted mpv is followed within ~0.3 s.
    max_backoff_s = 0.25
    # Read the IPC endpoint from a thread (default: for Windows named pipes); True tests that
    # path on a Unix socket.
    ipc_thread: bool | None = None

    def __init__(self, socket_path: str, *, latency_ms: float = 0.0, video: str | None = None,
                 osd: bool = False, ratings: Callable[[], dict[str, float]] | None = None,
                 mpv_exe: str = "mpv", extra_args: tuple[str, ...] = (),
                 tmpdir: str | None = None) -> None:
        super().__init__(mpv_clock_config(latency_ms))
        self.socket_path = socket_path
        self.video = video
        self.osd = osd
        self.ratings = ratings or dict
        self.mpv_exe = mpv_exe
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self._tmpdir = tmpdir  # removed at the end (the launched mpv's private socket dir)
        self._writer: asyncio.Transport | None = None
        self._lines: _IpcLines | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ask_task: asyncio.Task[None] | None = None
        self.input = MpvInput(self.clock)

    # --- launching (--video) ----------------------------------------------------------------

    async def _start(self) -> None:
        if self.video is None:
            return
        args = [self.mpv_exe, f"--input-ipc-server={self.socket_path}", *LAUNCH_ARGS,
                *self.extra_args, "--", self.video]
        remove_stale(self.socket_path)  # mpv leaves its socket behind when it exits
        try:  # Popen, not asyncio's: the loop on Windows (select) has no subprocesses
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, env=child_env())
        except OSError as exc:
            raise UsageError(f"--video: cannot start mpv ({exc.strerror})") from None
        deadline = asyncio.get_running_loop().time() + SOCKET_WAIT_S
        while not endpoint_ready(self.socket_path):  # ~75 ms after launch
            if self.process.poll() is not None:
                raise UsageError(f"--video {self.video}: mpv exited at once "
                                 f"(code {self.process.returncode}); is it a video file?")
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)

    async def _stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    # --- one connection ---------------------------------------------------------------------

    async def _follow(self, out: MediaOutput) -> None:
        try:
            transport, lines = await connect_ipc(
                self.socket_path, lambda: _IpcLines(self._line, self.now),
                thread=self.ipc_thread)
        except OSError as exc:  # say where it looked: "not running (... : /tmp/mpvsocket)"
            raise OSError(exc.errno, f"{exc.strerror or exc}: {self.socket_path}") from None
        self._writer = transport
        self._lines = lines
        self.input = MpvInput(self.clock)
        osd_task = asyncio.create_task(self._osd_loop(), name="mpv osd") if self.osd else None
        try:
            for i, name in enumerate(OBSERVED, start=1):
                self._send(["observe_property", i, name])
            await lines.closed  # raises what ended the connection
            raise PlayerGone("mpv closed the connection")
        finally:
            if osd_task is not None:
                osd_task.cancel()
            self._writer = None
            self._lines = None
            for fut in self._pending.values():
                fut.cancel()
            self._pending.clear()
            transport.close()

    def poll(self) -> None:
        """Take in what mpv has already sent, before samples are put on its timeline: on a
        busy machine the loop may not have read the socket for tens of ms, and the frame
        ceiling would hold the samples at the last report it had."""
        if self._lines is not None:
            self._lines.poll()

    def _line(self, host_ns: int, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested beyond reason
            return
        if isinstance(msg, dict):
            self._connected(host_ns)
            self._message(host_ns, msg)

    def _send(self, command: list[Any], request_id: int = 0) -> None:
        if self._writer is None:
            raise PlayerGone("not connected")
        self._writer.write(json.dumps({"command": command, "request_id": request_id}).encode()
                           + b"\n")

    async def request(self, *command: Any) -> Any:
        """Send a command and wait for its answer's ``data`` (None on error)."""
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._send(list(command), rid)
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await fut
        finally:
            self._pending.pop(rid, None)

    def _message(self, host_ns: int, msg: dict[str, Any]) -> None:
        rid = msg.get("request_id")
        if rid and "error" in msg:
            fut = self._pending.get(rid)
            if fut is not None and not fut.done():
                fut.set_result(msg.get("data") if msg.get("error") == "success" else None)
            return
        self._on_message(host_ns, msg)

    def _on_message(self, host_ns: int, msg: dict[str, Any]) -> None:
        step = self.input.message(host_ns, msg)
        self._emit(step.events)
        if step.failed is not None:  # recorded and said: no media time will come from it
            path = step.failed_path or self.video  # as mpv names it, else the --video file
            log.warning("mpv could not play %s (%s): media times stay unknown",
                        path or "the file it was given", step.failed[:200])
            if self._out is not None:
                self._out.event("media_error", {"player": self.player, "path": path,
                                                "error": step.failed[:200]}, host_ns)
        for media_s, rate, playing, source in step.observations:
            self._observe(host_ns, media_s, rate, playing, source)
        if step.ask_position:
            self._ask_task = asyncio.create_task(self._ask_position(), name="mpv landed")
        if step.load:
            if self._identify_task is not None:
                self._identify_task.cancel()
            self._identify_task = asyncio.create_task(self._identify_mpv(host_ns),
                                                      name="mpv identify")

    async def _ask_position(self) -> None:
        """After a seek: mpv's answer to ``get_property time-pos`` is where it landed."""
        sent = self.now()
        with contextlib.suppress(PlayerGone, TimeoutError):
            pos = finite(await self.request("get_property", "time-pos"))
            recv = self.now()
            if pos is not None and pos >= 0:
                self._emit(self.clock.position(recv, pos, sent_ns=sent))
                self._observe(recv, pos, self.clock.rate, None, "get:time-pos")

    async def _identify_mpv(self, host_ns: int) -> None:
        with contextlib.suppress(PlayerGone, TimeoutError):
            await self._identify_mpv_now(host_ns)

    async def _identify_mpv_now(self, host_ns: int) -> None:
        path = await self.request("get_property", "path")
        wd = await self.request("get_property", "working-directory")
        if isinstance(path, str) and "://" not in path and isinstance(wd, str):
            path = os.path.normpath(os.path.join(wd, path))
        path = path if isinstance(path, str) else None
        if self._known_file(path):  # the same file again (mpv restarted, reloaded): at once,
            # since until it is identified the samples have no media time (docs/timing.md)
            await self._identify(host_ns, path, duration_s=None, fps=None, use_probe=False)
            return
        duration = None
        for _ in range(50):  # connected while the file was still opening: not known yet
            duration = await self.request("get_property", "duration")
            if duration is not None:
                break
            await asyncio.sleep(0.02)
        fps = (await self.request("get_property", "container-fps")
               or await self.request("get_property", "estimated-vf-fps"))
        # mpv may not know the frame rate yet (seen with --vo=null): ffprobe's, then, so that
        # media.fps is not left NULL for a file that has one
        await self._identify(host_ns, path, duration_s=_num(duration), fps=_num(fps),
                             use_probe=_num(fps) is None)

    # --- rater feedback ---------------------------------------------------------------------

    async def _osd_loop(self) -> None:
        last = None
        while True:
            text = osd_text(self.ratings())
            if text != last:
                with contextlib.suppress(PlayerGone):
                    self._send(["osd-overlay", 1, "ass-events", text] if text
                               else ["osd-overlay", 1, "none", ""])
                last = text
            await asyncio.sleep(OSD_PERIOD_S)




class _IpcLines(asyncio.Protocol):
    """mpv's IPC bytes -> complete lines, each handled with its receipt time as soon as it is
    seen: by the loop's read callback, or by :meth:`poll` (a non-blocking read of the socket
    before samples are annotated). A line longer than :data:`LINE_LIMIT` is dropped; an
    exception from the handler ends the connection with it."""

    def __init__(self, on_line: Callable[[int, bytes], None], now: Callable[[], int]) -> None:
        self._on_line = on_line
        self._now = now
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line: drop up to its newline
        self._fd = -1
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1  # None: a reader thread

    def data_received(self, data: bytes) -> None:
        self._feed(self._now(), data)

    def eof_received(self) -> bool:
        self._end(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    def poll(self) -> None:
        while self._fd >= 0 and not self.closed.done():
            try:
                data = os.read(self._fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the transport sees the same error and closes
                self._end(exc)
                return
            if not data:  # end of stream; the transport sees it too
                self._end(None)
                return
            self._feed(self._now(), data)

    def _feed(self, host_ns: int, data: bytes) -> None:
        if self.closed.done():
            return
        self._buf += data
        start = 0
        try:
            while (end := self._buf.find(b"\n", start)) >= 0:
                if not self._skipping:
                    self._on_line(host_ns, bytes(self._buf[start:end]))
                self._skipping = False
                start = end + 1
        except Exception as exc:  # ends this connection; _follow raises it
            self._end(exc)
            return
        finally:
            del self._buf[:start]
        if len(self._buf) > LINE_LIMIT:
            self._buf.clear()
            self._skipping = True

    def _end(self, exc: Exception | None) -> None:
        self._fd = -1
        if not self.closed.done():
            if exc is None:
                self.closed.set_result(None)
            else:
                self.closed.set_exception(exc)


def osd_text(ratings: dict[str, float]) -> str:
    """The ASS text drawn on mpv's OSD (top right): ``client 63   therapist 40``."""
    if not ratings:
        return ""
    parts = [f"{_ass_escape(label)} {value:.0f}" for label, value in sorted(ratings.items())]
    return "{\\an9}" + "   ".join(parts)


def _ass_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}").replace("\n", " ")


def _num(v: Any) -> float | None:
    f = finite(v)
    return f if f is not None and f > 0 else None


def starts_paused(args: tuple[str, ...]) -> bool:
    """Whether mpv options ``args`` leave it paused: the last of ``--pause[=yes|no]`` /
    ``--no-pause`` wins, as in mpv."""
    paused = False
    for a in args:
        if a in ("--pause", "--pause=yes"):
            paused = True
        elif a in ("--pause=no", "--no-pause"):
            paused = False
    return paused


def no_display_note(name: str, extra: tuple[str, ...]) -> str:
    """The one line a ``--video`` run without a display says of what mpv does."""
    if starts_paused(extra):
        return (f"no display: mpv starts {name} paused, without a window or sound "
                "(RATEDIAL_MPV_ARGS has --pause: play it over its socket)")
    return (f"no display: mpv plays {name} without a window or sound, from the start "
            "(RATEDIAL_MPV_ARGS=--pause keeps it paused)")


def launched_session(video: str, *, socket_path: str | None, latency_ms: float, osd: bool,
                     ratings: Callable[[], dict[str, float]]) -> MpvSession:
    """``--video FILE``: an mpv started (paused) by ratedial on a private socket."""
    exe = shutil.which("mpv")
    if exe is None:
        raise UsageError("--video needs mpv: install it (Debian/Ubuntu: apt-get install mpv; "
                         "macOS: brew install mpv; Windows: winget install mpv, or put "
                         "mpv.exe on PATH)")
    if not os.path.isfile(video):
        raise UsageError(f"--video {video}: no such file")
    tmpdir = None
    if socket_path is None:
        socket_path, tmpdir = private_endpoint()
    extra = tuple(shlex.split(os.environ.get("RATEDIAL_MPV_ARGS", "")))
    if not has_display():  # no window to press Space in: it plays from the start
        log.warning("%s", no_display_note(os.path.basename(video), extra))
        extra = ("--vo=null", "--ao=null", "--pause=no", *extra)
    return MpvSession(socket_path, latency_ms=latency_ms, video=os.path.abspath(video),
                      osd=osd, ratings=ratings, mpv_exe=exe, extra_args=extra, tmpdir=tmpdir)
