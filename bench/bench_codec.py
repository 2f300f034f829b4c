"""Host codec throughput on one core, against the text-line parsing most DIY bridges use.

Both decoders get the same 1 kHz stream (a random-walk count, jittered times, a button) as
one byte string fed in 4 KiB reads, like a serial port delivers it. The baseline,
``text_lines``, is what a lab's own bridge does: firmware prints ``index,time_us,count,button``
per sample and the host splits lines and parses integers (with no CRC and no loss detection
beyond the index).
"""

from __future__ import annotations

import random
import time

from ratedial.wire import FrameDecoder, Samples, encode_frame

N_SAMPLES = 400_000
BATCH = 10
CHUNK = 4096


def _stream() -> tuple[bytes, bytes, int]:
    rng = random.Random(1)
    count, t = 0, 1_000_000
    frames, lines = [], []
    for first in range(0, N_SAMPLES, BATCH):
        counts, times, flags = [], [], []
        for k in range(BATCH):
            count += rng.choice((-1, 0, 0, 0, 1))
            jitter = 0 if k == 0 else rng.randint(-20, 20)
            tk = t + k * 1000 + jitter
            counts.append(count)
            times.append(tk)
            flags.append(int(first % 5000 < 300))
            lines.append(f"{first + k},{tk},{count},{flags[-1]}\n".encode())
        frames.append(encode_frame(Samples(seq=len(frames) & 0xFFFF, first_index=first,
                                           period_us=1000, counts=tuple(counts),
                                           times_us=tuple(times), flags=tuple(flags))))
        t += BATCH * 1000
    return b"".join(frames), b"".join(lines), len(frames)


def _best_of(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def run() -> dict[str, object]:
    binary, text, n_frames = _stream()

    def ours() -> None:
        dec = FrameDecoder(synced=True)
        n = 0
        for i in range(0, len(binary), CHUNK):
            for f in dec.feed(binary[i : i + CHUNK]):
                n += len(f.counts) if isinstance(f, Samples) else 0
        assert n == N_SAMPLES

    def text_lines() -> None:
        buf = b""
        n = 0
        for i in range(0, len(text), CHUNK):
            buf += text[i : i + CHUNK]
            *complete, buf = buf.split(b"\n")
            for line in complete:
                _idx, _t, _c, _b = (int(x) for x in line.split(b","))
                n += 1
        assert n == N_SAMPLES

    cpu_ours = _best_of(ours)
    cpu_text = _best_of(text_lines)
    return {
        "what": "decode a 1 kHz stream on one core (CPU seconds, best of 3)",
        "samples": N_SAMPLES,
        "frames": n_frames,
        "ratedial": {
            "bytes_per_sample": round(len(binary) / N_SAMPLES, 2),
            "frames_per_s": round(n_frames / cpu_ours),
            "samples_per_s": round(N_SAMPLES / cpu_ours),
            "cpu_us_per_sample": round(cpu_ours / N_SAMPLES * 1e6, 3),
        },
        "text_lines": {
            "bytes_per_sample": round(len(text) / N_SAMPLES, 2),
            "samples_per_s": round(N_SAMPLES / cpu_text),
            "cpu_us_per_sample": round(cpu_text / N_SAMPLES * 1e6, 3),
        },
        "ratio_samples_per_s_vs_text_lines": round(cpu_text / cpu_ours, 2),
        "realtime_dials_one_core_at_1khz": round(N_SAMPLES / cpu_ours / 1000),
    }
