// An emulated Raspberry Pi Pico (rp2040js) running the real MicroPython rp2 UF2, for the tests.
//
// Invariants:
// - Emulated time only advances by counted CPU cycles (8 ns each at 125 MHz) or, while the core
//   sleeps (WFI/WFE), to the next clock alarm; it is decoupled from wall time.
// - Faithful PIO ("--pio faithful", the default): rp2040js's own PIO scheduling (1,000 steps
//   per setTimeout, apart from the CPU, clock dividers ignored) is switched off; after every
//   CPU instruction each ENABLED state machine is stepped once per elapsed SM clock, where the
//   SM clock is the system clock divided by its CLKDIV (int + frac/256, exact on average, as
//   the hardware's fractional divider), and an instruction's delay cycles are honoured. While
//   the core sleeps the state machines are stepped cycle by cycle, so a PIO IRQ wakes the core
//   at the cycle it is raised. "--pio builtin" keeps rp2040js's scheduling (to document it).
// - USB CDC host model: an OUT buffer the board arms is only answered when the host has bytes
//   to send (rp2040js answers at once with an empty packet, which a real host does not do);
//   "stall" holds IN completions, like a host that stops reading.
// - Pin input changes are applied on the emulated clock (clock alarms), never between chunks.
//
// I/O: serial bytes on stdin/stdout (binary); a control channel on --ctl-fd (a unix socket):
// newline-delimited JSON requests {"id", "op", ...} answered by {"id", ...}; unsolicited
// notices {"event": ...}. Diagnostics on stderr.
import fs from 'node:fs';
import net from 'node:net';
import { Simulator, USBCDC, ConsoleLogger, LogLevel } from 'rp2040js';
import { decodeBlock } from 'uf2';

const CYCLE_NS = 8; // 125 MHz
const FLASH_BASE = 0x10000000;
const FS_OFFSET = 0xa0000; // MicroPython RPI_PICO: littlefs at 640 KB

function parseArgs(argv) {
  const opts = { pio: 'faithful', chunkNs: 2_000_000, ctlFd: 3 };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--uf2') opts.uf2 = v;
    else if (k === '--bootrom') opts.bootrom = v;
    else if (k === '--fs') opts.fs = v;
    else if (k === '--pio') opts.pio = v;
    else if (k === '--chunk-ns') opts.chunkNs = Number(v);
    else if (k === '--ctl-fd') opts.ctlFd = Number(v);
    else if (k === '--start-us') opts.startUs = Number(v);
    else if (k === '--high') opts.high = v ? v.split(',').map(Number) : [];
    else throw new Error('unknown option ' + k);
    i++;
  }
  if (!opts.uf2 || !opts.bootrom) throw new Error('--uf2 and --bootrom are required');
  return opts;
}

const opts = parseArgs(process.argv);
const { bootromB1 } = await import(new URL('file://' + fs.realpathSync(opts.bootrom)).href);

const sim = new Simulator();
const mcu = sim.rp2040;
const clock = sim.clock;
const core = mcu.core;
mcu.logger = new ConsoleLogger(LogLevel.Error);
mcu.loadBootrom(bootromB1);

// ------------------------------------------------------------------ flash: UF2 + littlefs
const uf2 = fs.readFileSync(opts.uf2);
for (let off = 0; off + 512 <= uf2.length; off += 512) {
  const { flashAddress, payload } = decodeBlock(uf2.subarray(off, off + 512));
  mcu.flash.set(payload, flashAddress - FLASH_BASE);
}
if (opts.fs) mcu.flash.set(fs.readFileSync(opts.fs), FS_OFFSET);

// ------------------------------------------------------------------ flash writes
// rp2040js does not emulate flash writes (its SSI is a stub). The boot ROM's flash functions,
// which pico-sdk (and so MicroPython's rp2.Flash) calls for every erase and program, are
// performed here on the flash array instead: when the core reaches one of them, do what it
// does and return to the caller (LR). Erase sets bytes to 0xFF; program ANDs the data in
// (NOR flash only clears bits). They take no emulated time here (a real sector erase takes
// ~45 ms with interrupts off; nothing samples while the REPL writes files).
function romWord16(off) {
  return (bootromB1[off >> 2] >>> ((off & 2) * 8)) & 0xffff;
}
const romHooks = new Map();
{
  const codes = {
    IF: () => {}, // connect_internal_flash
    EX: () => {}, // flash_exit_xip
    FC: () => {}, // flash_flush_cache (no XIP cache modelled)
    CX: () => {}, // flash_enter_cmd_xip
    RE: () => { // flash_range_erase(addr, count, block_size, block_cmd)
      const [addr, count] = core.registers;
      mcu.flash.fill(0xff, addr, addr + count);
      flashStats.erased += count;
    },
    RP: () => { // flash_range_program(addr, data, count)
      const [addr, data, count] = core.registers;
      for (let i = 0; i < count; i++) mcu.flash[addr + i] &= mcu.readUint8(data + i);
      flashStats.programmed += count;
    },
  };
  for (let off = romWord16(0x14); ; off += 4) {
    const code = romWord16(off);
    if (!code) break;
    const name = String.fromCharCode(code & 0xff, code >> 8);
    if (codes[name]) romHooks.set(romWord16(off + 2) & ~1, codes[name]);
  }
}
const flashStats = { erased: 0, programmed: 0 };

