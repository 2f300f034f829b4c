"""``ratedial flash`` on a blank ESP32: the esptool command sequence, checked against esptool's
own command-line parser, and the chip detection against a fake serial device.

No ESP32 ran: the commands are parsed by esptool's real parser (the same click group
``esptool`` runs) but not executed against a chip. Chip detection runs esptool's real
connect against fake serial devices: a pseudo-terminal that never answers (a board not in its
bootloader) and a fake ROM bootloader that answers SYNC, READ_REG and GET_SECURITY_INFO
over SLIP like an ESP32 or ESP32-S3 ROM.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import threading
import tty
from pathlib import Path

import pytest

from ratedial.flash import FlashError, esp32

esptool = pytest.importorskip("esptool", reason="esptool is not installed (the esp32 extra)")


def _image(tmp_path: Path, chip_id: int, name: str = "ESP32_GENERIC-v1.28.0.bin") -> Path:
    """The start of a MicroPython ESP32 image: the bootloader's header, extended header with
    the chip id at byte 12, then padding."""
    head = bytes([esp32.ESP_IMAGE_MAGIC, 3, 2, 0x20]) + struct.pack("<I", 0x400805F0)
    ext = bytes([0xEE, 0, 0, 0]) + struct.pack("<H", chip_id) + bytes(10)
    p = tmp_path / name
    p.write_bytes(head + ext + bytes(4096))
    return p


def _parse(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[dict, str, dict]:
    """esptool's own parser: (global options, command name, command parameters)."""
    monkeypatch.setattr(esptool.cli, "_esp", None, raising=False)
    ctx = esptool.cli.make_context("esptool", list(argv))
    rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
    name, cmd, args = esptool.cli.resolve_command(ctx, rest)
    sub = cmd.make_context(name, args, parent=ctx)
    return ctx.params, name, sub.params


@pytest.mark.parametrize(("chip", "chip_id", "offset"), [
    ("esp32", 0, 0x1000), ("esp32s2", 2, 0x1000), ("esp32s3", 9, 0x0), ("esp32c3", 5, 0x0),
    ("esp32c6", 13, 0x0),
])
def test_commands_parse_with_esptools_own_parser(tmp_path, monkeypatch, chip, chip_id, offset):
    image = _image(tmp_path, chip_id)
    assert esp32.image_chip(image) == chip
    erase, write = esp32.esptool_commands(chip, "/dev/ttyUSB0", image)
    top, name, params = _parse(erase, monkeypatch)
    assert (top["chip"], top["port"], name) == (chip, "/dev/ttyUSB0", "erase-flash")
    top, name, params = _parse(write, monkeypatch)
    assert (top["chip"], top["port"], top["baud"], name) == (chip, "/dev/ttyUSB0", 460800,
                                                             "write-flash")
    assert params["compress"] is True
    [(addr, f)] = params["addr_filename"]
    assert (addr, Path(f.name)) == (offset, image)
    f.close()


def test_unknown_chip_and_non_image_are_refused(tmp_path):
    with pytest.raises(FlashError, match="does not know where MicroPython goes on a esp32p4"):
        esp32.esptool_commands("esp32p4", "p", tmp_path / "x.bin")
    uf2 = tmp_path / "RPI_PICO.uf2"
    uf2.write_bytes(b"UF2\n" + bytes(508))
    with pytest.raises(FlashError, match=r"is not an ESP32 firmware image \(no 0xE9 header\)"):
        esp32.image_chip(uf2)


def test_install_sequence_and_wrong_image(tmp_path, monkeypatch):
    ran: list[tuple[str, dict]] = []

    def run(argv):
        _, name, params = _parse(list(argv), monkeypatch)
        for _addr, f in params.get("addr_filename") or ():
            f.close()
        ran.append((name, params))

    image = _image(tmp_path, 9, "ESP32_GENERIC_S3-v1.28.0.bin")
    lines: list[str] = []
    chip = esp32.install_esp32(image, "/dev/ttyACM0", detect=lambda _p: "esp32s3", run=run,
                               say=lines.append)
    assert chip == "esp32s3"
    assert [n for n, _ in ran] == ["erase-flash", "write-flash"]
    assert lines[0] == "/dev/ttyACM0: esptool detected esp32s3"
    assert lines[-1].startswith("MicroPython written at 0x0; esptool reset the board")
    ran.clear()
    with pytest.raises(FlashError, match=r"ESP32_GENERIC_S3-v1.28.0.bin is built for esp32s3, "
                                         r"the board is esp32: nothing was written"):
        esp32.install_esp32(image, "/dev/ttyUSB0", detect=lambda _p: "esp32", run=run)
    assert ran == []  # refused before erasing


def test_chip_key():
    assert [esp32.chip_key(n) for n in ("ESP32", "ESP32-S3", "ESP32-C3")] == [
        "esp32", "esp32s3", "esp32c3"]


