"""A minimal stand-in for MicroPython's machine module (pins, ids, IRQ gates) for tests."""


class Pin:
    IN = 0
    PULL_UP = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, n, mode=0, pull=None):
        self.n = n
        self.pull = pull
        self.v = 1

    def value(self):
        return self.v

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler


def unique_id():
    return b"\x01\x02\x03\x04\x05\x06\x07\x08"


def disable_irq():
    return 7


def enable_irq(state):
    pass
