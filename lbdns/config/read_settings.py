"""Read ``lbdns.yaml`` into :class:`~lbdns.config.settings.ServerSettings` (the loader; the
models live in :mod:`lbdns.config.settings`)."""

from __future__ import annotations

from pathlib import Path

from lbdns.config.settings import ServerSettings
from lbdns.config.source import load_yaml
from lbdns.errors import ConfigError, Issue, Location


def load_settings(path: Path | None) -> ServerSettings:
    """Load ``lbdns.yaml`` (or defaults when ``path`` is None or missing).

    Raises :class:`ConfigError` with located issues when the file is invalid.
    """
    if path is None or not path.exists():
        return ServerSettings()
    src, issues = load_yaml(path)
    if src is None:
        raise ConfigError(issues)
    from pydantic import ValidationError

    try:
        return ServerSettings.model_validate(src.data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            issues.append(src.issue(loc, "E-SETTINGS", err["msg"]))
        raise ConfigError(issues) from None
    except Exception as exc:  # pragma: no cover - defensive
        raise ConfigError([Issue(Location(str(path)), "", "E-SETTINGS", str(exc))]) from None
