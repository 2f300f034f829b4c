"""Wake-ups that allocate nothing: ``IrqFlag`` (an interrupt wakes an asyncio task),
``Signal`` (a task wakes a task) and ``Scheduled`` (an interrupt runs a job in the main
thread, with no asyncio round at all).

Invariants:
- Awaiting either is ``await x.wait()``, and ``wait()`` returns the object itself: an
  iterator whose ``__next__`` yields once (queues the task) or raises a preallocated
  StopIteration with no traceback, like asyncio's own ``sleep_ms`` (core.SingletonGenerator).
  asyncio's ``ThreadSafeFlag.wait()`` and ``Event.wait()`` are generators: one heap object
  per wait, i.e. per frame, and the collector ran every ~12 s at 2 kHz because of them.
- ``IrqFlag`` is a stream that asyncio's poller asks for POLLIN (as ThreadSafeFlag is), so
  an interrupt's ``set()`` ends the loop's sleep in ``poll``. asyncio's IOQueue allocates
  an entry (a list, a dict slot, a poller registration) each time a stream starts being
  waited on, and drops it after each wake-up; ``pin()`` parks a task waiting for POLLOUT on
  the flag, which it never reports, so the entry stays and every later wait only changes
  the poller's mask. Uses asyncio.core's ``_io_queue.queue_read/queue_write`` and
  ``cur_task``, as asyncio's own ThreadSafeFlag and streams do.
- ``Scheduled(job)``: ``set()`` (from the interrupt) queues ``job()`` with
  ``micropython.schedule``, at most once at a time (``armed``), so the port's scheduler
  queue (depth 8) never overflows because of it. When a stall has filled the queue anyway,
  ``set()`` leaves the job unarmed and the next ``set()`` queues it: the exception never
  escapes (in rp2's hard interrupt it would remove the handler). MicroPython runs scheduled jobs between
  two bytecodes of the main thread, also while asyncio sleeps in ``poll``: the job must not
  touch asyncio and must not meet half-done main-loop work (dial.app guards it).
  An asyncio wake-up costs a loop round and, worse, a Python ``ioctl`` call on every
  interrupt while the loop sleeps in ``poll`` (each interrupt ends the WFE and the poller
  asks every registered stream again); a scheduled job costs neither.
- One task waits on each object at a time. ``set()`` of an IrqFlag only stores an int (safe
  in a hard interrupt); ``Signal.set()`` must run in the asyncio thread.
- Measured on the emulated RP2040 (tests/rp2emu/profile.py): see firmware/README.md.
"""

import io

from asyncio import core

try:
    from micropython import schedule
except ImportError:  # CPython tools
    schedule = None

_POLL = 3  # MP_STREAM_POLL
_POLLIN = 1


class IrqFlag(io.IOBase):
    def __init__(self):
        self.state = 0
        self._stop = StopIteration()
        self._pinned = False

    def ioctl(self, req, flags):
        if req == _POLL:
            return self.state * (flags & _POLLIN)  # never POLLOUT: pin() keeps waiting
        return -1

    def set(self):
        self.state = 1

    def clear(self):
        self.state = 0

    def wait(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        if self.state:
            self.state = 0
            e = self._stop
            e.__traceback__ = None
            raise e
        core._io_queue.queue_read(self)
        return None

    async def pin(self):
        """Run as a task for as long as the flag is used (see the module notes)."""
        await _Park(self)


class _Park:
    def __init__(self, flag):
        self._flag = flag

    def __iter__(self):
        return self

    def __next__(self):
        core._io_queue.queue_write(self._flag)  # woken never: the flag has no POLLOUT
        return None


class Signal:
    """A task-side event for one waiter: ``set()`` wakes it (or the next ``wait()`` returns
    at once); the wait clears it."""

    def __init__(self):
        self.state = False
        self._task = None
        self._stop = StopIteration()

    def set(self):
        self.state = True
        t = self._task
        if t is not None:
            self._task = None
            core._task_queue.push(t)

    def clear(self):
        self.state = False

    def wait(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        if self.state:
            self.state = False
            e = self._stop
            e.__traceback__ = None
            raise e
        self._task = core.cur_task
        return None


class Scheduled:
    """``set()`` from an interrupt runs ``job()`` soon in the main thread (module notes)."""

    def __init__(self, job):
        self.armed = 0
        self._job = job
        self._cb = self._run  # one bound method, made here: set() must not allocate

    def set(self):
        if not self.armed:
            self.armed = 1  # before schedule(): the job may run before schedule() returns
            try:
                # returned from inside the try: no jump follows schedule(), and a jump is
                # where the unix port's VM runs scheduled jobs (the fakes' timer callback
                # runs in the main thread; a board's never lets the job into the interrupt)
                return schedule(self._cb, None)
            except Exception:  # the queue is full (a stall): the next set() tries again
                self.armed = 0

    def _run(self, _arg):
        self.armed = 0
        self._job()
