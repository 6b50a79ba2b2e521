"""Safety-cost ledger entries for closed permits.

Each cost line is its own entry with a key stable across runs, so the ERP outbox can
post it exactly once however often the permit is re-read.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

from hub.logic.rules import CostRules
from hub.model import Permit, SafetyCostEntry

CENT = Decimal("0.01")
# Never change: the ERP drops repeated message UUIDs, and these are derived from it.
_MESSAGE_NAMESPACE = uuid.UUID("33c27e4e-6bbc-4cc6-9ce3-95aa6689022b")


class CostError(ValueError):
    """A closed permit that cannot be costed; it must not be posted with a guessed account."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def _hours(value: Decimal) -> str:
    return format(value.quantize(CENT, ROUND_HALF_UP).normalize(), "f")


def _lines(permit: Permit, rules: CostRules) -> list[tuple[str, Decimal, str]]:
    """(line, unrounded amount, detail) for each cost that applies."""
    lines = []
    if permit.work_hours:
        rate = rules.labour_rate_per_hour
        lines.append(("labour", permit.work_hours * rate, f"{_hours(permit.work_hours)}h × {rate:.2f}"))
    if permit.guardian_arrived_at is not None and permit.closed_at is not None:
        seconds = Decimal(int((permit.closed_at - permit.guardian_arrived_at).total_seconds()))
        if seconds > 0:
            rate = rules.guardian_rate_per_hour
            hours = seconds / 3600
            lines.append(("guardian", seconds * rate / 3600, f"{_hours(hours)}h × {rate:.2f}"))
    if permit.permit_type in rules.gas_test.permit_types:
        lines.append(("gas_test", rules.gas_test.amount, permit.permit_type))
    ppe = getattr(rules.ppe[permit.permit_type], permit.risk_level)
    lines.append(("ppe", ppe, f"{permit.permit_type} {permit.risk_level}"))
    return lines


def cost_entries(permit: Permit, rules: CostRules) -> list[SafetyCostEntry]:
    """Ledger entries for a closed permit; none for any other status.

    Lines that round to zero are left out: the ERP rejects non-positive amounts.
    """
    if permit.status != "closed":
        return []
    pid = permit.permit_id
    if permit.closed_at is None:
        raise CostError(f"permit {pid}: closed_at is missing, so there is no posting date", "closed_at")
    cost_center = rules.cost_centers.get(permit.site, {}).get(permit.area)
    if cost_center is None:
        raise CostError(
            f"permit {pid}: area {permit.area!r} at site {permit.site} has no cost center in costs.yaml",
            "area",
        )
    posting_date = permit.closed_at.astimezone(rules.plant_timezone).date()
    entries = []
    for line, raw, detail in _lines(permit, rules):
        amount = raw.quantize(CENT, ROUND_HALF_UP)
        if amount <= 0:
            continue
        entries.append(
            SafetyCostEntry(
                entry_key=f"{pid}/{line}",
                permit_id=pid,
                site=permit.site,
                cost_center=cost_center,
                gl_account=rules.gl_accounts[permit.permit_type],
                amount=amount,
                currency=rules.currency,
                posting_date=posting_date,
                description=f"{pid} 安全费用 {line} {detail}",
            )
        )
    return entries


def message_uuid(entry_key: str) -> uuid.UUID:
    """The ERP MessageHeader UUID for an entry: the same on every run and restart."""
    return uuid.uuid5(_MESSAGE_NAMESPACE, entry_key)
