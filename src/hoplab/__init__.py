"""hoplab: a small internet on one machine, observable hop by hop."""

__version__ = "0.1.0"
