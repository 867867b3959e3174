"""Content codings (RFC 9110 8.4, 12.5.3): whether a client takes gzip, and gzip made as a
body streams."""

from __future__ import annotations

import zlib

# zlib's window bits for a gzip wrapper (header and CRC), not a bare zlib stream.
_GZIP_WINDOW = 16 + zlib.MAX_WBITS
# JSON shrinks tenfold even at zlib's fastest level; a higher one buys a few percent for
# several times the CPU, on a body made per request.
_LEVEL = 1


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header takes gzip (named, or by ``*``, with a q above 0)."""
    anything = False
    for coding in (header or "").split(","):
        name, _, parameters = coding.partition(";")
        weight = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        name = name.strip().lower()
        if name == "gzip":
            return weight > 0
        if name == "*":
            anything = weight > 0
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
