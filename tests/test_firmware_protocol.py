"""Firmware frame encoder and command parser (dial.protocol, dial.commands).

The same checks (tests/firmware/protocol_checks.py) run under MicroPython, as on the dial,
and under CPython, where the modules also import; the shared vectors in
tests/vectors/frames.json are matched byte for byte in both.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from typing import Any

import pytest
from cobs import cobs
from hypothesis import given
from hypothesis import strategies as st

from mpy import FIRMWARE, TESTS, run_mpy

VECTORS = TESTS / "vectors" / "frames.json"
FW_TESTS = TESTS / "firmware"


def _vectors() -> dict[str, Any]:
    if not VECTORS.exists():  # pragma: no cover - written by make_vectors.py
        pytest.fail(f"{VECTORS} is missing: run tests/vectors/make_vectors.py")
    return json.loads(VECTORS.read_text())


def _load_firmware(*names: str) -> dict[str, types.ModuleType]:
    """Import dial.<name> from firmware/ under CPython without leaving ``dial`` (or the
    firmware path) in sys.modules / sys.path for other tests."""
    saved = {k: v for k, v in sys.modules.items() if k == "dial" or k.startswith("dial.")}
    for k in saved:
        del sys.modules[k]
    pkg = types.ModuleType("dial")
    pkg.__path__ = [str(FIRMWARE / "dial")]
    sys.modules["dial"] = pkg
    try:
        return {n: importlib.import_module("dial." + n) for n in names}
    finally:
        for k in [k for k in sys.modules if k == "dial" or k.startswith("dial.")]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def fw() -> dict[str, types.ModuleType]:
    return _load_firmware("protocol", "commands")


def _load_checks() -> types.ModuleType:
    """tests/firmware/protocol_checks.py (and its refdecode import), loaded once."""
    sys.path.insert(0, str(FW_TESTS))
    try:
        return importlib.import_module("protocol_checks")
    finally:
        sys.path.remove(str(FW_TESTS))


CHECKS = _load_checks()


@pytest.fixture(scope="module")
def checks() -> types.ModuleType:
    return CHECKS


# -- under MicroPython ---------------------------------------------------------------------


def test_all_checks_under_micropython(checks: types.ModuleType) -> None:
    out = run_mpy(
        "import protocol_checks\n"
        "from dial import commands, protocol\n"
        f"print(*protocol_checks.run_all(protocol, commands, {str(VECTORS)!r}))\n"
    )
    v = _vectors()
    assert tuple(int(x) for x in out.split()) == (
        len(v["frames"]) + len(v["cobs"]),
        len(checks._cases()),
        len(checks.COMMAND_RULES) + 2,
        len(v["commands"]),
    )


# -- under CPython -------------------------------------------------------------------------


def test_vectors_cover_every_frame_type(fw: dict[str, types.ModuleType]) -> None:
    types_seen = {f["type"] for f in _vectors()["frames"]}
    assert types_seen == {"HELLO", "SAMPLES", "SYNC", "BUTTON", "STATUS", "ERROR", "DROP", "ACK"}


@pytest.mark.parametrize("frame", _vectors()["frames"], ids=lambda f: f["name"])
def test_frame_vector(
    fw: dict[str, types.ModuleType], checks: types.ModuleType, frame: dict[str, Any]
) -> None:
    p = fw["protocol"]
    body = bytearray(p.MAX_BODY)
    end = checks.pack_fields(p, body, frame["type"], frame["seq"], frame["fields"])
    n = p.seal(body, end)
    assert body[:n].hex() == frame["body_hex"]
    wire = bytearray(p.wire_size(n))
    o = p.finish(body, end, wire)
    assert wire[:o].hex() == frame["wire_hex"]


def test_all_checks_under_cpython(
    fw: dict[str, types.ModuleType], checks: types.ModuleType
) -> None:
    counts = checks.run_all(fw["protocol"], fw["commands"], str(VECTORS))
    v = _vectors()
    assert counts[0] == len(v["frames"]) + len(v["cobs"])
    assert counts[3] == len(v["commands"])


def _decode(enc: bytes) -> bytes:
    """Reference COBS decoder, written here from the algorithm."""
    out = bytearray()
    i = 0
    while i < len(enc):
        code = enc[i]
        assert code
        assert i + code <= len(enc)
        out += enc[i + 1 : i + code]
        i += code
        if code != 0xFF and i < len(enc):
            out.append(0)
    return bytes(out)


@pytest.mark.parametrize(
    ("raw", "enc_len"),
    [
        (b"", 1),
        (b"\x00" * 5, 6),
        (bytes([7] * 253), 254),
        (bytes([7] * 254), 255),  # one full block, no empty block after it
        (bytes([7] * 255), 257),
        (bytes([7] * 254) + b"\x00", 257),
        (bytes([7] * 508), 510),
    ],
)
def test_cobs_block_edges(fw: dict[str, types.ModuleType], raw: bytes, enc_len: int) -> None:
    p = fw["protocol"]
    dst = bytearray(len(raw) + len(raw) // 254 + 1)
    o = p.cobs_encode(raw, len(raw), dst)
    assert o == enc_len
    assert bytes(dst[:o]) == cobs.encode(raw)
    assert _decode(bytes(dst[:o])) == raw


@given(
    st.one_of(
        st.binary(max_size=1100), st.lists(st.sampled_from([0, 1, 255]), max_size=1100).map(bytes)
    )
)
def test_cobs_matches_reference(fw: dict[str, types.ModuleType], data: bytes) -> None:
    p = fw["protocol"]
    dst = bytearray(len(data) + len(data) // 254 + 2)
    o = p.cobs_encode(data, len(data), dst, 1)
    enc = bytes(dst[1:o])
    assert enc == cobs.encode(data)
    assert b"\x00" not in enc
    assert _decode(enc) == data


@pytest.mark.parametrize("case", _vectors()["commands"], ids=lambda c: repr(c["line"]))
def test_command_vector(fw: dict[str, types.ModuleType], case: dict[str, Any]) -> None:
    c = fw["commands"]
    asm = c.LineAssembler()
    results = [r for r in (asm.feed(b) for b in case["line"].encode() + b"\n") if r]
    assert len(results) == 1
    cmd, arg, text = results[0]
    if case["ok"]:
        assert (c.NAMES[cmd], arg, text) == (case["cmd"], case["arg"], None)
    else:
        assert (cmd, arg) == (c.ERROR, case["code"])
        assert 0 < len(text) <= 60


@pytest.mark.parametrize(("line", "want"), CHECKS.COMMAND_RULES, ids=repr)
def test_command_rule(fw: dict[str, types.ModuleType], line: bytes, want: tuple) -> None:
    c = fw["commands"]
    asm = c.LineAssembler()
    results = [r for r in (asm.feed(b) for b in line) if r]
    assert [(r[0], r[1]) for r in results] == [want]


def test_bad_line_is_discarded_up_to_newline(fw: dict[str, types.ModuleType]) -> None:
    c = fw["commands"]
    asm = c.LineAssembler()
    out = [r for r in (asm.feed(b) for b in b"RATE 5\x1b[A00\nRATE 500\n") if r]
    assert [(r[0], r[1]) for r in out] == [(c.ERROR, 3), (c.RATE, 500)]


def test_loader_leaves_sys_modules_as_it_was() -> None:
    before = {k: v for k, v in sys.modules.items() if k == "dial" or k.startswith("dial.")}
    path_before = list(sys.path)
    mods = _load_firmware("protocol")
    after = {k: v for k, v in sys.modules.items() if k == "dial" or k.startswith("dial.")}
    assert after == before
    assert mods["protocol"].VERSION == 1
    assert sys.path == path_before