// ------------------------------------------------------------------ GPIO input cache
// rp2040js recomputes all 30 pins' input values for every PIO "in pins" (16 % of the run
// time with the quadrature program reading every cycle). Cache them; any change of a pin's
// input, pad or IO control (the only things they depend on) invalidates the cache.
{
  const getter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(mcu), 'gpioValues').get;
  let cached = 0;
  let dirty = true;
  Object.defineProperty(mcu, 'gpioValues', {
    get() {
      if (dirty) {
        cached = getter.call(mcu);
        dirty = false;
      }
      return cached;
    },
  });
  for (const g of mcu.gpio) {
    const set = g.setInputValue.bind(g);
    g.setInputValue = (v) => {
      dirty = true;
      set(v);
    };
  }
  for (const base of [0x40014, 0x4001c]) { // IO_BANK0 (CTRL: overrides), PADS_BANK0 (IE)
    const p = mcu.peripherals[base];
    for (const m of ['writeUint32', 'writeUint32Atomic']) {
      if (typeof p[m] !== 'function') continue;
      const f = p[m].bind(p);
      p[m] = (...args) => {
        dirty = true;
        return f(...args);
      };
    }
  }
}

// ------------------------------------------------------------------ PIO stepping
const pios = [mcu.pio[0], mcu.pio[1]];
const active = []; // {sm, pio, div, acc, wait}
let pioSteps = 0;

function refreshActive() {
  const old = new Map(active.map((a) => [a.sm, a]));
  active.length = 0;
  for (const pio of pios) {
    for (const sm of pio.machines) {
      if (!sm.enabled) continue;
      const int = sm.clockDivInt === 0 ? 65536 : sm.clockDivInt;
      const div = int * 256 + (int === 65536 ? 0 : sm.clockDivFrac);
      const prev = old.get(sm);
      active.push({ sm, pio, div, acc: prev ? prev.acc : 0, wait: prev ? prev.wait : 0 });
    }
  }
}

if (opts.pio === 'faithful') {
  for (const pio of pios) {
    pio.run = () => {}; // no setTimeout stepping: we step it with the CPU
    const write = pio.writeUint32.bind(pio);
    pio.writeUint32 = (offset, value) => {
      write(offset, value);
      refreshActive();
    };
  }
} else if (opts.pio !== 'builtin') {
  throw new Error('--pio faithful|builtin');
}

function stepSm(a) {
  if (a.wait > 0) {
    a.wait--; // delay cycles of the last instruction
    return;
  }
  const sm = a.sm;
  const c0 = sm.cycles;
  sm.step();
  const d = sm.cycles - c0;
  if (d > 1) a.wait = d - 1;
  pioSteps++;
}

// Advance every active state machine by `cycles` system clock cycles.
function stepPio(cycles) {
  const n = active.length;
  for (let k = 0; k < n; k++) {
    const a = active[k];
    a.acc += cycles * 256;
    const div = a.div;
    if (div === 256) {
      while (a.acc >= 256) {
        a.acc -= 256;
        stepSm(a);
      }
    } else {
      while (a.acc >= div) {
        a.acc -= div;
        stepSm(a);
      }
    }
  }
  // Output pins (set/out/side-set) changed: tell the GPIOs (checkChangedPins does the same
  // comparison; inlined because this runs after every instruction).
  const p0 = pios[0];
  const p1 = pios[1];
  if (p0.pinValues !== p0.oldPinValues || p0.pinDirections !== p0.oldPinDirections) {
    p0.checkChangedPins();
  }
  if (p1.pinValues !== p1.oldPinValues || p1.pinDirections !== p1.oldPinDirections) {
    p1.checkChangedPins();
  }
}

