"""Money: integer fen everywhere inside; yuan text (two decimals) only where it is stored or
shown. A saving a regulator sums must not depend on float rounding or on where it was added."""

from __future__ import annotations

from decimal import Decimal


def to_fen(amount: str | Decimal) -> int:
    """An amount of yuan as whole fen; refuses fractions of a fen rather than round them."""
    fen = Decimal(amount or "0") * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"{amount} yuan is not a whole number of fen")
    return int(fen)


def yuan(fen: int) -> str:
    """An amount of whole fen as yuan with 2 decimals (``1235`` -> ``"12.35"``)."""
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole}.{cents:02d}"
