"""Native hot paths (``@micropython.viper``): the sampling interrupt and frame sealing.

Invariants:
- The viper source below is compiled ON THE BOARD at import (``exec``), by the port's own
  native emitter (rp2: Thumb/armv6m, esp32: xtensawin, unix: x64). The deployed ``.mpy``
  files stay architecture-neutral bytecode, so ``ratedial flash`` needs no ``mpy-cross
  -march`` and one firmware image serves every board. Where no native emitter exists
  (CPython tools, a port built without one) ``NATIVE`` is False and callers keep their
  pure-Python code, which computes the same bytes.
- ``finish(body, n, dst, off)``: CRC-32 (IEEE, as ``binascii.crc32``) of ``body[:n]``
  appended little-endian at ``body[n:n+4]``, then COBS of ``body[:n+4]`` into ``dst`` from
  ``off``, then the 0x00 delimiter; returns the end offset. Allocates nothing.
- ``put_time(buf, off, hi, lo)``: dial.clock.put_time's twin (a 64-bit time from two small
  ints, written without making the int).
- ``pack_run(ps, sampler, body)``: the packer's per-sample loop for the open SAMPLES frame
  (dial.packer.Packer.pack keeps the rest: closing frames, losses, period changes).
- ``sampler_irq(self, arg)``: the body of ``dial.sampler.Sampler`` 's interrupt handler over
  its state array ``self.st`` (field offsets ``S_*`` in dial.sampler). When the HW object
  gave register addresses (rp2: TIMERAWL, the counter SM's PIO block, SIO GPIO_IN) it reads
  the hardware directly, with no call at all; otherwise it calls the cached Python
  callables. Allocates nothing; only 32-bit words in preallocated buffers.
- Measured on the rp2 port (emulated RP2040, tests/rp2emu/profile.py): see firmware/README.md.
"""

NATIVE = False
finish = None
sampler_irq = None
pack_run = None
put_time = None
crc_table = None
WHY = None  # why NATIVE is False, when it is

