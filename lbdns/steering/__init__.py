"""Steering: compiled LB plans, pool selection (§6) and endpoint selection (§7)."""
