"""Simulated hardware for the virtual dial (never deployed to a board).

``hw.SimHW`` implements the HW object of firmware/README.md with fake pins, a fake timer
and a drifting, wrapping device clock; ``rater`` turns a rating curve into quadrature
edges with contact bounce; ``run`` is the MicroPython entry point the host spawns.
"""
