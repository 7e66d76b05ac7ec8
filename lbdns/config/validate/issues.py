"""Collecting located issues: the :class:`Collector` every validator writes to, and the
translation of pydantic's structural errors into issue codes and messages.

Every problem becomes an :class:`lbdns.errors.Issue` located at ``file:line:col`` with its
key path (``load_balancers.www.default_pools[1]``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lbdns.config.model import Monitor, Pool
from lbdns.config.source import PathKey, SourceFile
from lbdns.errors import Issue

# pydantic field name → issue code for structural errors on that field
_FIELD_CODES: dict[str, str] = {
    "weight": "E-WEIGHT", "default_weight": "E-WEIGHT", "pool_weights": "E-WEIGHT",
    "default_percent": "E-SHED", "session_percent": "E-SHED", "default_policy": "E-SHED",
    "session_policy": "E-SHED", "latitude": "E-COORD", "longitude": "E-COORD",
    "ttl": "E-TTL", "session_affinity": "E-SA", "minimum_origins": "E-THRESH",
    "address": "E-ADDRESS", "Host": "E-VALIDATION", "persistence_key": "E-PERSIST",
}

M = TypeVar("M", bound=BaseModel)


@dataclass(slots=True)
class Collector:
    """Accumulates issues while walking all files (errors and warnings, in the order found)."""

    issues: list[Issue] = field(default_factory=list)

    def add(self, src: SourceFile, path: PathKey, code: str, message: str, *, warning: bool = False) -> None:
        """Record one issue at ``path`` of ``src``."""
        self.issues.append(src.issue(path, code, message, warning=warning))

    def model(self, cls: type[M], src: SourceFile, path: PathKey, data: Any, *, partial: bool = False) -> M | None:
        """Validate ``data`` (found at ``path``) as ``cls``; record located errors; None on failure.

        With ``partial``, an object whose errors all sit in optional top-level fields is
        validated again without those fields and returned, so its other fields still get the
        semantic checks (every problem reported at once); the errors already recorded keep
        the configuration from loading.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            bad: set[str] = set()
            for err in exc.errors():
                loc = (*path, *err["loc"])
                self.add(src, loc, _code_for(cls, err, loc), _message_for(cls, err))
                if err["loc"] and isinstance(err["loc"][0], str):
                    bad.add(err["loc"][0])
            if not partial or not isinstance(data, dict) or not bad:
                return None
            required = {n for n, f in cls.model_fields.items() if f.is_required()}
            if bad & required:
                return None
            try:
                return cls.model_validate({k: v for k, v in data.items() if k not in bad})
            except ValidationError:
                return None


@dataclass(slots=True)
class Placed:
    """A validated object (None when it failed validation) with the file and path it came from."""

    src: SourceFile
    path: PathKey
    obj: Any


def hint(value: str, allowed: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest allowed value, or ``""``."""
    m = difflib.get_close_matches(value, list(allowed), n=1, cutoff=0.5)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _code_for(cls: type[BaseModel], err: Any, loc: PathKey) -> str:
    etype = str(err["type"])
    if etype.startswith(("E-", "W-")):
        return etype
    if etype == "extra_forbidden":
        return "E-HEADER" if "header" in loc and cls is Pool else "E-FIELD"
    if cls is Monitor:
        return "E-MON"
    for part in reversed(loc):
        if isinstance(part, str) and part in _FIELD_CODES:
            return _FIELD_CODES[part]
    if etype == "missing":
        return "E-FIELD"
    return "E-TYPE"


def _model_fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model at ``loc`` (for "did you mean" hints)."""
    current: Any = cls
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        current = _unwrap_model(ann)
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _unwrap_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _message_for(cls: type[BaseModel], err: Any) -> str:
    etype = str(err["type"])
    loc = tuple(err["loc"])
    if etype == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = _model_fields_at(cls, loc)
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if key == "regions_pool":
            close = ["region_pools"]
        text = f"unknown field {key!r}"
        if close:
            return f"{text} (did you mean {close[0]!r}?)"
        return f"{text} (allowed: {', '.join(allowed)})" if allowed else text
    if etype == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    if etype.startswith(("E-", "W-")):
        return msg
    if "input" in err and not isinstance(err["input"], dict | list):
        msg = f"{msg} (got {err['input']!r})"
    return msg