@pytest.fixture
def silent_port():
    """A serial device that never answers: an ESP32 not in its bootloader (or no ESP32)."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_no_bootloader_answer_explains_the_boot_button(silent_port):
    with pytest.raises(FlashError) as err:
        esp32.detect_chip(silent_port, attempts=1)
    msg = str(err.value)
    assert msg.startswith(f"no ESP32 bootloader answered on {silent_port} (")
    assert msg.endswith("on a board without auto-reset: hold BOOT (IO0), press and release "
                        "EN/RST, release BOOT, then run ratedial flash again")
    assert "\n" not in msg


def test_cli_esp32_path_is_one_line(tmp_path, silent_port):
    image = _image(tmp_path, 0)
    proc = subprocess.run(
        [sys.executable, "-m", "ratedial", "flash", "--board", "esp32_devkitc", "--port",
         silent_port, "--micropython", str(image)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()  # esptool's own chatter is not shown
    assert line.startswith(f"ratedial: error: no ESP32 bootloader answered on {silent_port}")
    wrong = subprocess.run(
        [sys.executable, "-m", "ratedial", "flash", "--board", "pico", "--port", silent_port,
         "--micropython", str(image)],
        capture_output=True, text=True, timeout=120, check=False)
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == ("ratedial: error: a .bin MicroPython image is for an "
                                    "ESP32: add --board esp32_devkitc or esp32_s3")


class FakeEspRom:
    """The serial side of an ESP32's ROM bootloader, as much of it as chip detection uses:
    SLIP frames; SYNC, READ_REG (the chip-detect magic word at 0x40001000, 0 elsewhere),
    GET_SECURITY_INFO (chip id on the ESP32-S3 and later; the original ESP32's ROM does not
    know the command); every other command succeeds. ``ops`` lists the commands received."""

    MAGIC_REG = 0x40001000

    def __init__(self, *, chip_id: int | None, magic: int = 0) -> None:
        self.chip_id = chip_id
        self.magic = magic
        self.ops: list[int] = []
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def _slip(payload: bytes) -> bytes:
        return b"\xc0" + payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + (
            b"\xc0")

    def _answer(self, op: int, data: bytes) -> bytes:
        self.ops.append(op)
        ok = b"\0\0\0\0"
        if op == 0x08:  # SYNC: the ROM answers eight times, with a non-zero value
            return b"".join(self._slip(struct.pack("<BBHI", 1, op, 4, 0x20120707) + ok)
                            for _ in range(8))
        if op == 0x0A:  # READ_REG
            (addr,) = struct.unpack_from("<I", data)
            value = self.magic if addr == self.MAGIC_REG else 0
            return self._slip(struct.pack("<BBHI", 1, op, 4, value) + ok)
        if op == 0x14:  # GET_SECURITY_INFO
            if self.chip_id is None:
                return self._slip(struct.pack("<BBHI", 1, op, 4, 0) + b"\x01\x05\0\0")
            info = struct.pack("<IB7BII", 0, 0, *([0] * 7), self.chip_id, 0)
            return self._slip(struct.pack("<BBHI", 1, op, len(info) + 4, 0) + info + ok)
        return self._slip(struct.pack("<BBHI", 1, op, 4, 0) + ok)

    def _serve(self) -> None:
        buf = bytearray()
        while not self._stop:
            r, _, _ = select.select([self.master], [], [], 0.1)
            if not r:
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            while True:
                start = buf.find(b"\xc0")
                end = buf.find(b"\xc0", start + 1) if start >= 0 else -1
                if end < 0:
                    break
                frame = bytes(buf[start + 1:end]).replace(b"\xdb\xdc", b"\xc0").replace(
                    b"\xdb\xdd", b"\xdb")
                del buf[:end + 1]
                if len(frame) >= 8 and frame[0] == 0:
                    _, op, size, _chk = struct.unpack_from("<BBHI", frame)
                    os.write(self.master, self._answer(op, frame[8:8 + size]))

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.parametrize(("rom", "chip"), [
    ({"chip_id": 9}, "esp32s3"),  # answers GET_SECURITY_INFO with its chip id
    ({"chip_id": None, "magic": 0x00F01D83}, "esp32"),  # the original ESP32: magic word
])
def test_esptool_detects_the_chip_on_a_fake_rom(rom, chip):
    fake = FakeEspRom(**rom)
    try:
        assert esp32.detect_chip(fake.port, attempts=1) == chip
    finally:
        fake.close()
    assert fake.ops[0] == 0x08 and 0x14 in fake.ops  # synced, then asked for the chip id


def test_install_detects_on_the_fake_rom_then_erases_and_writes(tmp_path, monkeypatch):
    """esptool's real detection on the fake ROM, then the erase and write command lines as
    esptool's parser reads them (not run: the fake ROM has no flash)."""
    fake = FakeEspRom(chip_id=9)
    parsed: list[tuple[dict, str, dict]] = []

    def run(argv):
        top, name, params = _parse(list(argv), monkeypatch)
        for _addr, f in params.get("addr_filename") or ():
            f.close()
        parsed.append((top, name, params))

    try:
        image = _image(tmp_path, 9, "ESP32_GENERIC_S3-v1.28.0.bin")
        assert esp32.install_esp32(image, fake.port, run=run) == "esp32s3"
    finally:
        fake.close()
    assert [(t["chip"], t["port"], n) for t, n, _ in parsed] == [
        ("esp32s3", fake.port, "erase-flash"), ("esp32s3", fake.port, "write-flash")]
    assert [a for a, _ in parsed[1][2]["addr_filename"]] == [0x0]


def test_offsets_and_chip_ids_agree_with_esptools_chip_definitions():
    """MicroPython's ESP32 images begin with the second-stage bootloader, so the offset is
    where each chip's ROM loads it from: esptool's own BOOTLOADER_FLASH_OFFSET."""
    from esptool.targets import CHIP_DEFS

    for chip, offset in esp32.OFFSETS.items():
        assert offset == CHIP_DEFS[chip].BOOTLOADER_FLASH_OFFSET, chip
    for chip_id, chip in esp32.IMAGE_CHIP_ID.items():
        assert chip_id == CHIP_DEFS[chip].IMAGE_CHIP_ID, chip
