"""The codec fuzz target: its corpus replays in every run, and atheris runs for a bounded time."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ratedial.wire import FrameDecoder

FUZZ = Path(__file__).resolve().parent / "fuzz"
CORPUS = FUZZ / "corpus" / "codec"


def test_corpus_replays_through_the_decoder():
    files = sorted(CORPUS.iterdir())
    assert len(files) >= 10
    total = 0
    for path in files:
        dec = FrameDecoder()
        total += len(dec.feed(path.read_bytes()[2:]))
    assert total >= 18  # every vector frame in the corpus decodes


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_fuzz_target_runs_clean(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_codec.py"), str(corpus), "-runs=20000",
         "-max_total_time=20", "-timeout=5", "-rss_limit_mb=1024"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr or "DONE" in proc.stderr, proc.stderr[-2000:]
