"""The region-majority vote over vantages (lbdns.health.cluster; Cloudflare docs: Load
Balancing › Monitors › Health monitor regions)."""

from __future__ import annotations

from lbdns.health.cluster import VantageResult, aggregate, fresh_entries, region_rtt

REGIONS = ["ENAM", "WEU", "NEAS"]


def vr(vantage: str, region: str, passed: bool, at: float = 1000.0, rtt: float | None = 10.0,
       reason: str = "") -> VantageResult:
    return VantageResult(vantage, region, passed, rtt if passed else None, at,
                         reason or ("" if passed else "HTTP Timeout"))


def three(*passes: bool) -> dict[str, VantageResult]:
    return {v: vr(v, r, p) for v, r, p in zip(("iad", "fra", "nrt"), REGIONS, passes, strict=True)}


def test_one_region_of_three_down_passes_two_fail():
    agg = aggregate(REGIONS, three(True, True, False), local="nrt")
    assert agg is not None and agg.passed
    assert agg.voters == {"ENAM": (1, 1), "WEU": (1, 1), "NEAS": (0, 1)}
    agg = aggregate(REGIONS, three(True, False, False), local="iad")
    assert agg is not None and not agg.passed
    # the local vantage passed, but the vote failed: the reason is a failing vantage's
    assert agg.failure_reason == "HTTP Timeout" and agg.rtt_ms is None


def test_a_tie_fails_and_a_region_needs_a_strict_majority_of_its_vantages():
    two = {"iad": vr("iad", "ENAM", True), "nrt": vr("nrt", "NEAS", False)}
    assert not aggregate(REGIONS, two).passed  # type: ignore[union-attr]
    # ENAM: 1 of 2 pass (not healthy); WEU healthy; NEAS healthy → 2 of 3 regions
    res = {"iad": vr("iad", "ENAM", True), "iad2": vr("iad2", "ENAM", False),
           "fra": vr("fra", "WEU", True), "nrt": vr("nrt", "NEAS", True)}
    agg = aggregate(REGIONS, res)
    assert agg is not None and agg.passed and agg.voters["ENAM"] == (1, 2)


def test_unselected_regions_do_not_vote_and_none_means_all_data_centers():
    res = three(False, True, True)
    assert not aggregate(["ENAM"], res).passed  # type: ignore[union-attr]
    assert aggregate(None, res).passed  # type: ignore[union-attr]  # 2 of 3 data centers
    # no selected region has a vantage: every vantage votes as one group
    assert aggregate(["OC"], res).passed  # type: ignore[union-attr]
    assert aggregate(REGIONS, {}) is None


def test_one_vantage_is_its_own_result():
    agg = aggregate(REGIONS, {"iad": vr("iad", "ENAM", False)}, local="iad")
    assert agg is not None and not agg.passed and agg.voters == {"ENAM": (0, 1)}


def test_clock_skew_between_vantages_does_not_change_the_vote_or_freshness():
    base = three(True, True, False)
    skewed = dict(base)
    skewed["fra"] = vr("fra", "WEU", True, at=1000.0 + 3600.0)  # an hour ahead
    assert aggregate(REGIONS, base).passed == aggregate(REGIONS, skewed).passed  # type: ignore[union-attr]
    # freshness compares a vantage's results only with its own newest one
    assert fresh_entries({"a": 4600.0, "b": 4599.0}, 3.0) == {"a", "b"}
    assert fresh_entries({"a": 1000.0, "b": 990.0}, 3.0) == {"a"}
    assert fresh_entries({}, 3.0) == set()


def test_region_rtt_is_the_mean_of_the_regions_vantages():
    assert region_rtt([("ENAM", 10.0), ("ENAM", 20.0), ("WEU", 5.0), ("WEU", float("nan"))]) == {
        "ENAM": 15.0, "WEU": 5.0}
