"""The layering of DESIGN.md, checked on the import graph of ``mutualrec/``.

Doors (api, cli, dicom_net, http) call the services; the services use storage
and the pure packages; the pure packages (parsing, rules, tallies, security) import no
framework, no storage and no door. Read from the source, so a function-local import counts too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import mutualrec

ROOT = Path(mutualrec.__file__).parent
# Generated gRPC stubs and the schema's migration scripts are not layered code.
SKIPPED = ("v1", "storage/migrations")

# What each part may not import directly (a first-level name under mutualrec, or a library).
FRAMEWORKS = {
    "sqlalchemy",
    "alembic",
    "grpc",
    "grpc_status",
    "grpc_health",
    "psycopg",
    "pynetdicom",
    "starlette",
    "uvicorn",
}
DOORS = {"api", "cli", "server", "client", "v1", "dicom_net", "http"}
PURE = {
    "ingest",
    "matching",
    "statistics",
    "security",
    "imaging",
    "recognition",
    "identity",
    "violations",
    "localtime",
    "admin_files",
    "money",
}
FORBIDDEN: dict[str, set[str]] = {
    **{name: FRAMEWORKS | DOORS | {"storage", "services", "runtime"} for name in PURE},
    "storage": DOORS | {"services", "runtime", "grpc", "grpc_status", "grpc_health", "pynetdicom"},
    "services": DOORS
    | {"runtime", "grpc", "grpc_status", "grpc_health", "pynetdicom", "starlette", "uvicorn"},
    "api": {"sqlalchemy", "alembic", "psycopg", "storage", "cli", "client"},
    "cli": {"sqlalchemy", "alembic", "psycopg", "storage", "api"},
    # The DICOM C-STORE door: pynetdicom's events -> the services, like the gRPC door.
    "dicom_net": {"sqlalchemy", "alembic", "psycopg", "storage", "api", "cli", "client", "grpc"},
    # The HTTP door (Starlette): requests -> the services, like the gRPC door; no gRPC in it.
    "http": {
        "sqlalchemy",
        "alembic",
        "psycopg",
        "storage",
        "api",
        "cli",
        "client",
        "grpc",
        "grpc_status",
        "grpc_health",
        "dicom_net",
        "v1",
    },
}


def _part(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Per module file: (first-level name imported, the full module name imported)."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(SKIPPED):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                first = parts[1] if parts[0] == "mutualrec" and len(parts) > 1 else parts[0]
                found[relative].add((first, name))
    return found


def test_no_part_imports_what_its_layer_may_not() -> None:
    breaches = sorted(
        f"{module} imports {name}"
        for module, names in _imports().items()
        for first, name in names
        if first in FORBIDDEN.get(_part(ROOT / module), set())
    )
    assert breaches == []


def test_no_door_opens_an_index_session() -> None:
    """A door reaches the index only through a service (a session factory is one import away
    on the runtime, so this is checked on the calls)."""
    openers = sorted(
        f"{path.relative_to(ROOT).as_posix()}:{node.lineno}"
        for door in ("api", "cli", "dicom_net", "http")
        for path in (ROOT / door).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"sessions", "begin", "connect", "raw_connection"}
    )
    assert openers == []


def test_no_import_cycle_between_parts() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    parts = {_part(p) for p in ROOT.rglob("*.py")}
    for module, names in _imports().items():
        source = _part(ROOT / module)
        graph[source] |= {first for first, _ in names if first in parts and first != source}

    # Parts that reach each other are one strongly connected component: none may have two.
    reach = {node: _reachable(graph, node) for node in parts}
    tangled = sorted(
        {
            " <-> ".join(sorted(n for n in parts if n in reach[node] and node in reach[n]))
            for node in parts
            if node in reach[node]
        }
    )
    assert tangled == []


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def test_the_rules_see_the_tree() -> None:
    """The checks above would pass on an empty tree: make sure they read the real one."""
    imports = _imports()
    assert ("storage", "mutualrec.storage.recognition_index") in imports["services/recognition.py"]
    assert ("sqlalchemy", "sqlalchemy") in imports["storage/db.py"] or any(
        first == "sqlalchemy" for first, _ in imports["storage/db.py"]
    )
