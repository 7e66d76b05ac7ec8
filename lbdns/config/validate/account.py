"""The account-level objects of every file, by id: monitors, monitor groups and pools (read
in file order, so the first definition of an id wins)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lbdns.config.model import Pool
from lbdns.config.source import SourceFile
from lbdns.config.validate.issues import Collector, Placed
from lbdns.config.validate.monitor import read_monitors
from lbdns.config.validate.pool import read_pools


@dataclass(slots=True)
class Account:
    """Placed objects by id (``Placed.obj`` is None for a monitor or group that failed
    validation but has an id); ``pool_names`` maps pool names to the same entries;
    ``raw_pool_names`` holds the name and id of every pool entry, valid or not."""

    monitors: dict[str, Placed] = field(default_factory=dict)
    groups: dict[str, Placed] = field(default_factory=dict)
    pools: dict[str, Placed] = field(default_factory=dict)
    pool_names: dict[str, Placed] = field(default_factory=dict)
    raw_pool_names: set[str] = field(default_factory=set)

    def valid_pools(self) -> dict[str, Pool]:
        """The valid pools by id."""
        return {k: p.obj for k, p in self.pools.items()}

    def known_pools(self) -> dict[str, Pool | None]:
        """Every name a reference may use: valid pools by id, and every pool entry's name or
        id (None when that pool failed validation: its own errors are reported)."""
        return {**{n: None for n in self.raw_pool_names}, **self.valid_pools()}


def read_account(col: Collector, sources: list[SourceFile]) -> Account:
    """Read the monitors, monitor groups and pools of every file."""
    account = Account()
    for src in sources:
        read_monitors(col, src, account.monitors, account.groups)
        read_pools(col, src, account.pools, account.pool_names, account.raw_pool_names)
    return account
