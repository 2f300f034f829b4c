"""A fake of MicroPython's ``rp2.asm_pio`` that turns a PIO DSL function into pioasm text.

MicroPython's asm_pio (ports/rp2/modules/rp2.py) runs the decorated function twice with the
function's module globals swapped for the DSL: first to collect labels, then to emit. This
fake does the same, with the same operand numbers (so ``invert(y)`` works and ``~y`` fails,
as on the board), but writes pioasm text instead of machine words. The text is assembled by
``adafruit_pioasm``, an assembler independent of MicroPython's, and run on ``pioemu``.

Only what a quadrature counter needs is covered: no side-set, wait or irq.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import adafruit_pioasm

# rp2.PIO constants as MicroPython defines them.
SHIFT_LEFT = 0
SHIFT_RIGHT = 1

# Operand numbers of MicroPython's _pio_funcs.
_CONSTANTS: dict[str, Any] = {
    "gpio": 0,
    "pins": 0,
    "x": 1,
    "y": 2,
    "null": 3,
    "pindirs": 4,
    "pc": 5,
    "status": 5,
    "isr": 6,
    "osr": 7,
    "exec": 8,
    "invert": lambda v: v | 0x08,
    "reverse": lambda v: v | 0x10,
    "not_x": 1,
    "x_dec": 2,
    "not_y": 3,
    "y_dec": 4,
    "x_not_y": 5,
    "pin": 6,
    "not_osre": 7,
    "noblock": 0x01,
    "block": 0x21,
    "iffull": 0x40,
    "ifempty": 0x40,
    "clear": 0x40,
    "rel": lambda v: v | 0x10,
}

_JMP_CONDITIONS = {0: "", 1: "!x", 2: "x--", 3: "!y", 4: "y--", 5: "x!=y", 6: "pin", 7: "!osre"}
_IN_SOURCES = {0: "pins", 1: "x", 2: "y", 3: "null", 6: "isr", 7: "osr"}
_OUT_DESTS = {0: "pins", 1: "x", 2: "y", 3: "null", 4: "pindirs", 5: "pc", 6: "isr", 8: "exec"}
_MOV_DESTS = {0: "pins", 1: "x", 2: "y", 5: "pc", 6: "isr", 7: "osr", 8: "exec"}
_MOV_SOURCES = {0: "pins", 1: "x", 2: "y", 3: "null", 5: "status", 6: "isr", 7: "osr"}
_SET_DESTS = {0: "pins", 1: "x", 2: "y", 4: "pindirs"}

# Keyword options of MicroPython's asm_pio, with its defaults.
_OPTIONS: dict[str, Any] = {
    "out_init": None,
    "set_init": None,
    "sideset_init": None,
    "side_pindir": False,
    "in_shiftdir": SHIFT_LEFT,
    "out_shiftdir": SHIFT_LEFT,
    "autopush": False,
    "autopull": False,
    "push_thresh": 32,
    "pull_thresh": 32,
    "fifo_join": 0,
}


class PIOASMError(Exception):
    """What MicroPython's asm_pio raises for a malformed program."""


@dataclass(frozen=True)
class PioProgram:
    """What the fake asm_pio returns: pioasm text plus asm_pio's options."""

    text: str
    options: dict[str, Any] = field(default_factory=dict)

    def assemble(self) -> adafruit_pioasm.Program:
        return adafruit_pioasm.Program(self.text)

    @property
    def shift_isr_right(self) -> bool:
        return bool(self.options["in_shiftdir"] == SHIFT_RIGHT)

    @property
    def shift_osr_right(self) -> bool:
        return bool(self.options["out_shiftdir"] == SHIFT_RIGHT)


def _name(table: dict[int, str], value: Any, what: str) -> str:
    if not isinstance(value, int) or value not in table:
        raise PIOASMError(f"invalid {what} {value!r}")
    return table[value]


