"""expected_codes grammar (SPEC.md R-MON-08; EX-42 last line)."""

from __future__ import annotations

import pytest

from lbdns.health.expected_codes import parse_expected_codes


@pytest.mark.parametrize(
    ("text", "status", "ok"),
    [
        ("200", 200, True),
        ("200", 201, False),
        ("200, 302", 302, True),  # EX-42: a 302 passes
        ("200, 302", 204, False),  # EX-42: a 204 fails
        ("3xx", 301, True),  # EX-42: 3xx with follow_redirects false, a 301 passes
        ("2xx", 204, True),
        ("2xx", 301, False),
        ("2XX", 299, True),  # case-insensitive
        ("2xx,301", 301, True),
        ("  200   302 ", 302, True),  # whitespace separators
        ("200,,302", 302, True),
        ("2xx\t5xx", 503, True),
        ("1xx", 100, True),
        ("599", 599, True),
    ],
)
def test_matches(text: str, status: int, ok: bool) -> None:
    assert parse_expected_codes(text).matches(status) is ok


@pytest.mark.parametrize(
    "text",
    ["", "   ", ",", "20", "2000", "600", "099", "6xx", "0xx", "2x", "2xxx", "abc", "200;302", "x2x",
     "200-299"],
)
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="expected_codes") as exc:
        parse_expected_codes(text)
    assert "100–599" in str(exc.value)


def test_invalid_message_names_token() -> None:
    with pytest.raises(ValueError, match=r"invalid token '6xx'"):
        parse_expected_codes("200, 6xx")


def test_str_round_trip() -> None:
    codes = parse_expected_codes("302 2xx 200")
    assert str(codes) == "2xx, 200, 302"
    assert parse_expected_codes(str(codes)) == codes
