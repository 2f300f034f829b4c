"""Stand-ins for the blank-board tests of ``ratedial flash``: UF2 files built block by block,
a BOOTSEL drive (a directory with the boot ROM's INFO_UF2.TXT), and a local HTTP server
playing micropython.org (``$RATEDIAL_MICROPYTHON_MIRROR`` points at it)."""

from __future__ import annotations

import http.server
import socket
import struct
import threading
from pathlib import Path

from ratedial.flash import uf2

ROOT = Path(__file__).resolve().parent.parent

INFO_RP2040 = "UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n"
INFO_RP2350 = "UF2 Bootloader v1.0\nModel: Raspberry Pi RP2350\nBoard-ID: RP2350\n"


def make_uf2(families: list[int], *, payload: bytes = b"\0" * 256) -> bytes:
    """One block per family id, as pico-sdk's elf2uf2 writes them (payload 256 bytes)."""
    out = bytearray()
    for i, family in enumerate(families):
        block = struct.pack("<8I", uf2.MAGIC_START0, uf2.MAGIC_START1, uf2.FLAG_FAMILY_ID,
                            0x10000000 + 256 * i, len(payload), i, len(families), family)
        block += payload.ljust(476, b"\0") + struct.pack("<I", uf2.MAGIC_END)
        assert len(block) == 512
        out += block
    return bytes(out)


def bootsel_drive(path: Path, info: str = INFO_RP2040) -> Path:
    """A directory that looks like the boot ROM's drive (INDEX.HTM and INFO_UF2.TXT)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "INFO_UF2.TXT").write_text(info)
    (path / "INDEX.HTM").write_text('<html><head><meta http-equiv="refresh" '
                                    'content="0;URL=\'https://raspberrypi.com/device/RP2?'
                                    'version=E0C9125B0D9B\'"/></head></html>\n')
    return path


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mirror:
    """A local HTTP server serving ``files`` (name -> bytes); ``requests`` lists the paths
    asked for. Use as a context manager; ``url`` is the base URL."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                data = mirror.files.get(self.path.rsplit("/", 1)[-1])
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/resources/firmware"
        # shutdown() waits for the serve loop to look up: every 50 ms, not the default 0.5 s
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
