"""``ratedial flash`` on a blank Pico, without the emulator: the UF2 and INFO_UF2.TXT parsers,
finding the BOOTSEL drive, the pinned MicroPython download (from a local HTTP server standing
in for micropython.org), and every refusal in one line through the real command line.

The pins are the sha256 of the official files on micropython.org, which cannot be fetched
here. A test that needs a download or cache hit to pass verification stands a file in for the
official one by pinning that file's sha256 in its own process (``dataclasses.replace`` on the
release, in-process through click's CliRunner); the local build of RPI_PICO v1.28.0 in
../shared/rp2emu is refused against the real pin, as a user's download would be if the
official file moved.

The end-to-end run, where the emulated RP2040 boots from the copied UF2, is in
tests/test_flash_rp2emu.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from flash_fakes import (
    INFO_RP2040,
    INFO_RP2350,
    ROOT,
    Mirror,
    bootsel_drive,
    closed_port,
    make_uf2,
)
from ratedial.cli import cli
from ratedial.errors import RatedialError, UsageError
from ratedial.flash import FlashError, bootsel, command, uf2, uf2source

SHARED_UF2 = Path(os.environ.get("RATEDIAL_RP2EMU") or
                  Path(__file__).resolve().parent.parent.parent / "shared" / "rp2emu"
                  ) / "RPI_PICO-v1.28.0.uf2"
PINNED = uf2source.RELEASES["RPI_PICO"]
PINNED2 = uf2source.RELEASES["RPI_PICO2"]
needs_shared_uf2 = pytest.mark.skipif(
    not SHARED_UF2.is_file(), reason=f"no {SHARED_UF2.name} (the local MicroPython build) here")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stand_in(release: uf2source.Release, data: bytes) -> uf2source.Release:
    """``release`` with the sha256 of ``data``: a file standing in for the official one."""
    return dataclasses.replace(release, sha256=_sha256(data))


# An RPI_PICO2 UF2 as the pico-sdk writes it: one RP2350-E10 "absolute" block first, then the
# image's rp2350-arm-s blocks.
PICO2_LIKE = make_uf2([uf2.ABSOLUTE] + [uf2.RP2350_ARM_S] * 7)


# ------------------------------------------------------------------ UF2 and INFO_UF2.TXT


def test_read_uf2_families(tmp_path):
    p = tmp_path / "a.uf2"
    p.write_bytes(make_uf2([uf2.ABSOLUTE, uf2.RP2350_ARM_S, uf2.RP2350_ARM_S]))
    img = uf2.read_uf2(p)
    assert (img.size, img.blocks, img.families) == (1536, 3, {uf2.ABSOLUTE, uf2.RP2350_ARM_S})
    assert img.describe() == "a.uf2 (2 kB, RP2350 (Arm), absolute)"


def test_the_pinned_table():
    """The pins, spelled out so that changing one is deliberate: the official v1.28.0 files
    and their sha256 as github.com/tinyrange/renvo_emu firmware/micropython-v1.28.0.toml
    (commit 4ccaa53) lists them; re-check with sha256sum as hardware/README.md says."""
    pinned = {name: (r.board, r.version, r.chip, r.url(uf2source.OFFICIAL_BASE), r.sha256)
              for name, r in uf2source.RELEASES.items()}
    assert pinned == {
        "RPI_PICO": (
            "RPI_PICO", "1.28.0", "RP2040",
            "https://micropython.org/resources/firmware/RPI_PICO-20260406-v1.28.0.uf2",
            "00aedb8431ebea83b470ef909509f16432c5b1b43e8f6eaf015f6f9560bc8152"),
        "RPI_PICO2": (
            "RPI_PICO2", "1.28.0", "RP2350",
            "https://micropython.org/resources/firmware/RPI_PICO2-20260406-v1.28.0.uf2",
            "e65ad62ae886a4f56da8ef2c07904fe504b92de69e5ae6489acf881bcf30b6ae"),
    }
    assert uf2source.OFFICIAL_BASE == "https://micropython.org/resources/firmware"
    assert uf2source.BOARD_RELEASE == {"pico": "RPI_PICO", "pico_pot": "RPI_PICO",
                                       "pico2": "RPI_PICO2"}
    # each board's release is for the chip the board config is for
    for board, name in uf2source.BOARD_RELEASE.items():
        assert uf2source.RELEASES[name].chip == command.BOARD_CHIP[board], board
    # configs with no pinned release: the MicroPython board to download by hand
    assert uf2source.MICROPYTHON_BOARD == {"pico_w": "RPI_PICO_W"}
    # the build guide lists the same pins, with where they come from
    guide = (ROOT / "hardware" / "README.md").read_text(encoding="utf-8")
    for r in uf2source.RELEASES.values():
        assert f"| `{r.file}` | `{r.sha256}` |" in guide, r.file
    assert "4ccaa5318052114935d51aafcce16026912edb03" in guide


@needs_shared_uf2
def test_the_local_build_is_an_rp2040_uf2_but_not_the_official_file():
    """The UF2 the emulated-Pico tests boot: an RP2040 image of the same version, built
    locally, so its sha256 is not the pin (tests stand it in for the official file)."""
    img = uf2.read_uf2(SHARED_UF2)
    assert img.families == {uf2.RP2040}
    assert img.blocks == SHARED_UF2.stat().st_size // 512
    assert _sha256(SHARED_UF2.read_bytes()) != PINNED.sha256


def test_the_official_rp2350_families_boot_on_an_rp2350_only(tmp_path):
    p = tmp_path / PINNED2.file
    p.write_bytes(PICO2_LIKE)
    image = uf2.read_uf2(p)
    assert image.families == {uf2.ABSOLUTE, uf2.RP2350_ARM_S}
    uf2.check_family(image, "RP2350", tmp_path)  # boots: no error
    with pytest.raises(FlashError, match="is not for the RP2040 behind"):
        uf2.check_family(image, "RP2040", tmp_path)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "is not a multiple of 512"),
    (b"x" * 700, "is not a multiple of 512"),
    (b"x" * 1024, "bad magic in block 0"),
])
def test_read_uf2_refuses_other_files(tmp_path, data, message):
    p = tmp_path / "firmware.bin"
    p.write_bytes(data)
    with pytest.raises(FlashError, match=message):
        uf2.read_uf2(p)


def test_parse_info_and_chip():
    assert uf2.parse_info(INFO_RP2040) == {"Model": "Raspberry Pi RP2", "Board-ID": "RPI-RP2"}
    assert uf2.chip_of_board_id("RPI-RP2") == "RP2040"
    assert uf2.chip_of_board_id(uf2.parse_info(INFO_RP2350)["Board-ID"]) == "RP2350"
    assert uf2.chip_of_board_id("SAMD21") is None


def test_family_check(tmp_path):
    p = tmp_path / "x.uf2"
    p.write_bytes(make_uf2([uf2.ABSOLUTE, uf2.RP2350_RISCV]))
    uf2.check_family(uf2.read_uf2(p), "RP2350", tmp_path)  # boots: no error
    with pytest.raises(FlashError, match=r"is not for the RP2040 behind .*nothing was copied"):
        uf2.check_family(uf2.read_uf2(p), "RP2040", tmp_path)


# ------------------------------------------------------------------ finding the drive


def test_candidate_drives_per_os():
    linux = bootsel.candidate_drives("linux", {"USER": "ana"})
    assert Path("/media/ana/RPI-RP2") in linux and Path("/run/media/ana/RP2350") in linux
    assert bootsel.candidate_drives("darwin", {}) == [Path("/Volumes/RPI-RP2"),
                                                      Path("/Volumes/RP2350")]
    win = bootsel.candidate_drives("win32", {})
    assert win[0] == Path("D:\\") and len(win) == 23


def test_mount_table_with_escaped_spaces(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n"
                      "/dev/sdb1 /mnt/my\\040stuff/RPI-RP2 vfat rw,nosuid 0 0\n")
    assert bootsel._mount_points(mounts)[1] == Path("/mnt/my stuff/RPI-RP2")


def test_find_drive(tmp_path):
    a = bootsel_drive(tmp_path / "a" / "RPI-RP2")
    (tmp_path / "b").mkdir()
    assert bootsel.find_drive([tmp_path / "b", a, tmp_path / "nowhere"]) == a
    with pytest.raises(FlashError, match=r"no Pico in BOOTSEL mode found .*--drive"):
        bootsel.find_drive([tmp_path / "b"])
    c = bootsel_drive(tmp_path / "c" / "RP2350", INFO_RP2350)
    with pytest.raises(FlashError, match=r"several BOOTSEL drives: .*--drive"):
        bootsel.find_drive([a, c])


def test_open_drive(tmp_path):
    d = bootsel.open_drive(bootsel_drive(tmp_path / "RP2350", INFO_RP2350))
    assert (d.chip, d.board_id, d.model) == ("RP2350", "RP2350", "Raspberry Pi RP2350")
    (tmp_path / "usbstick").mkdir()
    with pytest.raises(bootsel.NotBootloader, match=r"no INFO_UF2.TXT\): nothing was copied"):
        bootsel.open_drive(tmp_path / "usbstick")
    other = tmp_path / "samd"
    other.mkdir()
    (other / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.6\nBoard-ID: SAMD21G18A-Feather\n")
    with pytest.raises(bootsel.NotBootloader, match="Board-ID 'SAMD21G18A-Feather'"):
        bootsel.open_drive(other)


# ------------------------------------------------------------------ copying: full, read-only


def _image(tmp_path, families=(uf2.RP2040,) * 4):
    p = tmp_path / "mp.uf2"
    p.write_bytes(make_uf2(list(families)))
    return uf2.read_uf2(p)


def test_copy_refuses_a_full_or_read_only_drive(tmp_path):
    drive = bootsel.open_drive(bootsel_drive(tmp_path / "RPI-RP2"))
    image = _image(tmp_path)
    with pytest.raises(FlashError, match=r"is full \(1 kB free, mp.uf2 needs 2 kB\)"):
        bootsel.copy_uf2(image, drive, space=lambda _p: (1024, True))
    with pytest.raises(FlashError, match="is read-only: nothing was copied"):
        bootsel.copy_uf2(image, drive, space=lambda _p: (10**8, False))
    assert not (drive.path / "mp.uf2").exists()
    # the real check on this (writable) directory: copies byte for byte
    dest = bootsel.copy_uf2(image, drive)
    assert dest.read_bytes() == image.path.read_bytes()


def test_wait_for_port_matches_usb_id_and_ignores_ports_already_there():
    ports = [SimpleNamespace(device="/dev/ttyACM0", vid=0x2E8A, pid=0x0005),
             SimpleNamespace(device="/dev/ttyACM1", vid=0x2E8A, pid=0x000A),  # a C SDK app
             SimpleNamespace(device="/dev/ttyUSB0", vid=0x10C4, pid=0xEA60)]
    calls = iter([ports[1:], ports])
    assert bootsel.wait_for_port(before=[], timeout=5, comports=lambda: next(calls),
                                 poll=0) == "/dev/ttyACM0"
    with pytest.raises(FlashError, match=r"did not come back as a MicroPython serial port "
                                         r"\(USB 2e8a:0005\) within 1e-06 s"):
        bootsel.wait_for_port(before=["/dev/ttyACM0"], timeout=1e-6, comports=lambda: ports)


# ------------------------------------------------------------------ the pinned download


def test_download_once_then_cached(tmp_path):
    data = make_uf2([uf2.RP2040] * 64)
    release = _stand_in(PINNED, data)
    with Mirror({PINNED.file: data}) as mirror:
        lines: list[str] = []
        got = uf2source.fetch_release(release, cache=tmp_path, base=mirror.url,
                                      say=lines.append)
        assert got == tmp_path / "micropython" / PINNED.file
        assert got.read_bytes() == data
        assert mirror.requests == [f"/resources/firmware/{PINNED.file}"]
        assert lines == [f"downloading {mirror.url}/{PINNED.file}",
                         f"MicroPython 1.28.0 for RPI_PICO: {got} (sha256 verified)"]
        again = uf2source.fetch_release(release, cache=tmp_path, base=mirror.url,
                                        say=lines.append)
        assert again == got and len(mirror.requests) == 1  # no second request
        assert lines[-1] == f"MicroPython 1.28.0 for RPI_PICO: {got} (cached)"
    assert not list((tmp_path / "micropython").glob("*.part"))


def test_a_mirror_that_is_a_folder_is_read_and_a_bad_one_is_one_line(tmp_path):
    """An audit (2026-12-05): RATEDIAL_MICROPYTHON_MIRROR=/srv/mirror (a local mirror is most
    often a folder) and =http://[::1 ended flash with a ValueError traceback."""
    data = make_uf2([uf2.RP2040] * 8)
    folder = tmp_path / "mirror dir"
    folder.mkdir()
    (folder / PINNED.file).write_bytes(data)
    got = uf2source.fetch_release(_stand_in(PINNED, data), cache=tmp_path / "c", base=str(folder))
    assert got.read_bytes() == data and (folder / PINNED.file).exists()  # theirs is kept
    for bad in ("http://[::1", str(tmp_path / "nothing here")):
        with pytest.raises(FlashError, match=r"^cannot download .*or pass --micropython FILE$"):
            uf2source.fetch_release(PINNED, cache=tmp_path / "c2", base=bad)


