"""The token ids a process remembers: until their tokens expire, and no more than it may hold."""

from __future__ import annotations

from mutualrec.security.token_ids import RecentTokenIds

ISSUER = "https://ehr.example.org"


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_an_id_is_seen_until_its_token_expires() -> None:
    clock = _Clock()
    recent = RecentTokenIds(clock=clock)
    assert not recent.seen(ISSUER, "a")
    recent.remember(ISSUER, "a", expires_at=clock.now + 300)
    assert recent.seen(ISSUER, "a")
    # Ids are per issuer.
    assert not recent.seen("https://other.example.org", "a")
    clock.now += 300
    assert not recent.seen(ISSUER, "a")
    # Expired ids go when the next is remembered.
    recent.remember(ISSUER, "b", expires_at=clock.now + 300)
    assert len(recent) == 1


def test_full_it_forgets_the_oldest() -> None:
    clock = _Clock()
    recent = RecentTokenIds(max_entries=3, clock=clock)
    for jti in ("a", "b", "c", "d"):
        recent.remember(ISSUER, jti, expires_at=clock.now + 300)
    assert len(recent) == 3
    assert not recent.seen(ISSUER, "a")
    assert all(recent.seen(ISSUER, jti) for jti in ("b", "c", "d"))
