"""Custom-rule conditions: the Cloudflare Rules language subset for DNS-only load balancers
(Cloudflare docs: Load Balancing › Expressions; Load Balancing › Supported fields and operators),
plus documented lbdns extensions (docs/rules.md).

Pipeline: :mod:`~lbdns.rules.lexer` → :mod:`~lbdns.rules.parser` (AST) →
:func:`~lbdns.rules.compiler.check` (types) → :func:`~lbdns.rules.compiler.build` (closures).
Pure code: no I/O, no clock, no randomness.

Typical use::

    cond = compile_condition('ip.src in {0.0.0.0/1} and dns.qry.type == 1')  # RuleError if bad
    if cond.evaluate(RuleFields(...)): ...
"""

from collections import Counter
from collections.abc import Callable

from lbdns.errors import RuleError
from lbdns.rules.compiler import MAX_CONDITION_LENGTH, CompiledCondition, compile_condition
from lbdns.rules.fields import ECS_DEPENDENT_FIELDS, FIELDS, FieldSpec, FieldType, RuleFields
from lbdns.rules.patterns import MAX_REGEX_LENGTH

RUNTIME_ERRORS: Counter[str] = Counter()
"""Run-time evaluation errors per condition text (a failing rule counts as not matching,
docs/architecture.md › Failure containment); exported as ``lbdns_rule_runtime_errors`` by the admin listener."""


def count_runtime_error(text: str) -> Callable[[BaseException], None]:
    """An ``on_error`` callback for :func:`compile_condition` counting into :data:`RUNTIME_ERRORS`."""

    def record(_exc: BaseException) -> None:
        RUNTIME_ERRORS[text] += 1

    return record


__all__ = [
    "ECS_DEPENDENT_FIELDS",
    "FIELDS",
    "MAX_CONDITION_LENGTH",
    "MAX_REGEX_LENGTH",
    "RUNTIME_ERRORS",
    "CompiledCondition",
    "FieldSpec",
    "FieldType",
    "RuleError",
    "RuleFields",
    "compile_condition",
    "count_runtime_error",
]
