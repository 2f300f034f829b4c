"""Every output of export (and analyze --table, figures) is written in full or not at all: a
full disk or a stop signal mid-write leaves no file cut short under the output's name, and the
error names the file. The crash audit (2026-12-05, finding 3): a truncated L.long.csv that
pandas read 612 of 1403 rows of without a word, 0-byte files, "No space left on device"
naming no file. Real tmpfs mounts (as root), real subprocesses."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ratedial.analysis.synth import Play, SynthMedia, SynthRater, constant, write_recording
from tmpfs import tmpfs

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

needs_root = pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux",
                                reason="needs root to mount a tmpfs")


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 min recording: its long CSV at 100 Hz is about 6 MB."""
    path = tmp_path_factory.mktemp("rec") / "r.ratedial"
    media = SynthMedia(duration_s=600.0, fingerprint="rdfp1:whole")
    write_recording(path, [SynthRater(label="client", curve=constant(70), uid="c1",
                                      script=(Play(start_s=0, end_s=600),))],
                    media=media, rate_hz=100, session={"dyad": "D1"})
    return path


def ratedial(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *map(str, args)], text=True,
                          capture_output=True, timeout=300, check=False)


def fill(mnt: Path) -> None:
    """Write a ballast file until the disk is full: no write of a byte more succeeds."""
    with (mnt / "ballast").open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0")
        except OSError:
            pass


def export_long(rec: Path, out: Path, rate: str) -> subprocess.CompletedProcess[str]:
    return ratedial("export", rec, "-o", out, "--rate", rate, "--format", "csv-long")


def every_file(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@needs_root
def test_an_export_onto_a_full_disk_leaves_no_file_and_names_the_one_it_could_not_write(
        tmp_path: Path, rec: Path) -> None:
    with tmpfs(tmp_path / "small", "size=2m", "mode=0700") as mnt:
        fill(mnt)
        res = ratedial("export", rec, "-o", mnt / "ex" / "pre",
                       "--format", "csv-long,parquet")
        assert res.returncode == 1, res.stderr
        assert res.stderr == (f"ratedial: error: cannot write {mnt / 'ex' / 'pre.long.csv'}: "
                              "no space left on device\n")
        # nothing cut short, no temporary left, and the folder it made taken back
        assert every_file(mnt) == ["ballast"]
        res = ratedial("analyze", rec, "--no-truth-bias", "--table", mnt / "t.csv")
        assert res.returncode == 1, res.stderr
        assert res.stderr.splitlines()[-1] == (
            f"ratedial: error: cannot write {mnt / 't.csv'}: no space left on device")
        assert every_file(mnt) == ["ballast"]


@needs_root
@pytest.mark.parametrize("fmt", ["parquet", "sav", "xdf", "eaf"])
def test_every_format_onto_a_full_disk_is_one_line_naming_its_file(
        tmp_path: Path, rec: Path, fmt: str) -> None:
    """pyarrow's OSError has its errno only in its text; pyreadstat wrote a 0-byte .sav on
    a full disk and returned (a small table: `analyze --table t.sav` exited 0)."""
    pytest.importorskip("pyreadstat")
    with tmpfs(tmp_path / "small", "size=1m", "mode=0700") as mnt:
        fill(mnt)
        res = ratedial("export", rec, "-o", mnt / "pre", "--format", fmt)
        first = {"eaf": "pre.D1.ratings.csv"}.get(fmt, f"pre.{fmt}")
        assert (res.returncode, res.stderr) == (1, f"ratedial: error: cannot write "
                                                   f"{mnt / first}: no space left on device\n")
        if fmt == "sav":
            res = ratedial("analyze", rec, "--no-truth-bias", "--table", mnt / "t.sav")
            assert res.returncode == 1, res.stderr
            assert res.stderr.splitlines()[-1] == (
                f"ratedial: error: cannot write {mnt / 't.sav'}: no space left on device")
        assert every_file(mnt) == ["ballast"]


@needs_root
def test_an_export_that_runs_out_of_space_keeps_the_earlier_complete_file(
        tmp_path: Path, rec: Path) -> None:
    """An export written over an earlier one: a full disk midway leaves the earlier file
    whole (it was cut to the part that fit), and one that fits replaces it whole."""
    with tmpfs(tmp_path / "small", "size=12m", "mode=0700") as mnt:
        out, long_csv = mnt / "pre", mnt / "pre.long.csv"
        assert export_long(rec, out, "50").returncode == 0
        assert len(pd.read_csv(long_csv)) == 30_000  # about 3 MB
        st = os.statvfs(mnt)
        (mnt / "ballast").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 3 * 2**19))
        res = export_long(rec, out, "100")  # 6 MB: 1.5 MB free
        assert res.returncode == 1
        assert res.stderr == (f"ratedial: error: cannot write {long_csv}: no space left on "
                              "device\n")
        assert len(pd.read_csv(long_csv)) == 30_000  # the 50 Hz export, whole
        res = export_long(rec, out, "10")  # 0.6 MB: fits
        assert (res.returncode, res.stderr) == (0, "")
        assert len(pd.read_csv(long_csv)) == 6_000
        assert stat.S_IMODE(long_csv.stat().st_mode) == 0o600
        assert sorted(p.name for p in mnt.iterdir()) == ["ballast", "pre.json",
                                                         "pre.long.csv"]


