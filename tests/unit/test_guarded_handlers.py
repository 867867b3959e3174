"""Interceptors build each method's guarded handler once, and again only for a new handler."""

from __future__ import annotations

from typing import Any

from mutualrec.api.guarded_handlers import GuardedHandlers


def test_a_methods_guard_is_built_on_its_first_call_and_kept() -> None:
    built: list[tuple[str, Any]] = []

    def guard(method: str, handler: Any) -> Any:
        built.append((method, handler))
        return ("guarded", method, handler)

    cache = GuardedHandlers()
    check, decide = object(), object()
    first = cache.get("/mutualrec.v1.RecognitionService/CheckOrder", check, guard)
    again = cache.get("/mutualrec.v1.RecognitionService/CheckOrder", check, guard)
    other = cache.get("/mutualrec.v1.RecognitionService/RecordDecision", decide, guard)

    assert first is again
    assert first == ("guarded", "/mutualrec.v1.RecognitionService/CheckOrder", check)
    assert other == ("guarded", "/mutualrec.v1.RecognitionService/RecordDecision", decide)
    assert built == [
        ("/mutualrec.v1.RecognitionService/CheckOrder", check),
        ("/mutualrec.v1.RecognitionService/RecordDecision", decide),
    ]


def test_a_new_handler_for_a_method_gets_a_guard_of_its_own() -> None:
    cache = GuardedHandlers()
    old, new = object(), object()
    guard = lambda method, handler: (method, handler)  # noqa: E731
    assert cache.get("/s/M", old, guard) == ("/s/M", old)
    assert cache.get("/s/M", new, guard) == ("/s/M", new)
    assert cache.get("/s/M", new, guard) == ("/s/M", new)
