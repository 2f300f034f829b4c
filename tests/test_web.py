"""The live web view: bounded memory (unit), and the page in headless Chromium against
``ratedial run --web`` with two virtual dials (curves advance, a mean line, a lost dial is
shown as lost). The screenshot is kept in tests/artifacts/ (gitignored).

Needs Debian's chromium (``apt-get install -y chromium``) and the Python ``playwright``
package (its own browsers are not used or downloaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from daemonrun import finish, start_daemon
from ratedial.errors import UsageError
from ratedial.outputs import EventOut, SamplesOut
from ratedial.web import BIN_S, RING_POINTS, WebServer, WebSink, parse_addr

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
T = TypeVar("T")


class View:
    def __init__(self, uid, state="connected") -> None:
        self.uid, self.rater, self.state = uid, "r" + uid, state
        self.received = self.missing = 0
        self.rate_hz, self.rating, self.latency_ms, self.uncertainty_us = 1000.0, 50.0, 1.0, 9.0


def test_parse_addr():
    assert parse_addr("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_addr("8080") == ("127.0.0.1", 8080)
    assert parse_addr("0.0.0.0:8000") == ("0.0.0.0", 8000)
    assert parse_addr("[::1]:9000") == ("::1", 9000)
    assert parse_addr("localhost") == ("localhost", 0)
    for bad in ("host:x", "[::1", "h:70000"):
        with pytest.raises(UsageError):
            parse_addr(bad)


def test_a_blank_address_is_refused_and_a_blank_host_is_loopback():
    """An audit (2026-12-05): ``--web ""`` and ``--web " "`` (``web = ""`` written to mean
    "off") started a view on 127.0.0.1, and ``[]:8000`` an empty host: every interface."""
    for blank in ("", " ", "\t"):
        with pytest.raises(UsageError, match="an empty address is not 'off'"):
            parse_addr(blank)
    with pytest.raises(UsageError, match=r"expected \[IPV6\]:PORT"):
        parse_addr("[]:8000")
    assert parse_addr(":8000") == ("127.0.0.1", 8000)  # a blank host: loopback, documented
    assert parse_addr(" :8000 ") == ("127.0.0.1", 8000)


def test_sink_memory_is_bounded_over_a_long_session():
    """Two dials at 1 kHz for a simulated hour: held points never exceed the rings."""
    now = [0]
    views = [View("a"), View("b")]
    sink = WebSink(views=lambda: views, media=lambda: {"player": "none", "connected": False},
                   clock=lambda: now[0])
    peak = 0
    for batch in range(3600 * 50):  # 20 ms batches of 20 samples
        t0 = batch * 20_000_000
        now[0] = t0 + 20_000_000
        for k, uid in enumerate(("a", "b")):
            host = tuple(t0 + i * 1_000_000 for i in range(20))
            sink.handle([SamplesOut(uid, 1, batch * 20, 1000, tuple(range(20)), host,
                                    (0,) * 20, (40.0 + 10 * k,) * 20, (0,) * 20)])
        if batch % 5 == 0:  # the server ticks every 100 ms here
            msg = sink.tick()
            assert len(msg["points"]["a"]) <= 2
        peak = max(peak, sink.held_points())
    assert peak <= 3 * RING_POINTS
    snap = sink.snapshot()
    assert len(snap["points"]["a"]) == RING_POINTS
    xs = [p[0] for p in snap["points"]["a"]]
    assert xs == sorted(xs) and xs[-1] > 3599  # the newest 10 minutes, in order
    g = snap["group"][-1]
    assert g[1] == 45.0 and (g[2], g[3]) == (40.0, 50.0) and g[5] == 2  # mean, range, n
    assert snap["mean"] == g  # the current mean in the snapshot too (it was null)


@pytest.mark.parametrize("paused", [False, True])
def test_the_mean_line_holds_one_point_per_bin_like_the_curves(paused):
    """An audit (2026-12-04): the group ring got a point on every tick (20 a second), so it
    held 5 of the curves' 10 minutes, and a paused video filled it with copies of one point
    (190 in 9 s), pushing the mean history out."""
    now = [0]
    views = [View("a"), View("b")]
    sink = WebSink(views=lambda: views, media=lambda: {"player": "mpv", "connected": True,
                                                       "media_s": 5.0},
                   clock=lambda: now[0])
    for batch in range(20 * 60 * 50):  # 20 minutes of 20 ms batches, ticks every 50 ms
        t0 = batch * 20_000_000
        now[0] = t0 + 20_000_000
        media = (5.0,) * 20 if paused else tuple((t0 + i * 1_000_000) / 1e9 for i in range(20))
        for k, uid in enumerate(("a", "b")):
            host = tuple(t0 + i * 1_000_000 for i in range(20))
            sink.handle([SamplesOut(uid, 1, batch * 20, 1000, tuple(range(20)), host,
                                    (0,) * 20, (40.0 + 10 * k,) * 20, (0,) * 20,
                                    (1,) * 20, media, (1,) * 20)])
        if batch % 5 in (0, 2):  # a tick every 50 ms, as the server's
            assert sink.tick()["mean"] is not None
    snap = sink.snapshot()
    if paused:
        assert len(snap["group"]) == 1 and snap["mean"][1] == 45.0  # one bin: one point
    else:
        group_x = [g[0] for g in snap["group"]]
        curve_x = [p[0] for p in snap["points"]["a"]]
        assert len(group_x) == RING_POINTS and abs(group_x[0] - curve_x[0]) <= 0.2


async def _status_for(server: WebServer, host_header: str | None, path: str = "/state", *,
                      at: str = "127.0.0.1", extra: str = "") -> str:
    reader, writer = await asyncio.open_connection(at, server.port)
    head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host_header}\r\n" if host_header else "")
    writer.write((head + extra + "\r\n").encode())
    await writer.drain()
    status = (await reader.readline()).decode().strip()
    writer.close()
    return status


def _serve(bind: str, ask: Callable[[WebServer], Awaitable[T]]) -> tuple[T, str]:
    """Start a view bound to ``bind``, run ``ask`` against it, stop it; (its answer, URL)."""
    sink = WebSink(views=lambda: [View("a")],
                   media=lambda: {"player": "none", "connected": False})

    async def main() -> tuple[T, str]:
        server = WebServer(sink, bind)
        url = await server.start()
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        try:
            return await ask(server), url
        finally:
            stop.set()
            await task

    return asyncio.run(main())


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 on this machine")
@pytest.mark.parametrize("dualstack", [True, False])
def test_a_view_bound_to_every_ipv6_interface_serves_ipv4_too(dualstack, monkeypatch):
    """An audit (2026-12-05): ``--web [::]:PORT`` listened on IPv6 only (asyncio sets
    IPV6_V6ONLY whatever the system's bindv6only), so 127.0.0.1, the lab's IPv4 addresses
    and the URL it printed (this machine's name) found nothing. Without a dual-stack socket
    (``dualstack=False``), two listeners on one port."""
    if not dualstack:
        monkeypatch.setattr(socket, "has_dualstack_ipv6", lambda: False)

    async def ask(server: WebServer) -> dict[str, str]:
        p = server.port
        return {"v4": await _status_for(server, f"127.0.0.1:{p}", at="127.0.0.1"),
                "v6": await _status_for(server, f"[::1]:{p}", at="::1"),
                "any name": await _status_for(server, f"labpc7:{p}", at="127.0.0.1")}

    got, url = _serve("[::]:0", ask)
    assert set(got.values()) == {"HTTP/1.1 200 OK"}, got  # every interface: any Host
    assert url.startswith(f"http://{socket.gethostname()}:"), url


@pytest.mark.parametrize("bind", ["127.0.0.1:0", "0.0.0.0:0"])
def test_two_host_headers_are_a_bad_request(bind):
    """An audit (2026-12-05): with two Host headers the first was used."""
    async def ask(server: WebServer) -> list[str]:
        p = server.port
        return [await _status_for(server, f"localhost:{p}", extra="Host: evil.example\r\n"),
                await _status_for(server, f"localhost:{p}", extra=f"host: localhost:{p}\r\n"),
                await _status_for(server, f"localhost:{p}")]

    got, _ = _serve(bind, ask)
    assert got == ["HTTP/1.1 400 Bad Request"] * 2 + ["HTTP/1.1 200 OK"], got


def test_the_page_is_served_at_slash_only():
    """An audit (2026-12-05): /index.html served the page; the docs say 404 for every path
    but /, /events and /state."""
    async def ask(server: WebServer) -> dict[str, str]:
        host = f"127.0.0.1:{server.port}"
        return {path: await _status_for(server, host, path)
                for path in ("/", "/?x=1", "/index.html", "/static/index.html", "/state")}

    got, _ = _serve("127.0.0.1:0", ask)
    assert got == {"/": "HTTP/1.1 200 OK", "/?x=1": "HTTP/1.1 200 OK",
                   "/index.html": "HTTP/1.1 404 Not Found",
                   "/static/index.html": "HTTP/1.1 404 Not Found",
                   "/state": "HTTP/1.1 200 OK"}, got


@pytest.mark.parametrize("bind", ["127.0.0.1:0", "0.0.0.0:0"])
def test_a_view_bound_to_this_machine_answers_only_requests_for_this_machine(bind):
    """DNS rebinding: a page on evil.example whose name is made to resolve to 127.0.0.1
    would otherwise read the view. Bound to loopback, the server answers only Host headers
    that name this machine; bound to the network (the user's choice), any."""
    views = [View("a")]
    sink = WebSink(views=lambda: views, media=lambda: {"player": "none", "connected": False})

    async def main() -> dict[str | None, str]:
        server = WebServer(sink, bind)
        await server.start()
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        p = server.port
        try:
            return {h: await _status_for(server, h) for h in (
                f"127.0.0.1:{p}", f"localhost:{p}", f"[::1]:{p}", "localhost",
                f"evil.example:{p}", "evil.example", f"127.0.0.1.evil.example:{p}", None)}
        finally:
            stop.set()
            await task

    got = asyncio.run(main())
    local = {h: st for h, st in got.items() if h is not None and (
        h.startswith(("127.0.0.1:", "localhost", "[::1]")))}
    assert set(local.values()) == {"HTTP/1.1 200 OK"}, got
    foreign = {h: st for h, st in got.items() if h not in local}
    want = "HTTP/1.1 403 Forbidden" if bind.startswith("127.") else "HTTP/1.1 200 OK"
    assert set(foreign.values()) == {want}, got


def read_url(proc, timeout=30.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stderr.readline()  # with --json, messages go to stderr
        m = re.search(r"live view on (http://\S+)", line)
        if m:
            return m.group(1)
        if not line and proc.poll() is not None:
            break
    raise AssertionError("the daemon printed no live view URL")


@pytest.mark.slow
def test_page_in_headless_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from ratedial.virtual import VirtualDial

    ARTIFACTS.mkdir(exist_ok=True)
    path = tmp_path / "web.ratedial"
    with VirtualDial(seed=41, subprocess=True) as a, VirtualDial(seed=42, subprocess=True) as b, \
            sync_api.sync_playwright() as pw:
        proc = start_daemon("--port", a.port, "--port", b.port, "--broker", "none",
                            "--record", str(path), "--duration", "25",
                            "--rater", f"client={a.port}", "--rater", f"therapist={b.port}",
                            "--web")
        url = read_url(proc)
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url) as r:  # the page: no external assets
            html = r.read().decode()
            assert "connect-src 'self'" in r.headers["Content-Security-Policy"]
        assert not re.search(r"(src|href)=\"(https?:)?//", html)
        for method, where in (("POST", ""), ("HEAD", "events")):  # HEAD of a stream too
            req = urllib.request.Request(url + where, method=method)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req)
            assert err.value.code == 405, (method, where)

        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        # bypass_csp: Playwright evaluates its probes with eval(), which the page's CSP forbids.
        page = browser.new_page(viewport={"width": 1280, "height": 720}, bypass_csp=True)
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('tr[data-uid]').length === 2 && "
                               "[...document.querySelectorAll('tr[data-uid]')]"
                               ".every(r => +r.dataset.points > 10)", timeout=20_000)
        rows = "[...document.querySelectorAll('tr[data-uid]')].map(r => ({...r.dataset}))"
        t1 = time.monotonic()
        first = page.evaluate(rows)
        ticks1 = int(page.get_attribute("body", "data-ticks"))
        time.sleep(2.0)
        second = page.evaluate(rows)
        ticks2 = int(page.get_attribute("body", "data-ticks"))
        rate = (ticks2 - ticks1) / (time.monotonic() - t1)
        assert rate >= 10, rate
        for r1, r2 in zip(first, second, strict=True):
            assert r1["uid"] == r2["uid"] and r2["state"] == "connected"
            assert float(r2["lastX"]) > float(r1["lastX"]) + 1.5  # the curve advanced
            assert int(r2["points"]) > int(r1["points"])
        assert "mean of 2" in page.inner_text("#groupfoot")
        assert page.get_attribute("body", "data-axis") == "wall"
        page.screenshot(path=str(ARTIFACTS / "web_live.png"))

        uid_a = json.loads(urllib.request.urlopen(url + "state").read())["dials"]
        a_uid = next(d["uid"] for d in uid_a if d["rater"] == "client")
        a.control("unplug")
        page.wait_for_selector(f"tr[data-uid='{a_uid}'][data-state='lost']", timeout=10_000)
        assert page.inner_text(f"tr[data-uid='{a_uid}'] .state") == "lost"
        page.wait_for_function("document.getElementById('groupfoot').innerText === ''")
        page.screenshot(path=str(ARTIFACTS / "web_lost.png"))
        a.control("plug")
        page.wait_for_selector(f"tr[data-uid='{a_uid}'][data-state='connected']",
                               timeout=15_000)
        browser.close()
        finish(proc)
    print(f"web: {rate:.1f} updates/s in the page")


@pytest.mark.slow
def test_the_page_tells_apart_dials_whose_ids_share_8_digits():
    """An audit (2026-12-05): two dials whose ids share the first 8 hex digits were both
    shown as ``(ffff0000)``."""
    import threading

    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    views = [View("ffff0000aaaa1111"), View("ffff0000bbbb2222"), View("1c9628e2aaaa3333")]
    views[0].rater, views[1].rater, views[2].rater = "client", "therapist", None
    sink = WebSink(views=lambda: views, media=lambda: {"player": "none", "connected": False})
    loop = asyncio.new_event_loop()
    server = WebServer(sink, "127.0.0.1:0")
    url = loop.run_until_complete(server.start())
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.run(stop),))
    thread.start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                         headless=True)
            page = browser.new_page(bypass_csp=True)
            page.goto(url)
            page.wait_for_function("document.querySelectorAll('tr[data-uid]').length === 3")
            names = page.evaluate("[...document.querySelectorAll('tr[data-uid] td:first-child')]"
                                  ".map(td => td.innerText.trim())")
            browser.close()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
    assert names == ["client (ffff0000a)", "therapist (ffff0000b)", "1c9628e2aaaa3333"], names