def test_an_export_stopped_mid_write_leaves_no_file(tmp_path: Path, rec: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl+C (SIGTERM and SIGHUP are raised alike) while Parquet is being written: a 0-byte
    f.parquet was left. Now nothing, and an earlier f.parquet stays as it was."""
    from ratedial.analysis.align import AlignOptions
    from ratedial.analysis.export import write_export
    from ratedial.analysis.groups import group_series
    from ratedial.analysis.load import load

    groups = group_series(load([rec], AlignOptions(rate_hz=10)))
    calls = []

    def cut(self: object, path: str | os.PathLike[str], **kw: object) -> None:
        calls.append(path)
        Path(path).write_bytes(b"PAR1 cut short")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", cut)
    with pytest.raises(KeyboardInterrupt):
        write_export(groups, tmp_path / "new" / "f", ["parquet"])
    assert calls and not (tmp_path / "new").exists()  # the folder it made: taken back too
    (tmp_path / "f.parquet").write_bytes(b"an earlier export")
    with pytest.raises(KeyboardInterrupt):
        write_export(groups, tmp_path / "f", ["parquet"])
    assert (tmp_path / "f.parquet").read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]  # no temporary


@pytest.mark.parametrize("name", ["t." + "x" * 245, "x" * 251 + ".csv", "é" * 125 + ".csv",
                                  "a." + "b" * 253, "é" * 126 + ".x"])
def test_an_output_name_the_os_takes_is_never_refused_for_its_temporarys(
        tmp_path: Path, name: str) -> None:
    """A review (2026-12-05): the temporary's name (``.STEM.XXXXXXXX.part.SUF``, the stem cut
    to 64 characters, not bytes) was longer than a name of up to 255 bytes the OS takes:
    'File name too long', naming the temporary."""
    from ratedial.outfile import staged

    out = tmp_path / name
    assert len(os.fsencode(name)) <= 255
    with staged(out) as part:
        assert len(os.fsencode(part.name)) <= 255 and part.name.startswith(".")
        part.write_text("whole")
    assert out.read_text() == "whole"
    assert every_file(tmp_path) == [name]


def test_a_folder_that_cannot_be_written_is_said_of_the_output(tmp_path: Path) -> None:
    """A review (2026-12-05): the error from creating the temporary named the hidden
    temporary ('.../ro/.table.7_v2s_f6.part.csv: Permission denied'), not the output."""
    import tempfile

    top = Path(tempfile.mkdtemp())
    try:
        os.chmod(top, 0o755)
        ro = top / "ro"
        ro.mkdir(mode=0o555)
        out = ro / "table.csv"
        code = ("import sys; from pathlib import Path; from ratedial.outfile import staged\n"
                "try:\n"
                "    with staged(Path(sys.argv[1])): pass\n"
                "except Exception as exc: print(type(exc).__name__, exc)\n")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        res = subprocess.run([*(as_user if os.geteuid() == 0 else []), sys.executable, "-c",
                              code, str(out)], text=True, capture_output=True, timeout=60,
                             check=False, env={**os.environ, "HOME": str(top)})
        assert res.stderr == ""
        assert res.stdout == f"OutputWriteError cannot write {out}: permission denied\n"
        assert os.listdir(ro) == []
    finally:
        os.chmod(top / "ro", 0o755)
        import shutil
        shutil.rmtree(top)
