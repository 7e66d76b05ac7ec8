"""The ``expected_codes`` grammar of HTTP/HTTPS monitors.

Cloudflare docs: Load Balancing › Manage monitors: codes are "listed individually (``200``,
``302``) or as a range" (``2xx``); the exact grammar is an lbdns decision. Tokens are separated by
commas and/or whitespace. A token is either a three-digit status code 100–599 (``"200"``) or a
class: one digit 1–5 followed by ``xx`` (``"2xx"``, case-insensitive). A response status matches
when it equals a listed code or its first digit equals a class digit.

Pure module: no I/O. The configuration validator calls :func:`parse_expected_codes` and turns a
:class:`ValueError` into an ``E-MON`` issue; the HTTP probe calls :meth:`ExpectedCodes.matches`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPLIT = re.compile(r"[,\s]+")
_CODE = re.compile(r"[1-5][0-9]{2}")
_CLASS = re.compile(r"[1-5]xx", re.IGNORECASE)

ALLOWED_TEXT = "three-digit codes 100–599 or classes 1xx–5xx, separated by commas or spaces"
"""Human-readable description of the grammar, used in error messages."""


@dataclass(frozen=True, slots=True)
class ExpectedCodes:
    """A parsed ``expected_codes`` value.

    ``codes`` holds the individual status codes, ``classes`` the first digits of the ``Nxx``
    tokens.
    """

    codes: frozenset[int]
    classes: frozenset[int]

    def matches(self, status: int) -> bool:
        """True when HTTP ``status`` is expected (equal to a code, or in a class)."""
        return status in self.codes or (status // 100) in self.classes

    def __str__(self) -> str:
        parts = [f"{c}xx" for c in sorted(self.classes)] + [str(c) for c in sorted(self.codes)]
        return ", ".join(parts)


def parse_expected_codes(text: str) -> ExpectedCodes:
    """Parse an ``expected_codes`` string.

    Takes the raw configuration string, e.g. ``"200"``, ``"200, 302"``, ``"2xx 301"``.
    Returns an :class:`ExpectedCodes` matcher.
    Raises :class:`ValueError` with a message naming the offending token and the allowed forms
    when the string is empty or contains an invalid token (the validator reports it as ``E-MON``).
    """
    tokens = [t for t in _SPLIT.split(text.strip()) if t]
    if not tokens:
        raise ValueError(f"expected_codes {text!r} is empty ({ALLOWED_TEXT})")
    codes: set[int] = set()
    classes: set[int] = set()
    for tok in tokens:
        if _CODE.fullmatch(tok):
            codes.add(int(tok))
        elif _CLASS.fullmatch(tok):
            classes.add(int(tok[0]))
        else:
            raise ValueError(
                f"expected_codes {text!r}: invalid token {tok!r} ({ALLOWED_TEXT})"
            )
    return ExpectedCodes(frozenset(codes), frozenset(classes))