def test_a_view_bound_to_every_interface_prints_this_machines_name() -> None:
    """``--web 0.0.0.0:0`` printed http://0.0.0.0:PORT/, which other computers cannot open."""
    import socket

    sink = WebSink(views=lambda: [], media=lambda: {"player": "none", "connected": False})

    async def main() -> str:
        server = WebServer(sink, "0.0.0.0:0")
        url = await server.start()
        stop = asyncio.Event()
        stop.set()
        await server.run(stop)
        return url

    url = asyncio.run(main())
    assert url.startswith(f"http://{socket.gethostname()}:") and "0.0.0.0" not in url


def _a_loopback_alias() -> str | None:
    """A name other than localhost that resolves only to loopback addresses (this machine's
    name, often, through /etc/hosts), or None."""
    import ipaddress
    import socket

    for name in (socket.gethostname(), "ip6-localhost", "localhost.localdomain"):
        try:
            addrs = {a[4][0] for a in socket.getaddrinfo(name, 0, type=socket.SOCK_STREAM)}
        except OSError:
            continue
        if addrs and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
            return name
    return None


def test_a_view_bound_by_a_name_for_loopback_keeps_the_rebinding_guard():
    """Found by a black-box test: --web vm:0, vm being 127.0.0.1 in /etc/hosts, bound only
    loopback but answered Host: evil.com (the guard looked at the name, not the address)."""
    alias = _a_loopback_alias()
    if alias is None:
        pytest.skip("no name for a loopback address on this machine but localhost")
    views = [View("a")]
    sink = WebSink(views=lambda: views, media=lambda: {"player": "none", "connected": False})

    async def main() -> dict[str, str]:
        server = WebServer(sink, f"{alias}:0")
        await server.start()
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        p = server.port
        try:
            return {h: await _status_for(server, h) for h in (
                f"{alias}:{p}", f"127.0.0.1:{p}", f"evil.example:{p}")}
        finally:
            stop.set()
            await task

    got = asyncio.run(main())
    p_alias, p_ip, p_evil = got.values()
    assert (p_alias, p_ip) == ("HTTP/1.1 200 OK", "HTTP/1.1 200 OK"), got
    assert p_evil == "HTTP/1.1 403 Forbidden", got


