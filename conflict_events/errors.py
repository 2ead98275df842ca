"""Errors a person can act on: each names the file, the line and the field at fault."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file, optionally a 1-based line and a field name."""

    path: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        text = self.path
        if self.line is not None:
            text += f":{self.line}"
        if self.field is not None:
            text += f" [{self.field}]"
        return text


@dataclass(frozen=True)
class Issue:
    """One finding of a reader or validator. ``severity`` is ``error`` or ``warning``."""

    location: Location
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.location}: {self.message}"


class ConflictEventsError(Exception):
    """Base class of the errors this project raises on purpose (the CLI prints them without a traceback)."""


class ConfigError(ConflictEventsError):
    """A configuration file or override is invalid."""


class DataError(ConflictEventsError):
    """Input data is malformed. Carries every issue found, not only the first."""

    def __init__(self, issues: list[Issue] | Issue):
        self.issues = [issues] if isinstance(issues, Issue) else list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ModelError(ConflictEventsError):
    """A model cannot be found or loaded."""
