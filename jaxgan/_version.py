"""The version of jaxgan: the one place it is written (packaging reads it from here)."""

__version__ = '0.2.0'