def test_the_snapshot_says_the_mean_the_last_tick_said():
    """Found by a black-box test: /state kept "mean of 2" for the 4 s one of two dials was
    unplugged, while the ticks said null (the snapshot took the newest group point)."""
    now = [0]
    views = [View("a"), View("b")]
    sink = WebSink(views=lambda: views, media=lambda: {"player": "none", "connected": False},
                   clock=lambda: now[0])

    def samples(batch: int, uids: tuple[str, ...]) -> None:
        t0 = batch * 20_000_000
        now[0] = t0 + 20_000_000
        for k, uid in enumerate(uids):
            host = tuple(t0 + i * 1_000_000 for i in range(20))
            sink.handle([SamplesOut(uid, 1, batch * 20, 1000, tuple(range(20)), host,
                                    (0,) * 20, (40.0 + 10 * k,) * 20, (0,) * 20)])

    for batch in range(50):
        samples(batch, ("a", "b"))
    assert sink.tick()["mean"] is not None and sink.snapshot()["mean"] is not None
    views[1].state = "lost"
    for batch in range(50, 100):
        samples(batch, ("a",))
    assert sink.tick()["mean"] is None
    assert sink.snapshot()["mean"] is None


def test_run_time_zero_is_the_run_start_event():
    """An audit (2026-12-05): run time was counted from the sink's creation, 20-55 ms before
    the run_start event, a time nothing in the recording holds."""
    now = [1_000_000_000]
    sink = WebSink(views=lambda: [View("a")],
                   media=lambda: {"player": "none", "connected": False},
                   clock=lambda: now[0])
    start = 7_000_000_000
    sink.handle([EventOut("", start, "run_start", {"recording": "r.ratedial"})])
    host = tuple(start + 250_000_000 + i * 1_000_000 for i in range(20))
    sink.handle([SamplesOut("a", 1, 0, 1000, tuple(range(20)), host, (0,) * 20,
                            tuple(float(40 + i) for i in range(20)), (0,) * 20)])
    host = tuple(start + 400_000_000 + i * 1_000_000 for i in range(20))
    sink.handle([SamplesOut("a", 1, 20, 1000, tuple(range(20)), host, (0,) * 20,
                            (50.0,) * 20, (0,) * 20)])
    now[0] = start + 500_000_000
    msg = sink.tick()
    assert msg["points"]["a"] == [[0.269, 59.0, 0]]  # the bin's last sample, at run time
    assert msg["t"] == 0.5