def test_wrong_sha_is_never_used(tmp_path):
    bad = make_uf2([uf2.RP2040] * 3)
    with Mirror({PINNED.file: bad}) as mirror, pytest.raises(FlashError) as err:
        uf2source.fetch_release(PINNED, cache=tmp_path, base=mirror.url)
    assert str(err.value) == (
        f"{mirror.url}/{PINNED.file} has sha256 {_sha256(bad)[:16]}..., not the pinned "
        "00aedb8431ebea83...: not used (deleted); check $RATEDIAL_MICROPYTHON_MIRROR, or "
        "pass --micropython FILE")
    assert list((tmp_path / "micropython").iterdir()) == []


def test_a_mismatch_from_the_official_url_points_at_the_pin(tmp_path, monkeypatch):
    """From micropython.org itself (here: urlopen answering for it), a file that is not the
    pinned one is deleted and the line says to re-check the pin, not the mirror."""
    bad = make_uf2([uf2.RP2040] * 2)
    asked: list[str] = []

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        asked.append(url)
        return io.BytesIO(bad)

    monkeypatch.delenv(uf2source.MIRROR_ENV, raising=False)
    monkeypatch.setattr(uf2source.urllib.request, "urlopen", urlopen)
    with pytest.raises(FlashError) as err:
        uf2source.fetch_release(PINNED, cache=tmp_path)
    assert asked == [f"https://micropython.org/resources/firmware/{PINNED.file}"]
    assert str(err.value) == (
        f"{asked[0]} has sha256 {_sha256(bad)[:16]}..., not the pinned 00aedb8431ebea83...: "
        "not used (deleted); re-check the pin as hardware/README.md says, or pass "
        "--micropython FILE")
    assert list((tmp_path / "micropython").iterdir()) == []