// ------------------------------------------------------------------ statistics
const stats = {
  busy: 0, // cycles executing (thread mode and handlers)
  idle: 0, // cycles asleep in WFI/WFE
  handler: new Float64Array(64), // cycles per active exception number (IPSR)
};

// ------------------------------------------------------------------ USB CDC host model
const cdc = new USBCDC(mcu.usbCtrl);
const usb = mcu.usbCtrl;
const hostTx = []; // bytes host -> board not yet taken
let pendingOut = null; // size of an armed OUT buffer not yet answered
let stalled = false;
const heldIn = []; // IN completions held while stalled
let connected = false;
let bytesToHost = 0;

cdc.onDeviceConnected = () => {
  connected = true;
  notify({ event: 'connected', nanos: clock.nanos });
};
// Frame arrival stamps: for each SAMPLES frame the host receives, [index of its last sample,
// emulated ns when its 0x00 delimiter arrived], so the host side can measure the latency
// from a sample being taken to its frame being on the host (op frame_stamps).
const frameStamps = [];
let frameBytes = [];
function cobsDecode(src) {
  const out = [];
  let i = 0;
  while (i < src.length) {
    const code = src[i++];
    if (code === 0) return null;
    for (let k = 1; k < code; k++) {
      if (i >= src.length) return null;
      out.push(src[i++]);
    }
    if (code < 0xff && i < src.length) out.push(0);
  }
  return out;
}
function stampFrame(bytes) {
  const body = cobsDecode(bytes);
  if (!body || body.length < 33 || body[1] !== 2) return; // SAMPLES only
  let first = 0;
  for (let k = 7; k >= 0; k--) first = first * 256 + body[4 + k];
  const n = body[28];
  if (n && frameStamps.length < 1000000) frameStamps.push([first + n - 1, clock.nanos]);
}
cdc.onSerialData = (data) => {
  bytesToHost += data.length;
  for (const b of data) {
    if (b === 0) {
      if (frameBytes.length) stampFrame(frameBytes);
      frameBytes = [];
    } else if (frameBytes.length < 2048) frameBytes.push(b);
  }
  process.stdout.write(Buffer.from(data));
};
usb.onEndpointRead = (endpoint, size) => {
  if (endpoint === cdc.outEndpoint) {
    pendingOut = size;
    answerOut();
  }
};
function answerOut() {
  if (pendingOut === null || hostTx.length === 0) return;
  const n = Math.min(pendingOut, hostTx.length);
  const buf = Uint8Array.from(hostTx.splice(0, n));
  pendingOut = null;
  usb.endpointReadDone(cdc.outEndpoint, buf);
}
const indicate = usb.indicateBufferReady.bind(usb);
usb.indicateBufferReady = (endpoint, out) => {
  if (!out && stalled && endpoint === cdc.inEndpoint) {
    heldIn.push(endpoint);
    return;
  }
  indicate(endpoint, out);
};
function setStall(on) {
  stalled = on;
  if (!on) {
    while (heldIn.length) indicate(heldIn.shift(), false);
  }
}

// ------------------------------------------------------------------ pin waveforms
// A wave is a list of [t_ns, pin, level] with t_ns from its start, applied by one alarm.
let wave = null; // {t0, events, i, id}
const waveAlarm = clock.createAlarm(() => applyWave());
function applyWave() {
  const w = wave;
  if (!w) return;
  const now = clock.nanos;
  while (w.i < w.events.length && w.t0 + w.events[w.i][0] <= now) {
    const [, pin, level] = w.events[w.i++];
    mcu.gpio[pin].setInputValue(!!level);
  }
  if (w.i < w.events.length) {
    waveAlarm.schedule(w.t0 + w.events[w.i][0] - now);
  } else {
    wave = null;
    notify({ event: 'wave_done', id: w.id, nanos: now });
  }
}

// ------------------------------------------------------------------ a watched address
// op watch_pc: count how often the core starts executing the instruction at an address
// (e.g. the interpreter's gc_collect, found by tests/rp2emu/board.py find_gc_collect).
let watchPc = -1;
let watchHits = 0;

