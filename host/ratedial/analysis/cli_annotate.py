"""``ratedial annotate``: questionnaire scores and other metadata kept in a recording.

Only click and the standard library are imported here, so ``ratedial --help`` stays fast.
"""

from __future__ import annotations

import json

import click

from ..cli_types import HomePath


@click.command()
@click.argument("recording", type=HomePath(exists=True, dir_okay=False))
@click.argument("values", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--remove", multiple=True, metavar="KEY", help="Remove an annotation.")
def annotate(*, recording: str, values: tuple[str, ...], remove: tuple[str, ...]) -> None:
    """Attach questionnaire scores and other metadata to a recording.

    Example: ratedial annotate D07-client.ratedial wai=52 srs=34 session_rating=7.
    Numbers are stored as numbers; text is shown as typed. The values appear in the dyad table of
    'ratedial analyze --table' as <rater>_ann_<key>. Without KEY=VALUE, shows them.
    """
    from ..cli_types import check_text
    from .cli_options import say_unclean
    from .notes import annotate as do_annotate
    from .notes import parse_assignments
    from .read import read_recording

    for v in values:
        check_text(v, "KEY=VALUE")
    for k in remove:
        check_text(k, "--remove")
    if not values and not remove:
        rec = read_recording(recording)
        # as every reader does (an audit: annotate alone said nothing)
        say_unclean([recording] if "ended_wall_ns" not in rec.meta else [])
        click.echo(json.dumps(rec.annotations, indent=1, sort_keys=True, ensure_ascii=False))
        return
    result = do_annotate(recording, parse_assignments(values), remove)
    click.echo(json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False))
