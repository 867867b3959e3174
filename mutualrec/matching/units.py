"""Lab values in their item's canonical unit: what a doctor in the region reads (glucose in mmol/L).

UCUM unit algebra is the library's (ucumvert's pint registry); the one step it cannot take, mass
to amount of substance, divides by the analyte's molar mass, which is catalog data. A converted
value is rounded to three significant digits: a conversion adds no precision the value lacked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any

from mutualrec.matching.catalog import CatalogItem

_SIGNIFICANT = Context(prec=3)
_MASS_CONCENTRATION = "[mass] / [length] ** 3"
_SUBSTANCE_CONCENTRATION = "[substance] / [length] ** 3"


@dataclass(frozen=True, slots=True)
class CanonicalValue:
    """A value in the item's canonical unit, or why there is none (``value`` None, ``note``)."""

    value: Decimal | None
    unit: str
    note: str = ""


@functools.cache
def _registry() -> Any:
    # Built once per process (about a second): it parses pint's and UCUM's definitions.
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


@functools.lru_cache(maxsize=4096)
def conversion_factor(unit: str, canonical: str, molar_mass: Decimal | None) -> Decimal | None:
    """What a value in ``unit`` is multiplied by to be in ``canonical``; None when it cannot be.

    ``molar_mass`` (g/mol) lets a mass concentration become a substance concentration and back.
    """
    from pint.errors import DimensionalityError, PintError

    registry = _registry()
    try:
        source = registry.from_ucum(unit)
        target = registry.from_ucum(canonical)
    except Exception:  # ucumvert raises lark's errors as well as its own for what it cannot read
        return None
    try:
        return Decimal(repr((1 * source).to(target).magnitude))
    except DimensionalityError:
        pass
    except PintError:
        return None
    if molar_mass is None or molar_mass <= 0:
        return None
    grams = registry.from_ucum("g/L")
    moles = registry.from_ucum("mol/L")
    kinds = (str(source.dimensionality), str(target.dimensionality))
    if kinds == (_MASS_CONCENTRATION, _SUBSTANCE_CONCENTRATION):
        per_litre = Decimal(repr((1 * source).to(grams).magnitude)) / molar_mass
        return per_litre * Decimal(repr((1 * moles).to(target).magnitude))
    if kinds == (_SUBSTANCE_CONCENTRATION, _MASS_CONCENTRATION):
        per_litre = Decimal(repr((1 * source).to(moles).magnitude)) * molar_mass
        return per_litre * Decimal(repr((1 * grams).to(target).magnitude))
    return None


def canonical_value(number: Decimal | None, unit: str, item: CatalogItem) -> CanonicalValue | None:
    """``number`` in ``unit`` as the item's canonical unit; None when the item has none.

    Values already in the canonical unit are left exactly as reported.
    """
    if not item.unit or number is None:
        return None
    if unit == item.unit:
        return CanonicalValue(number, item.unit)
    factor = conversion_factor(unit, item.unit, item.molar_mass) if unit else None
    if factor is None:
        reported = unit or "no unit"
        return CanonicalValue(
            None, item.unit, f"{reported} cannot be converted to {item.unit}: shown as reported"
        )
    converted = _SIGNIFICANT.create_decimal(number * factor)
    return CanonicalValue(converted, item.unit, f"converted from {number} {unit}")
