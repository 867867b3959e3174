"""Whether a unit is a UCUM expression: the grammar is ucumvert's (a lark parser).

Loaded on first use, not on import: the grammar, with pint and lark, costs about a second and
30 MiB, which only a lab feed or a catalog upload needs, not every server.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=4096)
def is_ucum(unit: str) -> bool:
    """Whether ``unit`` is a valid UCUM expression (case-sensitive, as UCUM is)."""
    try:
        _parser().parse(unit)
    except Exception:  # lark raises several kinds; any of them means invalid
        return False
    return True


@functools.cache
def _parser() -> Any:
    from ucumvert import get_ucum_parser

    return get_ucum_parser()
