"""Which calls count as one client address for the per-address limits."""

from __future__ import annotations

import pytest

from mutualrec.api.authorization import peer_address


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.7:53122", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:53122", "ipv6:[::1]"),
        ("ipv6:%5B::1%5D:53122", "ipv6:%5B::1%5D"),
        ("unix:/run/mutualrec.sock", "unix:/run/mutualrec.sock"),
        ("", ""),
    ],
)
def test_every_connection_from_one_host_is_one_address(peer: str, address: str) -> None:
    assert peer_address(peer) == address
