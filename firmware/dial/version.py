"""Versions sent in HELLO. PROTOCOL_VERSION is the version byte of every frame."""

FIRMWARE_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
