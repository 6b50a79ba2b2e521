"""Rule configuration for the gate and the safety-cost ledger.

Rules live in YAML so that safety and finance can change a threshold, a rate or a
gated permit type without a code change; every decision records the rule version.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.model import PERMIT_TYPES, MaintenanceKind, PermitStatus, PermitType
from hub.yamlfile import load_validated

RULES_DIR = Path(__file__).parents[1] / "rules"

# A zero rate is allowed and turns its cost line off; a negative one is a typo.
Money = Annotated[Decimal, Field(ge=0, decimal_places=2)]
Code = Annotated[str, Field(min_length=1)]


class _Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GateRules(_Rules):
    version: Code
    gated_permit_types: frozenset[PermitType] = frozenset({"work_at_height"})
    gated_statuses: frozenset[PermitStatus] = frozenset({"submitted", "approved", "active"})
    max_eam_data_age: timedelta
    counted_work_order_kinds: frozenset[MaintenanceKind] = frozenset(
        {"preventive", "corrective", "inspection", "overhaul"}
    )

    @field_validator("max_eam_data_age")
    @classmethod
    def _positive_age(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. PT24H")
        return value


class GasTest(_Rules):
    permit_types: frozenset[PermitType]
    amount: Money


class PpeRates(_Rules):
    red: Money
    orange: Money
    yellow: Money


class CostRules(_Rules):
    version: Code
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    # Posting dates are plant-local: a permit closed at 01:30 Shanghai time belongs to that day.
    plant_timezone: ZoneInfo = ZoneInfo("Asia/Shanghai")
    labour_rate_per_hour: Money
    guardian_rate_per_hour: Money
    gas_test: GasTest
    ppe: dict[PermitType, PpeRates]
    cost_centers: dict[Code, dict[Code, Code]]
    gl_accounts: dict[PermitType, Code]

    @field_validator("ppe", "gl_accounts")
    @classmethod
    def _every_permit_type(cls, value: dict) -> dict:
        """A closed permit of a type without a rate or account could not be posted at all."""
        missing = [t for t in PERMIT_TYPES if t not in value]
        if missing:
            raise ValueError(f"every permit type needs an entry; missing: {', '.join(missing)}")
        return value


def load_gate_rules(path: Path | None = None) -> GateRules:
    return load_validated(path or RULES_DIR / "gate.yaml", GateRules)


def load_cost_rules(path: Path | None = None) -> CostRules:
    return load_validated(path or RULES_DIR / "costs.yaml", CostRules)
