"""Draw the extension's icons (PNG, no dependencies): a violet tile with a woven "L".

Run from the repository root: ``python extension/tools/make_icons.py``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

VIOLET = (75, 60, 167, 255)
LIGHT = (255, 255, 255, 255)
THREAD = (190, 180, 255, 255)
CLEAR = (0, 0, 0, 0)


def _pixel(x: float, y: float) -> tuple[int, int, int, int]:
    """Colour at (x, y) in a 1x1 square: rounded tile, an L, and two threads."""
    r = 0.2
    cx, cy = min(max(x, r), 1 - r), min(max(y, r), 1 - r)
    if (x - cx) ** 2 + (y - cy) ** 2 > r * r:
        return CLEAR
    if 0.28 <= x <= 0.42 and 0.2 <= y <= 0.8 or 0.28 <= x <= 0.74 and 0.66 <= y <= 0.8:
        return LIGHT
    if 0.5 <= x <= 0.56 and 0.2 <= y <= 0.58 or 0.62 <= x <= 0.68 and 0.2 <= y <= 0.58:
        return THREAD
    return VIOLET


def png(size: int) -> bytes:
    """A size x size RGBA PNG, 4x supersampled."""
    rows = bytearray()
    for j in range(size):
        rows.append(0)
        for i in range(size):
            acc = [0, 0, 0, 0]
            for sj in range(4):
                for si in range(4):
                    p = _pixel((i + (si + 0.5) / 4) / size, (j + (sj + 0.5) / 4) / size)
                    for k in range(4):
                        acc[k] += p[k]
            rows.extend(v // 16 for v in acc)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "icons"
    out.mkdir(exist_ok=True)
    for size in (16, 32, 48, 128):
        (out / f"icon{size}.png").write_bytes(png(size))
