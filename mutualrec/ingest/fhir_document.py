"""The shell of a submitted FHIR document: one Observation, or a batch/transaction Bundle.

Only the structure is read here (JSON syntax, resourceType, Bundle.type, entries, fullUrls); the
resources themselves are validated entry by entry later, so one bad entry of a batch does not
sink the good ones. Paths in violations point into the submitted document, as an integrator
would address it: ``entry[3].fullUrl``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mutualrec.violations import Rejected, Violation, clip

# Resource types a lab feed may carry: the results, and what they refer to.
INDEXED_TYPE = "Observation"
CONTEXT_TYPES = frozenset({"Patient", "DiagnosticReport", "Specimen"})
# JSON escapes of what no stored string may hold: NUL (PostgreSQL refuses it in text) and
# UTF-16 surrogates (a pair is read as one character; a lone one is not text, and cannot be
# encoded as UTF-8). Neither can appear raw in UTF-8 JSON: a document without these escapes
# needs no walk.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_UNSTORABLE = re.compile("[\0\ud800-\udfff]")


class BundleKind(enum.Enum):
    """How a submission is processed: per entry (batch) or all or nothing."""

    SINGLE = ""
    BATCH = "batch"
    TRANSACTION = "transaction"

    @property
    def all_or_nothing(self) -> bool:
        """A transaction, and a single resource, are accepted whole or not at all."""
        return self is not BundleKind.BATCH


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource of the document, with the path prefix that addresses it."""

    index: int
    full_url: str
    resource_type: str
    resource: dict[str, Any]
    path: str

    def field(self, name: str) -> str:
        """The document path of ``name`` within this entry's resource."""
        return f"{self.path}.{name}" if self.path else name


@dataclass(frozen=True, slots=True)
class FhirDocument:
    """The parsed shell: its kind, its entries, and per-entry problems of the shell itself."""

    kind: BundleKind
    entries: list[Entry]
    shell_violations: dict[int, list[Violation]]


def _reject(field: str, description: str, reason: str) -> Rejected:
    return Rejected.one(f"the document cannot be read: {description}", field, description, reason)


class _DuplicateKey(ValueError):
    """A key appears twice in one JSON object."""


class _NumberTooLong(ValueError):
    """A JSON integer longer than Python converts (sys.get_int_max_str_digits())."""


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON allows a key twice, FHIR does not: a second "valueQuantity" would silently win.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return result


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _NumberTooLong(f"a number of {len(text)} digits; no FHIR value has so many") from None


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``; rejected with line and column when it is not UTF-8 JSON."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _reject("body", f"not UTF-8 at byte {exc.start}", "NOT_UTF8") from None
    try:
        # Decimals, not floats: FHIR decimals keep their precision ("4.10" is not "4.1").
        return json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys,
            parse_float=Decimal,
            parse_int=_integer,
        )
    except json.JSONDecodeError as exc:
        raise _reject(
            "body", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", "BAD_JSON"
        ) from None
    except _DuplicateKey as exc:
        raise _reject("body", str(exc), "DUPLICATE_JSON_KEY") from None
    except _NumberTooLong as exc:
        raise _reject("body", str(exc), "NUMBER_TOO_LONG") from None
    except RecursionError:
        # The parser recurses per level (about a thousand fit): deeper is refused whole.
        raise _reject("body", "nested too deep to be read", "TOO_DEEP") from None


def _unstorable_strings(value: Any, path: str) -> Iterator[Violation]:
    """A violation for every string or key within ``value`` (at document ``path``) that holds
    a NUL or a lone surrogate."""
    # Without recursion: the nesting is the caller's to choose.
    pending: list[tuple[Any, str]] = [(value, path)]
    while pending:
        node, where = pending.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                # An empty key is named as JSON writes it: a field path is never empty.
                name = clip(key, 64) or '""'
                inner = f"{where}.{name}" if where else name
                if _UNSTORABLE.search(key):
                    yield _unstorable(inner)
                pending.append((item, inner))
        elif isinstance(node, list):
            pending.extend((item, f"{where}[{i}]") for i, item in enumerate(node))
        elif isinstance(node, str) and _UNSTORABLE.search(node):
            yield _unstorable(where)


