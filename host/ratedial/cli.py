"""The ``ratedial`` command. One handler per command; heavy parts are imported lazily.

Every :class:`~ratedial.errors.RatedialError` becomes a one-line message and an exit code;
nothing a user can cause ends in a traceback.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import RatedialError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ratedial")
def cli() -> None:
    """Moment-to-moment rating with a physical dial, synchronised to video."""


@cli.command()
@click.option("--seconds", type=click.FloatRange(min=1), default=20.0, show_default=True,
              help="How long to run.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seed of the simulated rater.")
def demo(seconds: float, seed: int) -> None:
    """Run a virtual dial and show its decoded stream live.

    The real firmware runs under the MicroPython interpreter with a simulated encoder and
    a simulated rater; this shows the rating, the sample rate and any missing samples.
    """
    from .demo import run_demo

    run_demo(seconds=seconds, seed=seed)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RatedialError as exc:
        click.echo(f"ratedial: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
