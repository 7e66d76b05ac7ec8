"""Custom load balancing rules of one load balancer: each condition compiled (E-RULE-EXPR and
the compiler's warnings), each rule's overrides checked like the load balancer's own fields.

Sources (Cloudflare docs, Load Balancing): Custom load balancing rules (conditions in the
Rules language, overrides, fixed responses; rules are not supported with geo steering;
Availability: one rule without Enterprise); Load Balancer Details [API] ``rules[].overrides``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from lbdns.config.model import STEERING_POLICIES, LoadBalancer, Rule, RuleOverrides
from lbdns.config.settings import ServerSettings
from lbdns.config.source import PathKey
from lbdns.config.validate import plan
from lbdns.config.validate.references import RefChecker

CompileRule = Callable[[str], Any]
"""Rule condition text → compiled condition (with ``.warnings``); raises RuleError."""


def check_rules(refs: RefChecker, path: PathKey, lb: LoadBalancer, resolved: str, settings: ServerSettings,
                compile_rule: CompileRule) -> list[Any]:
    """Check the rules of ``lb`` (at ``path``; ``resolved`` is its steering policy after
    resolution); returns the compiled condition per rule in array order (None where the
    condition failed to compile)."""
    col, src = refs.col, refs.src
    plan.check_rule_count(col, src, path, lb, settings)
    if resolved == "geo" and any(not r.disabled for r in lb.rules):
        col.add(src, (*path, "rules"), "W-RULES-GEO",
                "custom rules are incompatible with geo steering in Cloudflare; lbdns still evaluates them",
                warning=True)
    compiled: list[Any] = []
    for i, rule in enumerate(lb.rules):
        rpath: PathKey = (*path, "rules", i)
        compiled.append(_compile(refs, rpath, rule, compile_rule))
        _check_overrides(refs, (*rpath, "overrides"), rule.overrides, resolved, settings)
        if rule.fixed_response is not None:
            col.add(src, (*rpath, "fixed_response"), "W-FIXED-RESPONSE",
                    "fixed_response cannot be sent in DNS; the rule's overrides apply and rule evaluation stops",
                    warning=True)
    return compiled


def _compile(refs: RefChecker, rpath: PathKey, rule: Rule, compile_rule: CompileRule) -> Any:
    """The compiled condition of one rule (its warnings recorded), or None (E-RULE-EXPR)."""
    try:
        cond = compile_rule(rule.condition)
        for code, message, column in getattr(cond, "warnings", ()):
            refs.col.add(refs.src, (*rpath, "condition"), code, f"column {column}: {message}", warning=True)
    except Exception as exc:  # RuleError
        column = getattr(exc, "column", 0)
        message = getattr(exc, "message", str(exc))
        refs.col.add(refs.src, (*rpath, "condition"), "E-RULE-EXPR", f"column {column}: {message}")
        return None
    return cond


def _check_overrides(refs: RefChecker, opath: PathKey, ov: RuleOverrides, resolved: str,
                     settings: ServerSettings) -> None:
    col, src = refs.col, refs.src
    if ov.default_pools is not None:
        refs.check_list((*opath, "default_pools"), ov.default_pools)
    refs.override_fallback(opath, ov.fallback_pool)
    refs.check_maps(opath, ov.region_pools or {}, ov.country_pools or {}, ov.pop_pools or {}, settings)
    if ov.steering_policy is not None:
        if ov.steering_policy not in STEERING_POLICIES:
            why = " (did you mean 'random'?)" if ov.steering_policy == "random_steering" else ""
            col.add(src, (*opath, "steering_policy"), "E-STEERING",
                    f"unknown steering_policy {ov.steering_policy!r}{why}")
        elif ov.steering_policy == "geo" and resolved != "geo":
            col.add(src, (*opath, "steering_policy"), "W-RULES-GEO",
                    "rule overrides steering to geo, which Cloudflare does not support with rules", warning=True)
    if ov.ttl is not None and not 1 <= ov.ttl <= 86400:
        col.add(src, (*opath, "ttl"), "E-TTL", f"ttl {ov.ttl} is out of range (1–86400)")
    if ov.session_affinity or ov.session_affinity_ttl or ov.session_affinity_attributes:
        col.add(src, opath, "W-SA", "session affinity overrides are ignored in DNS-only mode", warning=True)


def compile_rule(text: str, errors: MutableMapping[str, int] | None = None) -> Any:
    """Compile one rule condition; its run-time errors are counted into ``errors[text]``, the
    caller's counter (None: not counted; :func:`lbdns.rules.compile_counted`). Raises RuleError on
    a bad condition."""
    from lbdns.rules import compile_counted

    return compile_counted(text, errors)
