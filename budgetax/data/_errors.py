"""The errors of :mod:`budgetax.data`: each message names the path and says what to do.

They derive from the built-in errors the ``budgetax`` command prints as one
``error:`` line (``FileNotFoundError`` and ``ValueError``), so a bad data dir or a
damaged dataset never ends in a traceback there.
"""

from __future__ import annotations


class DatasetNotPreparedError(FileNotFoundError):
    """A TFDS dataset is not prepared (in array_record format) under the data dir."""


class DatasetCorruptError(ValueError):
    """A prepared dataset fails verification (missing, truncated or unreadable files).

    Embedded datasets are rebuilt instead by :func:`budgetax.data.load`; this is
    raised for ``tfds:`` datasets, which cannot be rebuilt without a network, and by
    :func:`budgetax.data.verify`.
    """


class DataDirError(ValueError):
    """The data dir cannot be used: it is a file, or it cannot be created or written."""
