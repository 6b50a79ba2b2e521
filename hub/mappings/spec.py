"""The shape of a mapping file, as pydantic models (structure only).

A mapping file is data, never code: it names vendor fields, canonical fields, value maps and
transforms from a fixed registry. This module checks the *structure* (keys, types); the engine
(`hub.mappings.engine`) checks the *meaning* (known record kinds, canonical fields that exist,
required fields mapped, known transforms) and points every problem at file:line:column.

Example (see the packaged ``*.yaml`` next to this module for complete files)::

    system: eam
    version: 1
    timezone: Asia/Shanghai            # zone of naive plant-local times
    inbound:                           # vendor record -> canonical record
      maintenance_record:              # canonical record kind
        key: wonum                     # vendor field naming a record in quarantine messages
        fields:                        # canonical field: how to fill it
          record_id: {from: wonum, transform: [id]}
          status:    {from: status_maxvalue, map: {WAPPR: planned, APPR: approved}}
          window_start: {from: schedstart, type: datetime, optional: true}
    outbound:                          # canonical record -> vendor body
      safety_cost_entry:
        fields:                        # vendor path (dots nest): how to fill it
          JournalEntry.Amount: {from: amount, type: decimal, places: 2}

The full language, with a worked example per feature, is in ``docs/mappings.md``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.connectors.endpoint import EndpointSpec
from hub.model import (
    Canonical,
    Equipment,
    ErpConfirmation,
    ErpDocument,
    GateDecision,
    MaintenanceRecord,
    Permit,
    ProcessParameter,
    QualityRate,
    SafetyCostEntry,
)

#: Canonical record kinds a mapping may name, and their models.
KINDS: dict[str, type[Canonical]] = {
    "permit": Permit,
    "equipment": Equipment,
    "maintenance_record": MaintenanceRecord,
    "process_parameter": ProcessParameter,
    "quality_rate": QualityRate,
    "safety_cost_entry": SafetyCostEntry,
    "gate_decision": GateDecision,
    "erp_confirmation": ErpConfirmation,
    "erp_document": ErpDocument,
}

#: Value types a field may declare. ``str`` is the default.
FieldType = Literal["str", "int", "decimal", "datetime", "date", "duration", "list", "object"]

#: What happens to a value a field's ``map`` does not list.
UnknownValue = Literal["quarantine", "default", "error"]


def _scalar_key(value: Any) -> Any:
    """YAML reads ``1: red`` with an integer key; value maps compare text, so make it text."""
    if isinstance(value, bool):
        return value  # left for pydantic to refuse: yes/no/true/false keys are almost always a typo
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _scalar_table(value: Any) -> Any:
    """A YAML table (value map, look-up rows) with its scalar keys and values as text."""
    if isinstance(value, dict):
        return {_scalar_key(k): _scalar_key(v) for k, v in value.items()}
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ConvertSpec(_Strict):
    """Convert a number to the hub's unit: from the unit in vendor field ``unit`` to ``to``.

    ``to`` is one unit, or a table choosing the unit by the value of canonical field ``by``
    (e.g. parameter_id); a record whose ``by`` value is not in the table is not converted.
    """

    unit: str = Field(min_length=1)
    to: str | dict[str, str]
    by: str | None = Field(default=None, min_length=1)
    decimals: int = Field(default=6, ge=0, le=12)

    @field_validator("to", mode="before")
    @classmethod
    def _table_keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_scalar_key(k): v for k, v in value.items()}
        return value


class TimeOfDaySpec(_Strict):
    """The vendor field holding the time of day that completes a date (SAP ChangedOn + ChangedAt)."""

    from_: str = Field(alias="from", min_length=1)
    format: str = Field(default="iso_duration", min_length=1)


class SourceChoice(_Strict):
    """One candidate of ``first``: a vendor path, taken only when its value has ``shape`` and
    (``when``) a plain field of the record mapped to the given canonical value: SAP's value
    field is chosen by the characteristic's data type, which another entity set carries."""

    from_: str = Field(alias="from", min_length=1)
    shape: Literal["text", "object", "list"] | None = None
    when: dict[str, str] | None = Field(default=None, min_length=1, max_length=1)

    @property
    def condition(self) -> tuple[str, str] | None:
        return next(iter(self.when.items())) if self.when else None


#: Reductions over a child list (``reduce.op``).
ReduceOp = Literal["any", "all", "count", "min", "max", "first"]


class ReduceSpec(_Strict):
    """One value from a child list of the vendor record: rows kept by ``where``/``unless``, then reduced.

    ``empty`` is required: the result when the list is missing, null or empty (and, for
    ``min``/``max``/``first``, when no row is kept), so an absent list never silently means
    "none". ``any``/``all`` give "true"/"false", ``count`` a number, ``min``/``max``/``first``
    the ``value`` field of a kept row (compared as the field's type).
    """

    over: str = Field(min_length=1)
    op: ReduceOp
    where: dict[str, Any] = Field(default_factory=dict)
    unless: dict[str, Any] = Field(default_factory=dict)
    value: str | None = Field(default=None, min_length=1)
    empty: Any  # required: what an empty or missing list means is the mapping's decision


class TableSpec(_Strict):
    """A look-up table: inline ``rows``, or rows a request of the endpoint brings (``operation``).

    A requested table's rows are vendor records; ``key`` and ``value`` name their fields, and
    the rows are fetched again once older than ``refresh`` (ISO 8601 duration).
    """

    rows: dict[str, str] | None = None
    operation: str | None = Field(default=None, min_length=1)
    key: str | None = Field(default=None, min_length=1)
    value: str | None = Field(default=None, min_length=1)
    refresh: str = "PT1H"

    @field_validator("rows", mode="before")
    @classmethod
    def _rows_as_text(cls, value: Any) -> Any:
        return _scalar_table(value)


