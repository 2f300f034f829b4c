"""The figures, checked as pictures: size, curves where the data is, gaps left blank."""

from __future__ import annotations

import numpy as np
import pytest

from ratedial.analysis.analyse import AnalysisOptions, analyse_group
from ratedial.analysis.groups import group_series
from ratedial.analysis.load import load
from ratedial.analysis.plots import MM, RATER_COLORS, overview, time_course, write_plots
from ratedial.analysis.segments import SegmentOptions
from ratedial.analysis.synth import Play, SynthMedia, SynthRater, constant, write_recording

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("plots")
    media = SynthMedia(duration_s=60.0, fingerprint="rdfp1:p")
    client = SynthRater(label="client", curve=constant(80), uid="c",
                        script=(Play(start_s=0, end_s=60, gaps=((20, 30, "unplugged"),)),))
    therapist = SynthRater(label="therapist", curve=constant(30), uid="t",
                           script=(Play(start_s=0, end_s=60),))
    paths = [d / "c.ratedial", d / "t.ratedial"]
    for p, r in zip(paths, (client, therapist), strict=True):
        write_recording(p, [r], media=media, rate_hz=50, session={"dyad": "D9"})
    (g,) = group_series(load(paths))
    opts = AnalysisOptions(segments=SegmentOptions(k=1, window_s=5), replicates=200)
    return analyse_group(g, opts), d


def pixels(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)


def near(img, hex_color, tol=40):
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return np.abs(img - rgb).sum(axis=-1) < tol


def column_share(img, mask, ax, x):
    """Share of the axes' height at data x covered by masked pixels."""
    h = img.shape[0]
    bb = ax.get_window_extent()
    top, bottom = int(h - bb.y1) + 1, int(h - bb.y0) - 1
    (px, _) = ax.transData.transform((x, 0))
    return float(mask[top:bottom, int(px)].mean())


def columns_with(img, mask, ax, x0, x1):
    """Which data-x columns between x0 and x1 hold a masked pixel inside ax (image rows run
    top-down, display coordinates bottom-up)."""
    h = img.shape[0]
    bb = ax.get_window_extent()
    top, bottom = int(h - bb.y1) + 1, int(h - bb.y0) - 1
    (px0, _), (px1, _) = ax.transData.transform([(x0, 0), (x1, 0)])
    cols = range(int(np.ceil(px0)), int(np.floor(px1)))
    return [mask[top:bottom, c].any() for c in cols]


def test_time_course_curves_where_data_gaps_blank(result):
    res, _ = result
    fig = time_course(res)
    img = pixels(fig)
    w_in, h_in = fig.get_size_inches()
    assert w_in == pytest.approx(180 * MM)
    assert abs(img.shape[1] - w_in * fig.dpi) <= 1 and abs(img.shape[0] - h_in * fig.dpi) <= 1
    both, client_ax, therapist_ax = fig.axes[:3]
    blue = near(img, RATER_COLORS[0])
    orange = near(img, RATER_COLORS[1])
    # the client's panel: a curve before and after the gap, nothing inside it
    assert all(columns_with(img, blue, client_ax, 1, 19))
    assert not any(columns_with(img, blue, client_ax, 20.5, 29.5))
    assert all(columns_with(img, blue, client_ax, 31, 59))
    # the combined panel: the therapist is drawn through the client's gap (dashed: most
    # columns), the client is not
    assert not any(columns_with(img, blue, both, 20.5, 29.5))
    assert np.mean(columns_with(img, orange, both, 20.5, 29.5)) > 0.5
    # the curve sits at the rating: row of y = 80 in the client panel
    _, y80 = client_ax.transData.transform((10, 80))
    row = int(img.shape[0] - y80)
    (px, _) = client_ax.transData.transform((10, 0))
    assert blue[row - 3:row + 4, int(px)].any()
    assert client_ax.get_xlabel() == "" and therapist_ax.get_xlabel() == "media time (mm:ss)"
    labels = [t.get_text() for t in client_ax.get_yticklabels()]
    assert labels == ["hindering 0", "neutral 50", "helpful 100"]
    fig.canvas.draw()
    assert [t.get_text() for t in therapist_ax.get_xticklabels()] == [
        "00:00", "00:10", "00:20", "00:30", "00:40", "00:50", "01:00"]


def test_segments_are_shaded(result):
    res, _ = result
    client = res.raters[0]
    top = next(s for s in client.segments if s.kind == "top")
    fig = time_course(res)
    img = pixels(fig)
    ax = fig.axes[1]
    green = near(img, "#C6E9DF", tol=45)  # TOP_COLOR at alpha 0.22 on white
    bottom = next(s for s in client.segments if s.kind == "bottom")
    mid = (top.start_s + top.end_s) / 2
    assert column_share(img, green, ax, mid) > 0.8  # shaded over the whole height
    outside = next(x for x in np.arange(0.5, 60, 1.0) if not any(
        s.start_s <= x <= s.end_s for s in client.segments))
    assert column_share(img, green, ax, outside) < 0.05
    orange = near(img, "#F8E4C2", tol=45)  # BOTTOM_COLOR at alpha 0.22 on white
    assert column_share(img, orange, ax, (bottom.start_s + bottom.end_s) / 2) > 0.8


def test_overview_and_files(result):
    res, d = result
    fig = overview(res)
    w_in, h_in = fig.get_size_inches()
    assert (w_in, h_in) == pytest.approx((180 * MM, 260 * MM))
    written = write_plots([res], d / "fig")
    assert sorted(p.name for p in written) == ["D9-overview.png", "D9-overview.svg",
                                               "D9.png", "D9.svg"]
    svg = (d / "fig" / "D9.svg").read_text()
    assert "helpful 100" in svg and "00:30" in svg  # text stays text (editable in print)
    assert (d / "fig" / "D9.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_a_flat_rater_leaves_undefined_read_as_a_dash_never_nan(result):
    """An audit (2026-12-05): a rater who never moved gave 'Pearson r nan [nan, nan]' and
    'best lag +nan s' on the overview, where the report writes '-'."""
    from matplotlib.text import Text

    res, _ = result  # both raters hold one value: r, rho, ICC and the lag are undefined
    text = "\n".join(t.get_text() for t in overview(res).findobj(Text))
    assert "Pearson r - [-, -], p -" in text
    assert "best lag - s" in text
    assert "nan" not in text.lower()


def test_a_recording_without_a_player_is_plotted_on_run_time_and_says_so(tmp_path):
    """An audit (2026-12-05): figures of a run-time recording labelled the x axis 'media
    time', where analysis.md says every output says which time it is on."""
    from matplotlib.text import Text

    from ratedial.analysis.synth import NoPlayer

    path = tmp_path / "r.ratedial"
    write_recording(path, [SynthRater(label="client", curve=constant(60),
                                      script=(NoPlayer(seconds=20),))], rate_hz=50)
    (g,) = group_series(load([path]))
    res = analyse_group(g, AnalysisOptions(segments=SegmentOptions(k=1, window_s=5),
                                           replicates=100))
    text = [t.get_text() for t in time_course(res).findobj(Text)]
    assert "run time (mm:ss)" in text and "media time (mm:ss)" not in text
