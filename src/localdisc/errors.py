"""Exceptions with messages that name the offending file and the problem."""

from typing import Any


def shorten(value: Any, limit: int = 80) -> str:
    """A value for an error message, on one line of at most ``limit`` characters: an error
    never echoes a huge value (a pasted file, a long list)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LocaldiscError(Exception):
    """Base class: anything a user can fix by changing input or options."""


class DataError(LocaldiscError):
    """Unreadable, inconsistent or missing input data. The message names the file."""


class ConfigError(LocaldiscError):
    """Invalid option value or incompatible options/checkpoints."""


class TrainingError(LocaldiscError):
    """Training diverged (NaN/Inf loss) or cannot continue."""
