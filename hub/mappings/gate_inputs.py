"""Canonical fields the gate decides on, and what a flavor file may (not) invent for them.

A gate input that comes from a ``const`` or a ``default`` (or is left to a model default such as
isolation "none") is a value nobody read from the vendor: ``hub mappings validate`` refuses it
unless the field says why (``reason:``), and warns even then. A flavor that cannot provide an
input declares it ``unavailable``; the field is then written as `hub.model.UNKNOWN`, on which
the gate blocks with the reason code named here, instead of assuming a harmless value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hub.mappings.spec import KINDS, FieldSpec, MappingFile
from hub.model import UNKNOWN

#: (kind, field) -> the reason code the gate blocks with when the input is unknown, or None
#: when an unknown value needs no code of its own (an open window already blocks at any time)
#: or cannot be unknown at all (identity: a record that cannot be placed is not a record).
GATE_INPUTS: dict[tuple[str, str], str | None] = {
    ("maintenance_record", "status"): "WORK_ORDER_STATUS_UNKNOWN",
    ("maintenance_record", "isolation"): "ISOLATION_UNKNOWN",
    ("maintenance_record", "window_start"): None,
    ("maintenance_record", "window_end"): None,
    ("maintenance_record", "device_id"): None,
    ("maintenance_record", "site"): None,
    ("equipment", "status"): "EQUIPMENT_STATUS_UNKNOWN",
    ("equipment", "device_id"): None,
    ("equipment", "site"): None,
}

#: Gate inputs a flavor may declare unavailable, and the value the field then gets (None: left out).
UNAVAILABLE_VALUE: dict[tuple[str, str], str | None] = {
    ("maintenance_record", "status"): UNKNOWN,
    ("maintenance_record", "isolation"): UNKNOWN,
    ("maintenance_record", "window_start"): None,
    ("maintenance_record", "window_end"): None,
    ("equipment", "status"): UNKNOWN,
}


@dataclass(frozen=True)
class Finding:
    """One gate input a file does not read from the vendor; ``refused`` unless a reason is given."""

    loc: tuple[str, ...]
    message: str
    refused: bool
    at_key: bool = True


def _invented(kind: str, name: str, spec: FieldSpec) -> str | None:
    """How the field's value can be something the vendor never sent, or None."""
    if spec.has_const:
        return f"a const ({spec.const!r})"
    if spec.has_default or spec.unknown == "default":
        return f"a default ({spec.default!r})"
    model_default = KINDS[kind].model_fields[name].default
    if spec.optional and model_default is not None:
        return f"the model's default ({model_default!r}) whenever the vendor leaves it out"
    return None


def findings(spec: MappingFile) -> Iterator[Finding]:
    """Every gate input of the file's inbound kinds that is invented, declared unavailable or unmapped."""
    for kind, kind_spec in spec.inbound.items():
        if kind not in KINDS:
            continue
        groups = {"fields": kind_spec.fields, "parent_fields": kind_spec.parent_fields}
        mapped = kind_spec.fields.keys() | kind_spec.parent_fields.keys()
        for (input_kind, name), code in GATE_INPUTS.items():
            if input_kind != kind:
                continue
            model_default = KINDS[kind].model_fields[name].default
            if name not in mapped and not KINDS[kind].model_fields[name].is_required() and model_default is not None:
                yield Finding(("inbound", kind, "fields"), f"gate input {kind}.{name} is not mapped, so every "
                              f"record would say {model_default!r}: map it from the vendor, or declare it "
                              "'unavailable' with the reason", refused=True)
            for group, fields in groups.items():
                field = fields.get(name)
                if field is None:
                    continue
                loc = ("inbound", kind, group, name)
                how = _invented(kind, name, field)
                if how is not None:
                    said = f" ({field.reason})" if field.reason else ""
                    message = f"gate input {kind}.{name} comes from {how}, not from the vendor{said}"
                    if not field.reason:
                        message += "; say why with 'reason:', or declare it 'unavailable'"
                    yield Finding(loc, message, refused=field.reason is None)
                elif field.unavailable is not None:
                    blocks = f"blocks with {code}" if code else "blocks at any time (an open window)"
                    yield Finding(loc, f"gate input {kind}.{name} is unavailable ({field.unavailable}): every "
                                  f"gated permit on these devices {blocks}", refused=False)
