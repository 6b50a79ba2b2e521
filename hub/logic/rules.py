"""Rule configuration for the gate and the safety-cost ledger.

Rules live in YAML so that safety and finance can change a threshold, a rate or a
gated permit type without a code change; every decision records the rule version.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from hub.model import PERMIT_TYPES, MaintenanceKind, PermitStatus, PermitType
from hub.yamlfile import load_validated

RULES_DIR = Path(__file__).parents[1] / "rules"

# A zero rate is allowed and turns its cost line off; a negative one is a typo.
Money = Annotated[Decimal, Field(ge=0, decimal_places=2)]
Code = Annotated[str, Field(min_length=1)]


class _Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Above this, EAM data is too old to clear anyone for work, whatever a rule file says.
MAX_EAM_DATA_AGE_CEILING = timedelta(hours=24)


def _canonical_status(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
        raise ValueError(
            "use the canonical equipment status the EAM mapping writes: lower case, words joined by _ "
            "(operating, not_ready, decommissioned)"
        )
    return value


Status = Annotated[str, AfterValidator(_canonical_status)]


class GateRules(_Rules):
    """What the gate holds and when it trusts EAM data.

    A rule file cannot switch safety off by accident: an empty list of gated permit types,
    gated statuses, counted work-order kinds or in-service equipment statuses, or a data age
    above 24 h, is refused unless the file says why in ``gate_disabled_reason``.
    """

    version: Code
    # Declared before the checked fields: their validators read it from the values so far.
    gate_disabled_reason: str | None = None
    gated_permit_types: frozenset[PermitType] = frozenset({"work_at_height"})
    gated_statuses: frozenset[PermitStatus] = frozenset({"submitted", "approved", "active"})
    max_eam_data_age: timedelta
    counted_work_order_kinds: frozenset[MaintenanceKind] = frozenset(
        {"preventive", "corrective", "inspection", "overhaul"}
    )
    # Canonical equipment statuses (as the EAM mapping writes them) in which equipment may be worked on.
    equipment_statuses_in_service: frozenset[Status] = frozenset({"operating"})
    # The gate-check service asks the EAM again for a device whose last answer is older than this.
    decision_data_age: timedelta = timedelta(seconds=60)

    @property
    def disabled(self) -> bool:
        return self.gate_disabled_reason is not None

    def counts(self, kind: MaintenanceKind) -> bool:
        """Whether an open work order of this kind blocks. Emergency work is corrective work that
        could not wait, so it counts wherever corrective work does: a rule file written before the
        kind existed keeps blocking on it."""
        return kind in self.counted_work_order_kinds or (
            kind == "emergency" and "corrective" in self.counted_work_order_kinds
        )

    @field_validator("gate_disabled_reason")
    @classmethod
    def _reason_given(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("say why the gate is off (e.g. \"commissioning\"), or remove the key to keep it on")
        return value.strip() if value is not None else None

    @field_validator(
        "gated_permit_types", "gated_statuses", "counted_work_order_kinds", "equipment_statuses_in_service"
    )
    @classmethod
    def _not_empty(cls, value: frozenset[str], info: ValidationInfo) -> frozenset[str]:
        if not value and not _gate_disabled(info):
            raise ValueError(
                "must not be empty: an empty list switches this check off; "
                "to switch the gate off, state gate_disabled_reason"
            )
        return value

    @field_validator("max_eam_data_age")
    @classmethod
    def _positive_age(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. PT15M")
        if value > MAX_EAM_DATA_AGE_CEILING and not _gate_disabled(info):
            raise ValueError(
                "must be at most PT24H: older EAM data cannot clear equipment; "
                "to switch the gate off, state gate_disabled_reason"
            )
        return value

    @field_validator("decision_data_age")
    @classmethod
    def _decision_age(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. PT60S")
        most = info.data.get("max_eam_data_age")
        if most is not None and value > most:
            raise ValueError("must be at most max_eam_data_age: the gate-check service refreshes data before it is stale")
        return value


def _gate_disabled(info: ValidationInfo) -> bool:
    """Whether gate_disabled_reason validated and is set; a broken reason keeps every check on."""
    return info.data.get("gate_disabled_reason") is not None


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