@pytest.mark.slow
def test_state_points_are_recorded_samples_at_run_time(tmp_path):
    """Every wall-axis point of /state is the recorded sample at host_ns = run_start's
    host_ns + x s: the last of its 100 ms bin, its rating, to the 1 ms that x is rounded to."""
    import bisect
    import math

    from daemonrun import query, wait_until
    from ratedial.virtual import VirtualDial

    path = tmp_path / "web.ratedial"
    with VirtualDial(seed=43, subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                            "--duration", "8", "--web")
        url = read_url(proc)
        wait_until(path, "SELECT count(*) FROM samples WHERE host_ns IS NOT NULL",
                   lambda n: n >= 4000)
        with urllib.request.urlopen(url + "state") as r:
            state = json.loads(r.read())
        finish(proc)
    (start,), = query(path, "SELECT host_ns FROM events WHERE kind = 'run_start'")
    rows = query(path, "SELECT host_ns, rating FROM samples WHERE host_ns IS NOT NULL "
                       "ORDER BY host_ns")
    run_s = [(h - start) / 1e9 for h, _ in rows]
    bins = [math.floor(x / BIN_S) for x in run_s]
    (points,) = state["points"].values()
    assert len(points) >= 30 and all(m == 0 for *_, m in points)
    for x, rating, _ in points:
        near = range(bisect.bisect_left(run_s, x - 0.0005 - 1e-9),
                     bisect.bisect_right(run_s, x + 0.0005 + 1e-9))  # x is rounded to 1 ms
        last = [k for k in near if k + 1 < len(bins) and bins[k + 1] != bins[k]]
        assert len(last) == 1 and rows[last[0]][1] == rating, (
            x, rating, [(run_s[k], rows[k][1]) for k in near])


