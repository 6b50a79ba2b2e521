"""The units the hub knows, and exact conversion between units of one quantity.

Arithmetic is exact (rational numbers from the vendor's decimal text), and the result is
rounded once, to a stated number of decimal places, and written as plain decimal text: 212 degF
becomes "100" Cel, never "99.99999999999997". Vendor unit codes (SAP ``CEL``, ``P1``) are not
here: each mapping file declares its own aliases for these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from hub.mappings.values import fail


@dataclass(frozen=True)
class Unit:
    name: str
    quantity: str
    # value in the quantity's base unit = (value + offset) * scale
    scale: Fraction
    offset: Fraction = Fraction(0)


_PSI_IN_KPA = Fraction("4.4482216152605") / Fraction("0.00064516") / 1000  # lbf / in², exactly

#: Unit names the hub uses (UCUM-style codes, as B2MML MES systems send them).
UNITS: dict[str, Unit] = {
    unit.name: unit
    for unit in (
        Unit("Cel", "temperature", Fraction(1), Fraction("273.15")),
        Unit("degF", "temperature", Fraction(5, 9), Fraction("459.67")),
        Unit("K", "temperature", Fraction(1)),
        Unit("kPa", "pressure", Fraction(1)),
        Unit("MPa", "pressure", Fraction(1000)),
        Unit("bar", "pressure", Fraction(100)),
        Unit("psi", "pressure", _PSI_IN_KPA),
        Unit("%", "fraction", Fraction(10_000)),
        Unit("ppm", "fraction", Fraction(1)),
    )
}


def convert(value: Decimal, source: str, target: str, decimals: int) -> Decimal:
    """``value`` in unit ``source`` expressed in unit ``target``, rounded half-even to ``decimals`` places."""
    from_unit, to_unit = UNITS[source], UNITS[target]
    if from_unit.quantity != to_unit.quantity:
        raise fail(f"cannot convert {source} ({from_unit.quantity}) to {target} ({to_unit.quantity})")
    base = (Fraction(value) + from_unit.offset) * from_unit.scale
    exact = base / to_unit.scale - to_unit.offset
    rounded = round(exact * 10**decimals)
    return Decimal(rounded).scaleb(-decimals) if rounded else Decimal(0)


def plain(value: Decimal) -> str:
    """Decimal text without exponent or trailing zeros: Decimal("1.500") -> "1.5", Decimal("1E+2") -> "100"."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