class FieldSpec(_Strict):
    """How to fill one target field.

    Inbound the target is a canonical field and ``from`` a vendor path; outbound the target is a
    vendor path and ``from`` a canonical field. Steps, in order: read ``from`` (or ``concat``, or
    take ``const``), handle an empty value (``optional`` / ``default``), apply ``transform``, look
    the value up in ``map``, then parse (inbound) or render (outbound) by ``type``, then
    ``convert`` units.
    """

    from_: str | None = Field(default=None, alias="from", min_length=1)
    const: Any = None
    concat: list[str] | None = Field(default=None, min_length=2)
    separator: str = ""
    unit_of: str | None = Field(default=None, min_length=1)
    default: Any = None
    optional: bool = False
    map: dict[str, str] | None = None
    unknown: UnknownValue | None = None
    type: FieldType | None = None
    format: str | None = Field(default=None, min_length=1)
    time_of_day: TimeOfDaySpec | None = None
    places: int | None = Field(default=None, ge=0, le=12)
    transform: list[str] = Field(default_factory=list)
    split: str | None = Field(default=None, min_length=1)
    each: list[str] | None = None
    each_fields: dict[str, FieldSpec] | None = None
    convert: ConvertSpec | None = None
    first: list[str | SourceChoice] | None = Field(default=None, min_length=2)
    reduce: ReduceSpec | None = None
    unavailable: str | None = Field(default=None, min_length=1)  # why the vendor cannot provide it
    todo: str | None = Field(default=None, min_length=1)  # a draft's open question: refused until decided
    reason: str | None = Field(default=None, min_length=1)  # why a gate input may be a const or default
    lookup: str | None = Field(default=None, min_length=1)
    timezone: str | None = Field(default=None, min_length=1)  # zone of this field's naive local times
    items: list[dict[str, FieldSpec]] | None = Field(default=None, min_length=1)  # outbound: objects built from one record
    negate: bool = False  # outbound decimal: the value with its sign turned

    @field_validator("map", mode="before")
    @classmethod
    def _map_keys_as_text(cls, value: Any) -> Any:
        return _scalar_table(value)

    @property
    def sources(self) -> tuple[str, ...]:
        """The keys that say where the value comes from; a field needs exactly one."""
        given = {"from": self.from_ is not None, "const": self.has_const, "concat": self.concat is not None,
                 "unit_of": self.unit_of is not None, "first": self.first is not None,
                 "reduce": self.reduce is not None, "unavailable": self.unavailable is not None,
                 "todo": self.todo is not None, "items": self.items is not None}
        return tuple(key for key, present in given.items() if present)

    @property
    def reads_fields(self) -> tuple[str, ...]:
        """The canonical fields its ``first`` candidates' ``when`` conditions read (mapped before it)."""
        return tuple(c.condition[0] for c in self.first or () if isinstance(c, SourceChoice) and c.condition)

    @property
    def has_const(self) -> bool:
        return "const" in self.model_fields_set

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    @property
    def value_type(self) -> str:
        """The declared type, or ``list`` when splitting or per-element settings are given, else ``str``."""
        if self.type is not None:
            return self.type
        if self.split is not None or self.each is not None or self.each_fields is not None or self.items is not None:
            return "list"
        return "str"


class InboundSpec(_Strict):
    """Vendor records of one kind -> canonical records."""

    key: str | list[str] | None = Field(default=None, min_length=1)  # several: a composite key (site, number)
    records_at: str | None = Field(default=None, min_length=1)
    parent_key: str | None = Field(default=None, min_length=1)
    parent_fields: dict[str, FieldSpec] = Field(default_factory=dict)
    fields: dict[str, FieldSpec]
    ignore: list[str] = Field(default_factory=list)  # vendor paths deliberately not mapped


def key_paths(key: str | list[str] | None) -> tuple[str, ...]:
    """The vendor paths of a (possibly composite) key."""
    if key is None:
        return ()
    return (key,) if isinstance(key, str) else tuple(key)


def key_name(key: str | list[str] | None) -> str:
    """A key as messages name it: "siteid+assetnum"."""
    return "+".join(key_paths(key))


class BalanceSpec(_Strict):
    """Items that must balance: the signed amounts at ``amount`` in each of ``items`` sum to zero."""

    items: str = Field(min_length=1)  # the vendor path of a field built with 'items'
    amount: str = Field(min_length=1)  # the vendor path of the amount inside each item


class OutboundSpec(_Strict):
    """A canonical record of one kind -> one vendor body (docs/mappings.md, "Outbound")."""

    key: str | None = Field(default=None, min_length=1)
    fields: dict[str, FieldSpec]
    balance: BalanceSpec | None = None


class MappingFile(_Strict):
    extends: str | None = Field(default=None, min_length=1)  # consumed when loading an overlay
    system: str = Field(min_length=1)
    version: Literal[1]
    description: str | None = None
    timezone: str | None = Field(default=None, min_length=1)
    units: dict[str, str] = Field(default_factory=dict)  # vendor unit code -> unit the hub knows
    tables: dict[str, TableSpec] = Field(default_factory=dict)  # look-up tables fields name in 'lookup'
    inbound: dict[str, InboundSpec] = Field(default_factory=dict)
    outbound: dict[str, OutboundSpec] = Field(default_factory=dict)
    endpoint: EndpointSpec | None = None  # how to reach the system (docs/endpoints.md)


FieldSpec.model_rebuild()
