"""Exceptions with messages that name the offending file and the problem."""


class LocaldiscError(Exception):
    """Base class: anything a user can fix by changing input or options."""


class DataError(LocaldiscError):
    """Unreadable, inconsistent or missing input data. The message names the file."""


class ConfigError(LocaldiscError):
    """Invalid option value or incompatible options/checkpoints."""


class TrainingError(LocaldiscError):
    """Training diverged (NaN/Inf loss) or cannot continue."""
