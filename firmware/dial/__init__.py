"""Dial firmware: encoder counting, sampling and framing for the rating dial."""