class _Emitter:
    def __init__(self) -> None:
        self.pass_ = 0
        self.lines: list[str] = []
        self.labels: set[str] = set()

    def start_pass(self, pass_: int) -> None:
        self.pass_ = pass_
        self.lines = []

    def _emit(self, text: str) -> _Emitter:
        self.lines.append("    " + text)
        return self

    def __getitem__(self, delay: int) -> _Emitter:
        if not 0 <= delay <= 31:
            raise PIOASMError("delay too large")
        self.lines[-1] += f" [{delay}]"
        return self

    def side(self, _value: int) -> _Emitter:
        raise NotImplementedError("side-set is not supported by this fake")

    def label(self, name: str) -> None:
        if self.pass_ == 0:
            if name in self.labels:
                raise PIOASMError(f"duplicate label {name}")
            self.labels.add(name)
        self.lines.append(f"{name}:")

    def _target(self, name: Any) -> str:
        if self.pass_ > 0 and name not in self.labels:
            raise PIOASMError(f"unknown label {name}")
        return str(name)

    def wrap_target(self) -> None:
        self.lines.append(".wrap_target")

    def wrap(self) -> None:
        self.lines.append(".wrap")

    def nop(self) -> _Emitter:
        return self._emit("nop")

    def jmp(self, cond: Any, label: Any = None) -> _Emitter:
        if label is None:
            label, cond = cond, 0
        c = _name(_JMP_CONDITIONS, cond, "jmp condition")
        return self._emit(f"jmp {c + ', ' if c else ''}{self._target(label)}")

    def in_(self, src: int, count: int) -> _Emitter:
        if not 0 < count <= 32:
            raise PIOASMError(f"invalid bit count {count}")
        return self._emit(f"in {_name(_IN_SOURCES, src, 'in source')}, {count}")

    def out(self, dest: int, count: int) -> _Emitter:
        if not 0 < count <= 32:
            raise PIOASMError(f"invalid bit count {count}")
        return self._emit(f"out {_name(_OUT_DESTS, dest, 'out destination')}, {count}")

    def _push_pull(self, op: str, cond: str, value: int, value2: int) -> _Emitter:
        value |= value2
        if not value & 1:
            value |= 0x20  # block by default, as MicroPython does
        parts = [op]
        if value & 0x40:
            parts.append(cond)
        parts.append("block" if value & 0x20 else "noblock")
        return self._emit(" ".join(parts))

    def push(self, value: int = 0, value2: int = 0) -> _Emitter:
        return self._push_pull("push", "iffull", value, value2)

    def pull(self, value: int = 0, value2: int = 0) -> _Emitter:
        return self._push_pull("pull", "ifempty", value, value2)

    def mov(self, dest: int, src: int) -> _Emitter:
        d = _name(_MOV_DESTS, dest, "mov destination")
        if not isinstance(src, int) or not 0 <= src < 0x20:
            raise PIOASMError(f"invalid mov source {src!r} (write invert(y), not ~y)")
        op = {0: "", 0x08: "~", 0x10: "::"}.get(src & 0x18)
        if op is None:
            raise PIOASMError(f"invalid mov operation {src!r}")
        return self._emit(f"mov {d}, {op}{_name(_MOV_SOURCES, src & 7, 'mov source')}")

    def set(self, dest: int, data: int) -> _Emitter:
        return self._emit(f"set {_name(_SET_DESTS, dest, 'set destination')}, {data}")

    def text(self, name: str) -> str:
        return "\n".join([f".program {name}", *self.lines]) + "\n"


def asm_pio(**options: Any) -> Callable[[Callable[[], None]], PioProgram]:
    """Fake ``rp2.asm_pio(**options)``: decorate a DSL function, get a PioProgram."""
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"unexpected keyword argument {sorted(unknown)[0]!r}")
    merged = {**_OPTIONS, **options}

    def dec(f: Callable[[], None]) -> PioProgram:
        emit = _Emitter()
        dsl: dict[str, Any] = dict(_CONSTANTS)
        for name in ("wrap_target", "wrap", "label", "nop", "jmp", "in_", "out", "push"):
            dsl[name] = getattr(emit, name)
        for name in ("pull", "mov", "set"):
            dsl[name] = getattr(emit, name)
        # As MicroPython does: the function's own module globals are swapped for the DSL
        # while it runs, so a program that uses any other module-level name fails here too.
        gl = f.__globals__
        saved = gl.copy()
        gl.clear()
        gl.update(dsl)
        try:
            emit.start_pass(0)
            f()
            emit.start_pass(1)
            f()
        finally:
            gl.clear()
            gl.update(saved)
        return PioProgram(emit.text(f.__name__), merged)

    return dec
