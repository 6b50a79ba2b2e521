"""No permit outside the gate: the PTW's permits of sites the hub is not configured for.

Each configured site's run pulls and gates its own permits. One more pull lists the changed
permits of every other site (`exclude_sites`), so no permit is pulled twice: a gated one is
blocked with SITE_NOT_CONFIGURED, unless its site is one the group deliberately leaves to
another hub (`HUB_SITES_LEFT_TO_OTHERS`); those are counted, never decided.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from hub.logic.gate import is_gated
from hub.logic.rules import GateRules
from hub.model import Permit
from hub.steps.ptw import CURSOR

OTHER_SITES_CURSOR = f"{CURSOR}.__other_sites__"


@dataclass
class SiteCoverage:
    """Gated permits at sites the hub does not gate, by site, and configured sites nobody knows."""

    ungated: dict[str, list[str]] = field(default_factory=dict)
    left_to_others: dict[str, int] = field(default_factory=dict)
    unknown_sites: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = [
            f"site {site} is not configured (HUB_SITES): {len(ids)} gated permit(s) blocked as SITE_NOT_CONFIGURED: "
            + ", ".join(ids[:10])
            for site, ids in sorted(self.ungated.items())
        ]
        out += [f"site {site} is unknown to the PTW and the EAM (check HUB_SITES)" for site in self.unknown_sites]
        return out


def other_site_permits(hub_store, configured: Collection[str], rules: GateRules) -> list[Permit]:
    """Gated permits of every site outside `configured`."""
    permits = hub_store.load_permits(statuses=rules.gated_statuses, sites_not_in=configured)
    return [p for p in permits if is_gated(p.permit_type, p.status, rules)]


def site_coverage(
    hub_store,
    configured: Collection[str],
    left_to_others: Collection[str],
    rules: GateRules,
    synced: Collection[str] | None = None,
) -> SiteCoverage:
    """What is outside the gate; only the `synced` sites (default: all configured) are asked
    whether anyone knows them, since a site not synced yet holds nothing."""
    coverage = SiteCoverage()
    ungated: dict[str, list[str]] = defaultdict(list)
    left: dict[str, int] = defaultdict(int)
    for permit in other_site_permits(hub_store, configured, rules):
        if permit.site in left_to_others:
            left[permit.site] += 1
        else:
            ungated[permit.site].append(permit.permit_id)
    coverage.ungated, coverage.left_to_others = dict(ungated), dict(left)
    asked = configured if synced is None else synced
    coverage.unknown_sites = sorted(site for site, held in hub_store.site_footprint(asked).items() if held == (0, 0))
    return coverage
