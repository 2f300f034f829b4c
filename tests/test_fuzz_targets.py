"""The config and player-parser fuzz targets (tests/fuzz/): their corpora replay in every run,
the crashes they found replay as strict xfails until fixed, and atheris runs each for a
bounded number of runs from a fixed seed (tests/fuzzrun.py) looking for new ones."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from fuzzrun import run_target

FUZZ = Path(__file__).resolve().parent / "fuzz"
HAS_ATHERIS = importlib.util.find_spec("atheris") is not None


def _target(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_fuzz_{name}", FUZZ / f"fuzz_{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _seeds(name: str) -> list[Path]:
    return sorted(p for p in (FUZZ / "corpus" / name).iterdir() if p.is_file())


def _regressions(name: str) -> list[Path]:
    folder = FUZZ / "corpus" / name / "regressions"  # crashes not fixed yet
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(autouse=True)
def _no_secrets_no_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RATEDIAL_MQTT_PASSWORD", raising=False)
    monkeypatch.delenv("RATEDIAL_FUZZ_SKIP_KNOWN", raising=False)


def test_config_corpus_replays():
    target = _target("config")
    seeds = _seeds("config")
    assert len(seeds) >= 12
    for path in seeds:
        target.check(path.read_bytes())


def test_players_corpus_replays_through_every_parser():
    target = _target("players")
    seeds = _seeds("players")
    used = {target.parser_for(p.read_bytes()) for p in seeds}
    assert used == set(target.PARSERS)  # a seed for each parser
    for path in seeds:
        target.check(path.read_bytes())


# Crashes found by fuzzing, kept as regressions: each fails today (strict xfail) and turns
# into a pass, and an XPASS error here, when the owner fixes it. Tracebacks: the lead's report.
_REASONS = {
    "players": "a player parser raises outside its documented exceptions",
    "config": "the config loader raises something other than a one-line UsageError",
}


@pytest.mark.parametrize(
    ("name", "path"),
    [pytest.param(n, p, id=f"{n}/{p.name}",
                  marks=pytest.mark.xfail(strict=True, reason=_REASONS[n]))
     for n in ("config", "players") for p in _regressions(n)],
)
def test_fuzz_regression(name: str, path: Path):
    _target(name).check(path.read_bytes())


@pytest.mark.skipif(not HAS_ATHERIS, reason="atheris not installed")
@pytest.mark.parametrize("name", ["config", "players"])
def test_atheris_finds_nothing_new(name: str, tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in _seeds(name):  # not the regressions: those crash by design
        shutil.copy(path, corpus)
    env = {**os.environ, "RATEDIAL_FUZZ_SKIP_KNOWN": "1"}
    env.pop("RATEDIAL_MQTT_PASSWORD", None)
    run_target(FUZZ / f"fuzz_{name}.py", corpus, tmp_path, env=env, extra=("-max_len=8192",))
