"""The live web view of ``ratedial run --web``: a bounded sink, a tiny SSE server, one page."""

from .server import WebServer, parse_addr
from .sink import BIN_S, RING_POINTS, WebSink

__all__ = ["BIN_S", "RING_POINTS", "WebServer", "WebSink", "parse_addr"]
