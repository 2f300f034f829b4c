"""Exceptions with one meaning each. The CLI turns every one into a one-line message."""

from __future__ import annotations


def hide_userinfo(text: str) -> str:
    """``text`` for a message: a URL's ``user:password@`` shown as ``***@``, whatever the
    scheme (a password typed by mistake must not reach a terminal, a log or a journal)."""
    if "://" not in text and "@" in text:  # user:password@host, the scheme left out
        return "***@" + text.rpartition("@")[2]
    # A password may hold '@', '/', a space or even '://' (a URL parser would stop at them,
    # and show the rest): everything from the first '://' to the last '@' is hidden. The text
    # is a value the user gave (a URL, a player spec), so hiding too much costs nothing.
    start, at = text.find("://"), text.rfind("@")
    if at > start:
        return f"{text[:start + 3]}***{text[at:]}"
    return text


# What a port on which no ratedial dial answers is told to try, in every message that says
# so (the run's line when it happens, its last line, ``ratedial devices``): one hint, not two
NO_FIRMWARE_HINT = "is the firmware installed? try: ratedial flash"


class RatedialError(Exception):
    """Base class: ``str(exc)`` is the one-line message shown to the user."""

    exit_code = 1


class UsageError(RatedialError):
    """A command-line option or config value is invalid."""

    exit_code = 2


class ProtocolMismatch(RatedialError):
    """The dial speaks another protocol version."""

    def __init__(self, device_version: int, host_version: int) -> None:
        super().__init__(
            f"dial speaks protocol v{device_version}, this host speaks v{host_version}: "
            "update the firmware (ratedial flash) or the host software"
        )
        self.device_version = device_version
        self.host_version = host_version


class PortError(RatedialError):
    """A serial port cannot be opened or disappeared; ``gone``: it does not exist (now)."""

    def __init__(self, message: str, *, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone


class SimulatorError(RatedialError):
    """The virtual dial could not be started or died."""
