"""Content codings (RFC 9110 8.4, 12.5.3): whether a client takes gzip, and gzip made as a
body streams."""

from __future__ import annotations

import zlib

from mutualrec.http.negotiation import weighted_items

# zlib's window bits for a gzip wrapper (header and CRC), not a bare zlib stream.
_GZIP_WINDOW = 16 + zlib.MAX_WBITS
# JSON shrinks tenfold even at zlib's fastest level; a higher one buys a few percent for
# several times the CPU, on a body made per request.
_LEVEL = 1


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header takes gzip (named, or by ``*``, with a q above 0)."""
    anything = False
    for item in weighted_items(header):
        if item.name == "gzip":
            return item.quality > 0
        if item.name == "*":
            anything = item.quality > 0
    return anything


class GzipStream:
    """One gzip member written a piece at a time: each piece's output, then the end."""

    def __init__(self) -> None:
        self._packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, _GZIP_WINDOW)

    def piece(self, data: bytes) -> bytes:
        """What ``data`` adds to the stream (possibly nothing yet: zlib holds some back)."""
        return self._packer.compress(data)

    def end(self) -> bytes:
        """The stream's last bytes: what zlib held back, and the gzip trailer."""
        return self._packer.flush()
