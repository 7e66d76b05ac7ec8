"""Custom-rule conditions: the Cloudflare Rules language subset for DNS-only load balancers
(Cloudflare docs: Load Balancing › Expressions; Load Balancing › Supported fields and operators),
plus documented lbdns extensions (docs/rules.md).

Pipeline: :mod:`~lbdns.rules.lexer` → :mod:`~lbdns.rules.parser` (AST) →
:func:`~lbdns.rules.compiler.check` (types) → :func:`~lbdns.rules.compiler.build` (closures).
Pure code: no I/O, no clock, no randomness, no module-level state: run-time evaluation errors
are counted into a counter the caller owns (:func:`compile_counted`).

Typical use::

    cond = compile_condition('ip.src in {0.0.0.0/1} and dns.qry.type == 1')  # RuleError if bad
    if cond.evaluate(RuleFields(...)): ...
"""

from collections.abc import Callable, MutableMapping

from lbdns.errors import RuleError
from lbdns.rules.compiler import MAX_CONDITION_LENGTH, CompiledCondition, compile_condition
from lbdns.rules.fields import ECS_DEPENDENT_FIELDS, FIELDS, FieldSpec, FieldType, RuleFields
from lbdns.rules.patterns import MAX_REGEX_LENGTH


def count_runtime_error(errors: MutableMapping[str, int], text: str) -> Callable[[BaseException], None]:
    """An ``on_error`` callback for :func:`compile_condition` adding 1 to ``errors[text]`` for each
    failed evaluation of the condition ``text`` (a failing rule counts as not matching,
    docs/architecture.md › Failure containment). ``errors`` is owned by the caller (the server
    exports it as ``lbdns_rule_runtime_errors``). Never raises."""

    def record(_exc: BaseException) -> None:
        errors[text] = errors.get(text, 0) + 1

    return record


def compile_counted(text: str, errors: MutableMapping[str, int] | None) -> CompiledCondition:
    """:func:`compile_condition` with the run-time errors of ``text`` counted into
    ``errors[text]`` (None: not counted). Raises RuleError like :func:`compile_condition`."""
    return compile_condition(text, on_error=None if errors is None else count_runtime_error(errors, text))


__all__ = [
    "ECS_DEPENDENT_FIELDS",
    "FIELDS",
    "MAX_CONDITION_LENGTH",
    "MAX_REGEX_LENGTH",
    "CompiledCondition",
    "FieldSpec",
    "FieldType",
    "RuleError",
    "RuleFields",
    "compile_condition",
    "compile_counted",
    "count_runtime_error",
]
