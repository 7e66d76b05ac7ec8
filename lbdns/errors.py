"""The exception root of lbdns and the located configuration issue.

Every user-facing error derives from :class:`LbdnsError`. Configuration problems are
collected as :class:`Issue` values (file, line, column, key path, code, message) and raised
together in one :class:`ConfigError`, so one run reports every problem (docs/configuration.md ›
Error and warning codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LbdnsError(Exception):
    """Root of every exception lbdns raises on purpose."""


class Severity(StrEnum):
    """Whether an :class:`Issue` rejects the configuration (``ERROR``) or is only logged."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a configuration file.

    ``file`` is the path as given to the loader; ``line`` and ``column`` are 1-based
    (0 when unknown, e.g. a file that could not be read at all).
    """

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True, slots=True)
class Issue:
    """One configuration problem.

    ``path`` is the key path inside the file (``load_balancers.www.default_pools[1]``, ``""``
    for the whole file); ``code`` is one of the codes listed in docs/configuration.md › Error
    and warning codes (``E-REF``, ``W-THRESH``…); ``message`` says what is wrong and, in
    parentheses, what is allowed.
    """

    location: Location
    path: str
    code: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.location}: {self.path}: " if self.path else f"{self.location}: "
        label = "" if self.severity is Severity.ERROR else "warning: "
        return f"{where}{label}{self.code}: {self.message}"

    @property
    def is_error(self) -> bool:
        """True when the issue rejects the configuration."""
        return self.severity is Severity.ERROR


class ConfigError(LbdnsError):
    """A configuration that cannot be loaded; ``issues`` holds every problem found (errors
    first, in file order), including the warnings found alongside."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        errors = [i for i in issues if i.is_error]
        super().__init__("\n".join(str(i) for i in errors) or "invalid configuration")


class FormError(LbdnsError):
    """A DNS message that cannot be parsed (RFC 1035 §4.1.1 FORMERR).

    ``answerable`` is True when the 12-byte header was read, so a FORMERR response can be
    sent; False means the packet must be dropped (nothing trustworthy to answer to).
    """

    def __init__(self, message: str, answerable: bool = True) -> None:
        super().__init__(message)
        self.answerable = answerable


class RuleError(LbdnsError):
    """A custom-rule expression that does not parse or type-check (``E-RULE-EXPR``; grammar:
    Cloudflare docs: Load Balancing › Expressions, and docs/rules.md). ``column`` is the 1-based
    column inside the expression text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        return f"column {self.column}: {self.message}"
