"""ratedial: moment-to-moment rating with a physical dial, synchronised to video."""

__version__ = "0.1.0"