// ------------------------------------------------------------------ the run loop
let running = true;
function runChunk() {
  const end = clock.nanos + opts.chunkNs;
  const faithful = opts.pio === 'faithful';
  const handler = stats.handler;
  while (clock.nanos < end) {
    if (core.waiting) {
      let toAlarm = clock.nanosToNextAlarm;
      if (toAlarm <= 0) toAlarm = end - clock.nanos;
      let cyc = Math.max(1, Math.ceil(toAlarm / CYCLE_NS));
      if (faithful && active.length) {
        let j = 0;
        while (j < cyc) {
          stepPio(1);
          j++;
          if (!core.waiting) break;
        }
        cyc = j;
      }
      stats.idle += cyc;
      clock.tick(cyc * CYCLE_NS);
    } else {
      const pc = core.PC;
      if (pc === watchPc) watchHits++;
      if (pc < 0x4000 && romHooks.has(pc)) {
        romHooks.get(pc)();
        core.PC = core.LR & ~1;
        continue;
      }
      const ipsr = core.IPSR;
      const cycles = core.executeInstruction();
      stats.busy += cycles;
      if (ipsr) handler[ipsr] += cycles;
      if (faithful && active.length) stepPio(cycles);
      clock.tick(cycles * CYCLE_NS);
    }
  }
  if (running) setImmediate(runChunk);
}

// ------------------------------------------------------------------ control channel
const ctl = new net.Socket({ fd: opts.ctlFd, readable: true, writable: true });
function notify(obj) {
  ctl.write(JSON.stringify(obj) + '\n');
}
function statsReply() {
  const h = {};
  stats.handler.forEach((v, k) => {
    if (v) h[k] = v;
  });
  return {
    nanos: clock.nanos, busy: stats.busy, idle: stats.idle, handler: h, pio_steps: pioSteps,
    connected, bytes_to_host: bytesToHost, stalled, held_in: heldIn.length,
    watch_pc: watchPc, watch_hits: watchHits,
    flash_erased: flashStats.erased, flash_programmed: flashStats.programmed,
    inputs: mcu.gpio.reduce((m, g, i) => (g.rawInputValue ? m | (1 << i) : m), 0) >>> 0,
    active_sm: active.map((a) => ({ pio: a.pio.index, sm: a.sm.index, div: a.div / 256 })),
  };
}
const ops = {
  stats: () => statsReply(),
  frame_stamps: () => ({ stamps: frameStamps.splice(0, frameStamps.length), nanos: clock.nanos }),
  stall: (r) => {
    setStall(!!r.on);
    return { stalled, nanos: clock.nanos };
  },
  wave: (r) => {
    if (wave) throw new Error('a wave is still running');
    for (const [, pin, level] of r.init || []) mcu.gpio[pin].setInputValue(!!level);
    const t0 = clock.nanos + (r.delay_ns || 0);
    wave = { t0, events: r.events, i: 0, id: r.id };
    if (r.events.length) waveAlarm.schedule(t0 + r.events[0][0] - clock.nanos);
    else applyWave();
    return { t0 };
  },
  watch_pc: (r) => {
    watchPc = r.addr & ~1; // a Thumb function pointer has bit 0 set
    watchHits = 0;
    return { nanos: clock.nanos, watch_pc: watchPc };
  },
  adc: (r) => {
    mcu.adc.channelValues[r.channel] = r.value; // 12-bit, read by the next conversion
    return { nanos: clock.nanos };
  },
  pins: (r) => {
    for (const [pin, level] of r.levels) mcu.gpio[pin].setInputValue(!!level);
    return { nanos: clock.nanos };
  },
  quit: () => {
    running = false;
    setImmediate(() => process.exit(0));
    return {};
  },
};
let ctlBuf = '';
ctl.on('data', (d) => {
  ctlBuf += d.toString();
  let nl;
  while ((nl = ctlBuf.indexOf('\n')) >= 0) {
    const line = ctlBuf.slice(0, nl);
    ctlBuf = ctlBuf.slice(nl + 1);
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    try {
      notify({ id: r.id, ...ops[r.op](r) });
    } catch (e) {
      notify({ id: r.id, error: String(e && e.message ? e.message : e) });
    }
  }
});
ctl.on('end', () => process.exit(0));
ctl.on('error', () => process.exit(0));

process.stdin.on('data', (d) => {
  for (const b of d) hostTx.push(b);
  answerOut();
});
process.stdin.on('end', () => {});
process.stdout.on('error', () => process.exit(0));

// Start the emulated clock late (e.g. just before time.ticks_us wraps at 2**30 us): the
// RP2040 timer counts clock.nanos / 1000, as from a board that has been up that long.
if (opts.startUs) clock.nanosCounter = opts.startUs * 1000;
// Inputs wired to a pull-up with the switch open (rp2040js does not model pad pulls).
for (const pin of opts.high || []) mcu.gpio[pin].setInputValue(true);
core.PC = FLASH_BASE;
if (opts.pio === 'faithful') refreshActive();
runChunk();