def _unstorable(path: str) -> Violation:
    return Violation(
        path,
        "holds a NUL character (\\u0000) or a lone UTF-16 surrogate, which is not text",
        "UNSTORABLE_TEXT",
    )


def read_document(body: bytes) -> FhirDocument:
    """Read the shell of a submission; raises :class:`Rejected` when nothing of it is usable."""
    document = parse_json(body)
    if not isinstance(document, dict):
        raise _reject("body", "the document must be a JSON object", "NOT_A_RESOURCE")
    # Only a document with such an escape is walked: parsing is the costly part of a submission.
    check_text = _UNSTORABLE_ESCAPE.search(body) is not None
    # The entries of a batch are checked one by one, so that a bad one is rejected alone;
    # everything else of the document is the document's.
    outside = {k: v for k, v in document.items() if k != "entry"}
    if document.get("resourceType") != INDEXED_TYPE and isinstance(document.get("entry"), list):
        outside["entry"] = []
    problems = list(_unstorable_strings(outside, "")) if check_text else []
    if problems:
        raise Rejected("the document cannot be read: it holds what cannot be stored", problems)
    resource_type = document.get("resourceType")
    if resource_type == INDEXED_TYPE:
        return FhirDocument(
            BundleKind.SINGLE, [Entry(0, "", INDEXED_TYPE, document, "")], shell_violations={}
        )
    if resource_type != "Bundle":
        raise _reject(
            "resourceType",
            f"expected an Observation or a Bundle, got {resource_type!r}",
            "UNSUPPORTED_RESOURCE_TYPE",
        )
    try:
        kind = BundleKind(document.get("type"))
    except ValueError:
        kind = BundleKind.SINGLE
    if kind is BundleKind.SINGLE:
        raise _reject(
            "type",
            f"a Bundle of type {document.get('type')!r} cannot be submitted; "
            "send a batch or a transaction",
            "UNSUPPORTED_BUNDLE_TYPE",
        )
    raw_entries = document.get("entry", [])
    if not isinstance(raw_entries, list) or not raw_entries:
        raise _reject("entry", "the Bundle has no entries", "EMPTY_BUNDLE")
    return _read_entries(kind, raw_entries, check_text)


def _read_entries(kind: BundleKind, raw_entries: list[Any], check_text: bool) -> FhirDocument:
    entries: list[Entry] = []
    problems: dict[int, list[Violation]] = {}
    first_use: dict[str, int] = {}
    for index, raw in enumerate(raw_entries):
        path = f"entry[{index}]"
        unstorable = list(_unstorable_strings(raw, path)) if check_text else []
        if unstorable:
            # Nothing else of it is read: what reads it would store or hash its text.
            problems[index] = unstorable
            entries.append(Entry(index, "", "", {}, f"{path}.resource"))
            continue
        found: list[Violation] = []
        if not isinstance(raw, dict):
            raw = {}
            found.append(Violation(path, "an entry must be a JSON object", "BAD_ENTRY"))
        resource = raw.get("resource")
        has_resource = isinstance(resource, dict)
        if not isinstance(resource, dict):
            resource = {}
            found.append(
                Violation(f"{path}.resource", "every entry must hold a resource", "MISSING_FIELD")
            )
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str):
            resource_type = ""
        if has_resource and resource_type != INDEXED_TYPE and resource_type not in CONTEXT_TYPES:
            found.append(
                Violation(
                    f"{path}.resource.resourceType",
                    f"{resource_type or 'a resource without resourceType'} is not part of a lab "
                    "result feed; expected Observation, Patient, DiagnosticReport or Specimen",
                    "UNSUPPORTED_RESOURCE_TYPE",
                )
            )
        full_url = raw.get("fullUrl", "")
        if not isinstance(full_url, str):
            found.append(Violation(f"{path}.fullUrl", "must be a string", "BAD_TYPE"))
            full_url = ""
        if full_url:
            if full_url in first_use:
                found.append(
                    Violation(
                        f"{path}.fullUrl",
                        f"{full_url} is already the fullUrl of entry[{first_use[full_url]}]",
                        "DUPLICATE_FULL_URL",
                    )
                )
            else:
                first_use[full_url] = index
        if found:
            problems[index] = found
        entries.append(Entry(index, full_url, resource_type, resource, f"{path}.resource"))
    return FhirDocument(kind, entries, problems)
