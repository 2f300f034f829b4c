from mpy import run_mpy


def test_micropython_runs_and_reports_errors():
    assert run_mpy("print(1 + 1)").strip() == "2"
    try:
        run_mpy("raise ValueError('boom')")
    except AssertionError as exc:
        assert "ValueError" in str(exc)
    else:
        raise AssertionError("a failing script must fail the test")