def test_a_flood_of_idle_connections_is_bounded(monkeypatch):
    """Found by a black-box test: 1100 idle connections used up the daemon's file
    descriptors (EMFILE tracebacks; a replugged dial's port could not be opened)."""
    from ratedial.web import server as srv

    monkeypatch.setattr(srv, "MAX_CONNECTIONS", 20)
    monkeypatch.setattr(srv, "REQUEST_TIMEOUT_S", 1.0)
    views = [View("a")]
    sink = WebSink(views=lambda: views, media=lambda: {"player": "none", "connected": False})

    async def main() -> tuple[int, int, str]:
        server = WebServer(sink, "127.0.0.1:0")
        await server.start()
        stop = asyncio.Event()
        task = asyncio.create_task(server.run(stop))
        conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(60)]
        closed = 0
        for reader, _ in conns[20:]:  # beyond the cap: closed by the server at once
            with contextlib.suppress(ConnectionError):
                if await asyncio.wait_for(reader.read(), 5.0) == b"":
                    closed += 1
        held = server._open
        for _, writer in conns:
            writer.close()
        status = ""
        for _ in range(100):  # the idle ones are gone; then a page is served again
            with contextlib.suppress(ConnectionError):
                status = await _status_for(server, f"127.0.0.1:{server.port}")
            if status:
                break
            await asyncio.sleep(0.05)  # polling for the server to let the closed ones go
        stop.set()
        await task
        return closed, held, status

    closed, held, status = asyncio.run(main())
    assert closed == 40 and held <= 20
    assert status == "HTTP/1.1 200 OK"
