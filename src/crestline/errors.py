"""crestline's exceptions. Pure Python: they import without the compiled core."""


class CrestlineError(Exception):
    """Base of every error crestline raises on purpose."""


class ConfigError(CrestlineError, ValueError):
    """The caller's mistake, found before any load is sent. The message names the fix."""
