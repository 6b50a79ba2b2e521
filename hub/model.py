"""The hub's own vocabulary. Nothing here knows any vendor's field names.

Every timestamp is timezone-aware UTC: naive or non-UTC values are refused or
converted at construction, so logic never compares local and UTC times.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is timezone.utc:  # already UTC (every value the store reads back): nothing to convert
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    return value.astimezone(timezone.utc)


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]

PermitType = Literal["hot_work", "confined_space", "work_at_height", "lifting", "temporary_power"]
RiskLevel = Literal["red", "orange", "yellow"]
PermitStatus = Literal["submitted", "approved", "active", "suspended", "closed", "cancelled"]
PermitResult = Literal["completed", "aborted", "incident"]
# "emergency": corrective work that could not wait for planning (Maximo worktype EM).
MaintenanceKind = Literal["preventive", "corrective", "emergency", "inspection", "overhaul"]
# "unknown": what a flavor file that declares the input unavailable writes (never a guess); the gate blocks on it.
MaintenanceStatus = Literal["planned", "approved", "in_progress", "completed", "closed", "cancelled", "unknown"]
Isolation = Literal["none", "applied", "released", "unknown"]
Decision = Literal["allow", "block"]
ReasonCode = Literal[
    "DEVICE_UNKNOWN",
    "OPEN_WORK_ORDER",
    "ISOLATION_NOT_RELEASED",
    "INSPECTION_OVERDUE",
    "EAM_DATA_STALE",
    "EAM_UNAVAILABLE",
    "NO_DEVICE_LINKED",
    "EAM_RECORD_INVALID",
    "PERMIT_RECORD_INVALID",
    "EQUIPMENT_NOT_IN_SERVICE",
    "SITE_NOT_CONFIGURED",
    "EAM_REPLY_SUSPECT",
    "ISOLATION_UNKNOWN",
    "WORK_ORDER_STATUS_UNKNOWN",
    "EQUIPMENT_STATUS_UNKNOWN",
    "GATE_DISABLED",
    "EAM_UNREACHABLE",
    "GATE_ERROR",
]

PERMIT_TYPES: tuple[str, ...] = PermitType.__args__  # type: ignore[attr-defined]
#: Work-order kinds that record a failure of the equipment (what failure histories count).
FAILURE_KINDS = frozenset({"corrective", "emergency"})
LIVE_PERMIT_STATUSES = frozenset({"submitted", "approved", "active"})
FINISHED_MAINTENANCE_STATUSES = frozenset({"completed", "closed", "cancelled"})
#: The value of a gate input (isolation, work-order or equipment status) the EAM cannot provide.
UNKNOWN = "unknown"


class Canonical(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Permit(Canonical):
    permit_id: str = Field(min_length=1)
    permit_type: PermitType
    risk_level: RiskLevel
    site: str = Field(min_length=1)
    area: str = Field(min_length=1)
    device_ids: tuple[str, ...] = ()
    material_names: tuple[str, ...] = ()
    applicant: str
    guardian: str | None = None
    planned_start: UtcDateTime
    planned_end: UtcDateTime
    status: PermitStatus
    submitted_at: UtcDateTime
    approved_at: UtcDateTime | None = None
    guardian_arrived_at: UtcDateTime | None = None
    closed_at: UtcDateTime | None = None
    result: PermitResult | None = None
    work_hours: Decimal | None = Field(default=None, ge=0)
    updated_at: UtcDateTime


class Equipment(Canonical):
    """One asset of the EAM. Its identity is (site, device_id): two sites may reuse a number."""

    device_id: str = Field(min_length=1)
    site: str = Field(min_length=1)
    name: str
    area: str | None = None
    status: str
    next_inspection_due: UtcDateTime | None = None
    # When the EAM last refreshed this device's data; None means "as of the fetch".
    data_as_of: UtcDateTime | None = None


class MaintenanceRecord(Canonical):
    """A work order; identity (site, record_id), on the device (site, device_id)."""

    record_id: str = Field(min_length=1)
    site: str = Field(min_length=1)
    device_id: str = Field(min_length=1)
    kind: MaintenanceKind
    status: MaintenanceStatus
    window_start: UtcDateTime | None = None
    window_end: UtcDateTime | None = None
    isolation: Isolation = "none"
    # When the work was reported and actually finished: the dates failure histories need.
    reported_at: UtcDateTime | None = None
    completed_at: UtcDateTime | None = None
    updated_at: UtcDateTime


class ProcessParameter(Canonical):
    material_name: str = Field(min_length=1)
    parameter_id: str = Field(min_length=1)
    value: str
    data_type: str
    unit: str | None = None
    updated_at: UtcDateTime | None = None


class QualityRate(Canonical):
    """One workshop's defect rate for one month, from the MES; the workshop is the PTW permit's area."""

    site: str = Field(min_length=1)
    workshop: str = Field(min_length=1)
    month: date  # the first day of the month
    defect_rate: Decimal = Field(ge=0, le=1)
    units_inspected: int = Field(ge=0)
    updated_at: UtcDateTime | None = None

    @field_validator("month")
    @classmethod
    def _first_of_month(cls, value: date) -> date:
        if value.day != 1:
            raise ValueError("must be the first day of its month")
        return value


class SafetyCostEntry(Canonical):
    entry_key: str = Field(min_length=1)
    permit_id: str
    site: str
    cost_center: str
    gl_account: str
    amount: Decimal
    currency: str = Field(min_length=3, max_length=3)
    posting_date: date
    description: str


class ErpMessage(Canonical):
    """One line of the ERP's log about an entry: why it was refused, or that it posted."""

    text: str
    code: str | None = None


class ErpConfirmation(Canonical):
    """The ERP's answer to one posted entry, named by the entry's idempotency key.

    Severity 3 (error) means nothing was booked, whatever document number the reply carries.
    """

    message_uuid: str = Field(min_length=1)
    severity: int = Field(ge=1, le=4)
    accounting_document: str | None = None
    company_code: str | None = None
    fiscal_year: str | None = None
    messages: tuple[ErpMessage, ...] = ()

    @property
    def posted(self) -> bool:
        return self.severity < 3 and bool(self.accounting_document)

    @property
    def refusal(self) -> str:
        """The ERP's own words for a refusal, never empty."""
        return "; ".join(m.text for m in self.messages if m.text.strip()) or "refused without a message"


class ErpDocument(Canonical):
    """One document as the ERP booked it: what the ledger listing and a by-reference answer show."""

    accounting_document: str = Field(min_length=1)
    company_code: str
    fiscal_year: str
    reference: str
    message_uuid: str | None = None
    gl_account: str
    cost_center: str
    amount: Decimal
    currency: str


class Reason(Canonical):
    code: ReasonCode
    device_id: str | None = None
    message: str
    evidence: dict[str, str] = Field(default_factory=dict)


class GateDecision(Canonical):
    permit_id: str
    decision: Decision
    reasons: tuple[Reason, ...] = ()
    rule_version: str
    evaluated_at: UtcDateTime
    eam_data_as_of: UtcDateTime | None = None
