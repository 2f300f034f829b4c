"""Host -> device command lines (docs/protocol.md "Host -> device commands"): pure, no I/O.

Invariants:
- A line is at most 40 printable ASCII bytes (0x20-0x7E) ended by ``\\n``; one ``\\r``
  directly before the ``\\n`` is ignored. Any other byte, a ``\\r`` elsewhere, or a 41st byte
  makes the line bad: the rest up to ``\\n`` is discarded and the line gives error 3.
- ``LineAssembler.feed`` takes one byte (an int) at a time into a preallocated buffer and
  returns None until a ``\\n`` completes a line, then one result.
- A result is a 3-tuple ``(cmd, arg, text)``: ``cmd`` > 0 is a command code with its int
  argument (None for commands without one) and text None; ``cmd == ERROR`` (0) means
  rejected, with ``arg`` the protocol error code and ``text`` a short explanation.
- Parsing changes nothing; executing is the caller's job, so a rejected line changes nothing.
"""

try:
    from micropython import const
except ImportError:  # CPython, for the host tests

    def const(x):
        return x


MAX_LINE = const(40)

ERROR = const(0)
PING = const(1)
INFO = const(2)
RATE = const(3)
BATCH = const(4)
ZERO = const(5)

# Error codes (the same numbers as ERROR frames).
E_UNKNOWN = const(1)
E_ARG = const(2)
E_LINE = const(3)

NAMES = {PING: "PING", INFO: "INFO", RATE: "RATE", BATCH: "BATCH", ZERO: "ZERO"}

# keyword -> (command, lowest, highest); lowest None: the command takes no argument.
TABLE = {
    b"PING": (PING, 0, 0xFFFFFFFF),
    b"INFO": (INFO, None, None),
    b"RATE": (RATE, 50, 2000),
    b"BATCH": (BATCH, 1, 100),
    b"ZERO": (ZERO, None, None),
}

_BAD_LINE = (ERROR, E_LINE, "line too long or not printable ASCII")
_UNKNOWN = (ERROR, E_UNKNOWN, "unknown command")


def parse(line):
    """Parse one complete line (bytes, without the terminator) into a result tuple."""
    sp = line.find(b" ")
    kw = line if sp < 0 else line[:sp]
    entry = TABLE.get(bytes(kw))
    if entry is None:
        return _UNKNOWN
    cmd, lo, hi = entry
    name = NAMES[cmd]
    if lo is None:
        if sp >= 0:
            return (ERROR, E_ARG, name + " takes no argument")
        return (cmd, None, None)
    arg = b"" if sp < 0 else line[sp + 1 :]
    bad = (ERROR, E_ARG, "%s needs %d-%d" % (name, lo, hi))
    if not arg or len(arg) > 10:
        return bad
    for c in arg:
        if c < 48 or c > 57:  # decimal digits only: no sign, no space
            return bad
    value = int(arg)
    if value < lo or value > hi:
        return bad
    return (cmd, value, None)


class LineAssembler:
    """Collects bytes into lines; see the module invariants."""

    def __init__(self):
        self._buf = bytearray(MAX_LINE)
        self._n = 0
        self._bad = False  # discarding up to the next \n
        self._cr = False  # the previous byte was \r

    def reset(self):
        self._n = 0
        self._bad = False
        self._cr = False

    def feed(self, c):
        """Take one byte; return None, or a result when ``c`` ends a line."""
        if c == 10:
            if self._bad:
                result = _BAD_LINE
            else:
                result = parse(bytes(self._buf[: self._n]))
            self.reset()
            return result
        if self._bad:
            return None
        if self._cr or c < 0x20 or c > 0x7E:
            if c == 13 and not self._cr:
                self._cr = True  # fine if the \n comes next
            else:
                self._bad = True
            return None
        if self._n >= MAX_LINE:
            self._bad = True
            return None
        self._buf[self._n] = c
        self._n += 1
        return None
