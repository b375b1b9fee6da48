"""Small validators for bench configs: each raises :class:`expunge.config.ConfigError` naming the key path."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from ..config import ConfigError


@contextmanager
def at(path: str) -> Iterator[None]:
    """Re-raise a ConfigError from a nested section with its path under ``path`` (``data.x`` -> ``data[1].x``)."""
    try:
        yield
    except ConfigError as e:
        message = str(e).split(": ", 1)[1] if ": " in str(e) else str(e)
        head, _, rest = e.path.partition(".")
        raise ConfigError(f"{path}.{rest}" if rest else path, message) from None


def check_int(value: Any, path: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(path, f"expected an integer >= {low}; got {value!r}")
    return value


def check_mapping(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected a mapping; got {type(value).__name__} {value!r}")
    return value


def check_fraction(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(path, f"expected a number strictly between 0 and 1; got {value!r}")
