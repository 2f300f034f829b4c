"""The codec fuzz target: its corpus replays in every run, and atheris runs a bounded search
from a fixed seed."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from fuzzrun import run_target
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
    run_target(FUZZ / "fuzz_codec.py", corpus, tmp_path)
