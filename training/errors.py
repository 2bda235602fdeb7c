"""Errors of the training stage.

Hierarchy::

    TrainingError
    ├── DataError            bad or missing input data (names file, column and row)
    │   └── FetchError       a dataset could not be fetched or failed its checksum
    └── ConfigError          an invalid training or data configuration
"""

from __future__ import annotations


class TrainingError(Exception):
    """Root of every error raised by ``training``."""


class DataError(TrainingError):
    """Input data is missing, malformed or empty.

    Example:
        >>> raise DataError("x.csv", "timestamp", 3, "expected a number, found 'abc'")
        Traceback (most recent call last):
        ...
        training.errors.DataError: x.csv: column 'timestamp', row 3: expected a number, found 'abc'
    """

    def __init__(
        self, file: str, column: str | None, row: int | None, problem: str
    ) -> None:
        self.file, self.column, self.row, self.problem = file, column, row, problem
        where = [file]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {problem}")


class FetchError(TrainingError):
    """A dataset download failed or its checksum did not match."""


class ConfigError(TrainingError):
    """A configuration value is out of range or inconsistent."""