_SRC = """
import micropython


@micropython.viper
def _mk_table(tbl):
    # Every constant here must be a small int on a 32-bit port (|x| < 2**30), or viper
    # treats it as an object: 0x7FFFFFFF is made at run time, 0xEDB88320 is written signed.
    t = ptr32(tbl)
    one = 1
    low31 = (one << 31) - one  # at run time: a folded constant would be an object
    poly = int(-306674912)  # 0xEDB88320, the reflected CRC-32 polynomial
    i = 0
    while i < 256:
        c = i
        k = 0
        while k < 8:
            if c & 1:
                c = ((c >> 1) & low31) ^ poly
            else:
                c = (c >> 1) & low31
            k += 1
        t[i] = c
        i += 1


@micropython.viper
def _finish(body, n: int, dst, off: int) -> int:
    b = ptr8(body)
    d = ptr8(dst)
    t = ptr32(crc_table)
    c = int(-1)
    i = 0
    while i < n:
        c = t[(c ^ b[i]) & 0xFF] ^ ((c >> 8) & 0xFFFFFF)
        i += 1
    c = c ^ int(-1)
    b[n] = c & 0xFF
    b[n + 1] = (c >> 8) & 0xFF
    b[n + 2] = (c >> 16) & 0xFF
    b[n + 3] = (c >> 24) & 0xFF
    n += 4
    cp = off
    o = off + 1
    code = 1
    i = 0
    while i < n:
        x = b[i]
        if x:
            d[o] = x
            o += 1
            code += 1
            if code == 0xFF:
                d[cp] = 0xFF
                cp = o
                o += 1
                code = 1
        else:
            d[cp] = code
            cp = o
            o += 1
            code = 1
        i += 1
    if code == 1 and b[n - 1]:
        o -= 1
    else:
        d[cp] = code
    d[o] = 0
    return o + 1


@micropython.viper
def _pack_run(ps, smp, body) -> int:
    # The packer's common case (dial.packer.Packer.pack): records appended to the open SAMPLES
    # frame while it is open and not full, each sample's dcount fits i8 and jitter i16.
    # With n == 0 the first sample opens the frame (record 0 is flags, 0, 0): t0 and c0
    # come back in ps[2] and ps[6]; the caller only asks so when no period change waits.
    # ps: rd_lo, n, t0, prev_c, fperiod, batch, c0, tmask, thalf, ring mask, ring size.
    # Returns the number of samples packed; ps[0], ps[1], ps[2], ps[3], ps[6] are updated.
    p = ptr32(ps)
    s = ptr32(smp.st)
    tk = ptr32(smp.tick)
    ct = ptr32(smp.count)
    fl = ptr8(smp.flags)
    b = ptr8(body)
    one = 1
    sb = one << 31  # sign bit: 64-bit ports zero-extend ptr32 loads, (x ^ sb) - sb restores
    rd = p[0]
    n = p[1]
    t0 = p[2]
    pc = (p[3] ^ sb) - sb
    per = p[4]
    batch = p[5]
    tmask = p[7]
    thalf = p[8]
    mask = p[9]
    ring = p[10]
    k = 0
    while n < batch:
        ahead = (s[0] - rd) & 0x3FFFFFFF
        if ahead == 0 or ahead > ring:
            break
        i = rd & mask
        t = tk[i]
        c = (ct[i] ^ sb) - sb
        f = fl[i]
        if ((s[0] - rd) & 0x3FFFFFFF) > ring:
            break  # overwritten while read: the bytecode path counts it lost
        if n == 0:
            t0 = t
            p[6] = c
            b[29] = f
            b[30] = 0
            b[31] = 0
            b[32] = 0
        else:
            dc = c - pc
            jit = ((t - t0 + thalf) & tmask) - thalf - n * per
            if dc < -128 or dc > 127 or jit < -32768 or jit > 32767:
                break
            o = 29 + 4 * n
            b[o] = f
            b[o + 1] = dc & 0xFF
            b[o + 2] = jit & 0xFF
            b[o + 3] = (jit >> 8) & 0xFF
        pc = c
        n += 1
        rd = (rd + 1) & 0x3FFFFFFF
        k += 1
    p[0] = rd
    p[1] = n
    p[2] = t0
    p[3] = pc
    return k


@micropython.viper
def _put_time(buf, off: int, hi: int, lo: int):
    # dial.clock.put_time: hi * 2**29 + lo as u64 little-endian at buf[off:off + 8]
    b = ptr8(buf)
    v = lo | (hi << 29)
    b[off] = v & 0xFF
    b[off + 1] = (v >> 8) & 0xFF
    b[off + 2] = (v >> 16) & 0xFF
    b[off + 3] = (v >> 24) & 0xFF
    h = hi >> 3
    b[off + 4] = h & 0xFF
    b[off + 5] = (h >> 8) & 0xFF
    b[off + 6] = (h >> 16) & 0xFF
    b[off + 7] = (h >> 24) & 0xFF


@micropython.viper
def _sampler_irq(self, _arg):
    s = ptr32(self.st)
    ta = s[15]
    if ta:
        t = ptr32(ta)[0] & 0x3FFFFFFF
    else:
        t = int(self._ticks())
    pa = s[16]
    if pa:
        # PIO RX FIFO of the counter SM: FLEVEL says how many stale words wait; read them,
        # then one more, pushed after this read began (the SM pushes every <= 10 cycles).
        sm = s[17]
        p = ptr32(pa)
        k = (p[3] >> (8 * sm + 4)) & 0xF
        while k > 0:
            s[23] = p[8 + sm]
            k -= 1
        empty = 1 << (8 + sm)
        while (p[1] & empty) and k < 1000:
            k += 1
        if k < 1000:
            s[23] = p[8 + sm]
        c = ptr32(s[24])[0] - s[23]
    else:
        c = int(self._value())
    w = s[0]
    i = w & s[19]
    if s[25]:  # 32-bit ports: buffer addresses cached in st, no attribute look-up
        ptr32(s[25])[i] = t
        ptr32(s[26])[i] = c
        fl = ptr8(s[27])
    else:
        ptr32(self.tick)[i] = t
        ptr32(self.count)[i] = c
        fl = ptr8(self.flags)
    f = 0
    if s[2]:
        d = ((t - s[3] + 0x20000000) & 0x3FFFFFFF) - 0x20000000 - s[1]
        if d + d > s[1]:
            f = 2
            s[4] = (s[4] + 1) & 0x3FFFFFFF
        if d < 0:
            d = 0 - d
        if d > s[5]:
            s[5] = d
    else:
        s[2] = 1
    s[3] = t
    if s[22]:
        e = int(self._errors())
        if e != s[14]:
            s[14] = e
            f |= 4
    if s[21]:
        if s[28]:  # SIO GPIO_IN (never compare a loaded word with 0: 64-bit ports
            # zero-extend ptr32 loads, so -1 reads as 2**32 - 1)
            r = ((ptr32(s[28])[0] >> s[18]) & 1) ^ s[11]
        else:
            r = int(self._button()) ^ s[11]
        if r != s[7]:
            s[7] = r
            s[8] = 1
            s[9] = t
        elif s[8] < s[10]:
            s[8] = s[8] + 1
        if r != s[6] and s[8] >= s[10]:
            s[6] = r
            j = s[12] & s[20]
            ptr8(self.ev_state)[j] = r
            ptr32(self.ev_idx)[j] = w
            ptr32(self.ev_tick)[j] = t
            ptr32(self.ev_edge)[j] = s[9]
            s[12] = (s[12] + 1) & 0x3FFFFFFF
        f |= s[6]
    fl[i] = f
    s[0] = (w + 1) & 0x3FFFFFFF
    if w == s[13]:
        self.wake.set()
"""


def _load():
    global NATIVE, finish, sampler_irq, crc_table, pack_run, put_time
    try:
        import micropython  # noqa: F401 - only to fail fast outside MicroPython
        from array import array
    except ImportError:
        return
    g = {}
    try:
        exec(_SRC, g)
        tbl = array("I", [0] * 256)
        g["_mk_table"](tbl)
        g["crc_table"] = tbl
    except Exception as e:  # noqa: BLE001 - no native emitter on this port: bytecode fallback
        global WHY
        WHY = repr(e)
        return
    crc_table = tbl
    finish = g["_finish"]
    sampler_irq = g["_sampler_irq"]
    pack_run = g["_pack_run"]
    put_time = g["_put_time"]
    NATIVE = True


_load()