def test_a_corrupt_cached_file_is_fetched_again(tmp_path):
    (tmp_path / "micropython").mkdir()
    (tmp_path / "micropython" / PINNED.file).write_bytes(b"truncated")
    with Mirror({}) as mirror, pytest.raises(FlashError, match=r"HTTP Error 404|Not Found"):
        uf2source.fetch_release(PINNED, cache=tmp_path, base=mirror.url)
    assert mirror.requests and not (tmp_path / "micropython" / PINNED.file).exists()


def test_offline_names_the_file_and_where_to_put_it(tmp_path):
    base = f"http://127.0.0.1:{closed_port()}/fw"
    with pytest.raises(FlashError) as err:
        uf2source.fetch_release(PINNED, cache=tmp_path, base=base)
    dest = tmp_path / "micropython" / PINNED.file
    assert str(err.value) == (
        f"cannot download {PINNED.file} ([Errno 111] Connection refused): fetch "
        f"{base}/{PINNED.file} and put it at {dest}, or pass --micropython FILE")


def test_release_and_cache_dir():
    assert uf2source.release_for("pico_pot") is PINNED
    assert uf2source.release_for("pico2") is PINNED2
    with pytest.raises(UsageError, match=r"no MicroPython release is pinned for --board "
                                         r"pico_w: download the RPI_PICO_W \.uf2"):
        uf2source.release_for("pico_w")
    assert uf2source.user_cache_dir("linux", {"HOME": "/h"}) == Path("/h/.cache/ratedial")
    assert uf2source.user_cache_dir("linux", {"HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path(
        "/x/ratedial")
    assert uf2source.user_cache_dir("darwin", {"HOME": "/h"}) == Path(
        "/h/Library/Caches/ratedial")
    assert uf2source.user_cache_dir("win32", {"HOME": "/h", "LOCALAPPDATA": "C:/L"}) == Path(
        "C:/L/ratedial/Cache")
    assert uf2source.user_cache_dir("linux", {"RATEDIAL_CACHE_DIR": "/c"}) == Path("/c")


# ------------------------------------------------------------------ the command line


def _flash(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", "flash", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "COLUMNS": "200", **env})


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ratedial: error: ")
    return lines[0]


@pytest.fixture
def env(tmp_path):
    return {"RATEDIAL_CACHE_DIR": str(tmp_path / "cache"),
            "RATEDIAL_MICROPYTHON_MIRROR": f"http://127.0.0.1:{closed_port()}/fw"}


def test_cli_refuses_a_drive_that_is_not_a_bootloader(tmp_path, env):
    stick = tmp_path / "USBSTICK"
    stick.mkdir()
    line = _one_line_error(_flash("--board", "pico", "--drive", str(stick), env=env))
    assert line == (f"ratedial: error: {stick} is not a Pico bootloader drive (no "
                    "INFO_UF2.TXT): nothing was copied")
    assert list(stick.iterdir()) == []


def test_cli_refuses_a_uf2_for_another_family(tmp_path, env):
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    pico2 = tmp_path / "RPI_PICO2-v1.28.0.uf2"
    pico2.write_bytes(make_uf2([uf2.ABSOLUTE, uf2.RP2350_ARM_S]))
    line = _one_line_error(_flash("--board", "pico", "--micropython", str(pico2),
                                  env={**env, "RATEDIAL_BOOTSEL_DRIVE": str(drive)}))
    assert line.endswith(f"RPI_PICO2-v1.28.0.uf2 (1 kB, RP2350 (Arm), absolute) is not for the "
                         f"RP2040 behind {drive}: nothing was copied (use the MicroPython .uf2 "
                         "built for this board)")
    assert sorted(p.name for p in drive.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]


def test_cli_refuses_a_board_config_for_another_chip(tmp_path, env):
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    line = _one_line_error(_flash("--board", "esp32_s3", "--drive", str(drive), env=env))
    assert "is an RP2040 in BOOTSEL mode but --board esp32_s3 is for esp32: use --board pico" in (
        line)
    # with the Pico's own .uf2 too (an audit, 2026-12-05: "no MicroPython board found")
    image = tmp_path / "rp2040.uf2"
    image.write_bytes(make_uf2([uf2.RP2040] * 2))
    line = _one_line_error(_flash("--board", "esp32_s3", "--drive", str(drive),
                                  "--micropython", str(image), env=env))
    assert "is an RP2040 in BOOTSEL mode but --board esp32_s3 is for esp32: use --board pico" in (
        line)
    line = _one_line_error(_flash("--board", "esp32_s3", "--micropython", str(image), env=env))
    assert line.endswith("rp2040.uf2 is a .uf2 image, for a Pico (RP2040, RP2350), not for "
                         "--board esp32_s3: an ESP32 takes MicroPython's .bin "
                         "(micropython.org/download)")
    pico2 = bootsel_drive(tmp_path / "RP2350", INFO_RP2350)
    line = _one_line_error(_flash("--board", "pico", "--drive", str(pico2), env=env))
    assert line.endswith("is an RP2350 in BOOTSEL mode but --board pico is for RP2040: use "
                         "--board pico2")


def test_cli_micropython_file_copied_then_board_does_not_come_back(tmp_path, env):
    """--micropython FILE: copied byte for byte; no serial port with MicroPython's USB id
    appears (nothing here restarts a board), so the wait ends in one line."""
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    mine = tmp_path / "my-micropython.uf2"
    mine.write_bytes(make_uf2([uf2.RP2040] * 8))
    proc = _flash("--board", "pico", "--drive", str(drive), "--micropython", str(mine),
                  "--wait", "1", env=env)
    line = _one_line_error(proc)
    assert line == ("ratedial: error: the board did not come back as a MicroPython serial port "
                    "(USB 2e8a:0005) within 1 s of the copy: unplug it and plug it in again "
                    "(without BOOTSEL), then run ratedial flash --port PORT")
    assert (drive / mine.name).read_bytes() == mine.read_bytes()
    assert "Board-ID RPI-RP2): copying my-micropython.uf2 (4 kB, RP2040)" in proc.stdout


def test_cli_offline_says_which_file_and_where(tmp_path, env):
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    line = _one_line_error(_flash("--board", "pico", "--drive", str(drive), env=env))
    dest = tmp_path / "cache" / "micropython" / PINNED.file
    assert line == (f"ratedial: error: cannot download {PINNED.file} ([Errno 111] Connection "
                    f"refused): fetch {env['RATEDIAL_MICROPYTHON_MIRROR']}/{PINNED.file} and "
                    f"put it at {dest}, or pass --micropython FILE")
    assert sorted(p.name for p in drive.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]


def _flash_in_process(monkeypatch, env: dict[str, str], *args: str) -> tuple[str, str]:
    """``ratedial flash ARGS`` through click's CliRunner in this process (so that a test can
    pin a stand-in's sha256), no serial port ever appearing; stdout and the error line the
    CLI would print (RatedialError -> "ratedial: error: ...", see ratedial.cli.main)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(command, "comports", list)
    result = CliRunner().invoke(cli, ["flash", *args])
    assert isinstance(result.exception, RatedialError), result.output
    return result.stdout, f"ratedial: error: {result.exception}"


@needs_shared_uf2
def test_cli_cached_release_needs_no_network(tmp_path, env, monkeypatch):
    """The file put where the offline message said: used without any network (the mirror
    is a closed port), copied to the drive byte for byte. The local build stands in for the
    official file (its sha256 pinned in this process)."""
    monkeypatch.setitem(uf2source.RELEASES, "RPI_PICO",
                        _stand_in(PINNED, SHARED_UF2.read_bytes()))
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    dest = tmp_path / "cache" / "micropython" / PINNED.file
    dest.parent.mkdir(parents=True)
    shutil.copyfile(SHARED_UF2, dest)
    out, line = _flash_in_process(monkeypatch, env, "--board", "pico", "--drive", str(drive),
                                  "--wait", "1")
    assert "did not come back" in line
    assert out.splitlines()[0] == f"MicroPython 1.28.0 for RPI_PICO: {dest} (cached)"
    assert (drive / PINNED.file).read_bytes() == SHARED_UF2.read_bytes()


@needs_shared_uf2
def test_cli_the_local_build_is_refused_against_the_real_pin(tmp_path, env):
    """What a user sees if the official file's sha256 moved: the mirror serves the local
    build (same name, another sha256); it is deleted, nothing reaches the drive, one line."""
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    data = SHARED_UF2.read_bytes()
    with Mirror({PINNED.file: data}) as mirror:
        proc = _flash("--board", "pico", "--drive", str(drive),
                      env={**env, "RATEDIAL_MICROPYTHON_MIRROR": mirror.url})
        assert mirror.requests == [f"/resources/firmware/{PINNED.file}"]
    line = _one_line_error(proc)
    assert proc.returncode == 1
    assert line == (f"ratedial: error: {mirror.url}/{PINNED.file} has sha256 "
                    f"{_sha256(data)[:16]}..., not the pinned 00aedb8431ebea83...: not used "
                    "(deleted); check $RATEDIAL_MICROPYTHON_MIRROR, or pass --micropython FILE")
    assert list((tmp_path / "cache" / "micropython").iterdir()) == []  # no file, no .part
    assert sorted(p.name for p in drive.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]


@needs_shared_uf2
def test_cli_a_cached_local_build_is_deleted_not_used(tmp_path, env):
    """The local build put at the cache path: not the pinned file, so deleted and fetched
    again (offline here: the offline line)."""
    drive = bootsel_drive(tmp_path / "RPI-RP2")
    dest = tmp_path / "cache" / "micropython" / PINNED.file
    dest.parent.mkdir(parents=True)
    shutil.copyfile(SHARED_UF2, dest)
    proc = _flash("--board", "pico", "--drive", str(drive), env=env)
    assert "ratedial: error: cannot download RPI_PICO-20260406-v1.28.0.uf2 (" in (
        _one_line_error(proc))
    assert proc.stdout.splitlines()[0] == (
        f"{dest}: sha256 does not match the pinned one: downloading it again")
    assert list(dest.parent.iterdir()) == []
    assert sorted(p.name for p in drive.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]


def test_cli_without_board_or_drive_mentions_bootsel(tmp_path, env):
    proc = _flash("--micropython", str(tmp_path / "none.uf2"), env=env)
    assert proc.returncode == 2 and "does not exist" in proc.stderr  # click's own check
    mine = tmp_path / "mp.uf2"
    mine.write_bytes(make_uf2([uf2.RP2040]))
    # no --drive, and (in a test environment) no RPI-RP2 drive mounted anywhere
    if any((p / "INFO_UF2.TXT").is_file() for p in bootsel.candidate_drives()):
        pytest.skip("a real BOOTSEL drive is mounted on this machine")
    line = _one_line_error(_flash("--board", "pico", "--micropython", str(mine), env=env))
    assert "is copied onto a Pico in BOOTSEL mode, and none was found" in line


def test_help_documents_the_blank_board_options():
    proc = _flash("--help", env={})
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for needle in ("--drive DIR", "RATEDIAL_BOOTSEL_DRIVE", "--micropython FILE",
                   "RATEDIAL_MICROPYTHON_MIRROR", "RATEDIAL_CACHE_DIR", "--wait",
                   "2e8a:0005", "hold BOOTSEL, plug it in, run ratedial flash --board pico",
                   "sha256", "1.28.0"):
        assert needle in text, needle


def test_cli_rp2350_defaults_to_pico2_and_its_pinned_release(tmp_path, env):
    drive = bootsel_drive(tmp_path / "RP2350", INFO_RP2350)
    proc = _flash("--drive", str(drive), env=env)
    dest = tmp_path / "cache" / "micropython" / PINNED2.file
    assert _one_line_error(proc) == (
        f"ratedial: error: cannot download {PINNED2.file} ([Errno 111] Connection refused): "
        f"fetch {env['RATEDIAL_MICROPYTHON_MIRROR']}/{PINNED2.file} and put it at {dest}, "
        "or pass --micropython FILE")
    assert proc.stdout.splitlines()[0] == (
        f"downloading {env['RATEDIAL_MICROPYTHON_MIRROR']}/{PINNED2.file}")


def test_cli_pico2_downloads_verifies_and_copies_its_release(tmp_path, env, monkeypatch):
    """An RP2350 in BOOTSEL mode, no --board: pico2, whose pinned RPI_PICO2 release (a
    stand-in with the official file's block families, its sha256 pinned in this process) is
    downloaded, verified, passes the RP2350 family check and lands on the drive byte for
    byte; no board comes back here, so the wait ends in one line."""
    monkeypatch.setitem(uf2source.RELEASES, "RPI_PICO2", _stand_in(PINNED2, PICO2_LIKE))
    drive = bootsel_drive(tmp_path / "RP2350", INFO_RP2350)
    with Mirror({PINNED2.file: PICO2_LIKE}) as mirror:
        out, line = _flash_in_process(
            monkeypatch, {**env, "RATEDIAL_MICROPYTHON_MIRROR": mirror.url},
            "--drive", str(drive), "--wait", "1")
        assert mirror.requests == [f"/resources/firmware/{PINNED2.file}"]
    cached = tmp_path / "cache" / "micropython" / PINNED2.file
    assert out.splitlines() == [
        f"downloading {mirror.url}/{PINNED2.file}",
        f"MicroPython 1.28.0 for RPI_PICO2: {cached} (sha256 verified)",
        f"{drive}: Raspberry Pi RP2350 (RP2350, Board-ID RP2350): copying {PINNED2.file} "
        "(4 kB, RP2350 (Arm), absolute)",
        "copied; waiting up to 1 s for the board to restart as MicroPython"]
    assert line.startswith("ratedial: error: the board did not come back as a MicroPython "
                           "serial port (USB 2e8a:0005) within 1 s of the copy")
    assert (drive / PINNED2.file).read_bytes() == PICO2_LIKE == cached.read_bytes()


def test_a_drive_next_to_a_micropython_board_is_a_choice_for_the_user(tmp_path, monkeypatch):
    from ratedial.flash import command

    drive = bootsel_drive(tmp_path / "media" / "ana" / "RPI-RP2")
    monkeypatch.setattr(bootsel, "candidate_drives", lambda: [tmp_path / "nope", drive])
    monkeypatch.setattr(command, "comports", lambda: [SimpleNamespace(device="/dev/ttyS0",
                                                                      vid=None, pid=None)])
    assert command._bootsel_drive(None, None) == drive
    assert command._bootsel_drive(None, "/dev/ttyACM0") is None  # --port: today's flash
    assert command._bootsel_drive(tmp_path / "x", None) == tmp_path / "x"  # --drive wins
    monkeypatch.setattr(command, "comports", lambda: [SimpleNamespace(device="/dev/ttyACM0",
                                                                      vid=0x2E8A, pid=5)])
    # a dial flashed before is plugged in too: which one to flash is the user's to say
    with pytest.raises(UsageError, match=r"both a Pico in BOOTSEL mode \(.*RPI-RP2\) and a "
                       r"serial port that may be a MicroPython board \(/dev/ttyACM0\) .* "
                       r"--drive or --port"):
        command._bootsel_drive(None, None)
    assert command._bootsel_drive(None, "/dev/ttyACM0") is None
    assert command._bootsel_drive(drive, None) == drive
    # no drive: the board that runs MicroPython is flashed, as before
    monkeypatch.setattr(bootsel, "candidate_drives", lambda: [tmp_path / "nope"])
    assert command._bootsel_drive(None, None) is None


def test_a_refused_copy_never_says_copying(tmp_path):
    """Found by a black-box test: a UF2 for the wrong chip, or a full drive, printed
    "copying ..." and then "nothing was copied"."""
    drive = bootsel.open_drive(bootsel_drive(tmp_path / "RPI-RP2"))
    said: list[str] = []
    for image, space in ((_image(tmp_path, (uf2.RP2350_ARM_S,) * 4), lambda _p: (10**8, True)),
                         (_image(tmp_path), lambda _p: (1024, True))):
        with pytest.raises(FlashError, match="nothing was copied"):
            bootsel.install_micropython(image, drive, timeout=1, comports=list,
                                        space=space, say=said.append)
    assert not any("copying" in line for line in said), said


def test_a_misspelt_board_is_named_before_any_board_is_looked_for():
    """Found by a black-box test: --board foo with no board plugged in said "no MicroPython
    board found"; --board pico-w (as devices prints it) was unknown; the list offered the
    unix port's 'virtual'."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "ratedial", "flash", "--board", "foo"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and "unknown board 'foo'" in res.stderr
    assert "virtual" not in res.stderr and "pico_w" in res.stderr
    from ratedial.flash.board import checked_board_name, locate_firmware

    assert checked_board_name("pico-w", locate_firmware()) == "pico_w"
