"""mutualrec: city-wide mutual recognition of medical exam and lab results."""

__version__ = "0.1.0"
