"""Regenerate the Teams app icons: a phone keypad (3 x 4 dots), standard library only.

Teams wants a full-colour 192x192 PNG (`color.png`) and a 32x32 PNG that is white on transparent
(`outline.png`). The generated files are committed, so nothing here runs at build or test time; run it after
changing the drawing (the output is byte-for-byte reproducible):

    python3 appPackage/make_icons.py
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ACCENT = (0x5B, 0x5F, 0xC7)  # the manifest's accentColor, #5B5FC7
WHITE = (255, 255, 255)
SUPERSAMPLE = 4  # samples per pixel side, for smooth dot edges

Pixel = tuple[int, int, int, int]


def keypad_coverage(size: int, pitch: float, radius: float) -> Callable[[float, float], bool]:
    """Whether a point lies on one of 12 dots (3 columns, 4 rows) centred in a size x size square."""
    left = size / 2 - pitch
    top = size / 2 - 1.5 * pitch
    centres = [(left + c * pitch, top + r * pitch) for r in range(4) for c in range(3)]

    def inside(x: float, y: float) -> bool:
        return any((x - cx) ** 2 + (y - cy) ** 2 <= radius * radius for cx, cy in centres)

    return inside


def render(size: int, inside: Callable[[float, float], bool], pixel: Callable[[float], Pixel]) -> list[list[Pixel]]:
    """Each pixel from the share of its sub-samples that fall on the drawing (0.0 to 1.0)."""
    step = 1 / SUPERSAMPLE
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            hits = sum(
                inside(x + (i + 0.5) * step, y + (j + 0.5) * step)
                for i in range(SUPERSAMPLE)
                for j in range(SUPERSAMPLE)
            )
            row.append(pixel(hits / SUPERSAMPLE**2))
        rows.append(row)
    return rows


def png(rows: list[list[Pixel]]) -> bytes:
    """An 8-bit RGBA PNG, every scanline with filter type 0 (none)."""
    height, width = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(channel for pixel in row for channel in pixel) for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, RGBA, deflate, no filter, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def color_icon() -> bytes:
    """192x192: white keypad on the accent colour, inside the central 96x96 area Teams keeps clear."""
    def pixel(share: float) -> Pixel:
        r, g, b = (round(a + (w - a) * share) for a, w in zip(ACCENT, WHITE, strict=True))
        return (r, g, b, 255)

    return png(render(192, keypad_coverage(192, pitch=24, radius=9), pixel))


def outline_icon() -> bytes:
    """32x32: white keypad on transparent; the dots' edges are soft through alpha, the colour stays white."""
    def pixel(share: float) -> Pixel:
        return (*WHITE, round(255 * share))

    return png(render(32, keypad_coverage(32, pitch=8, radius=3), pixel))


def main() -> None:
    for name, data in (("color.png", color_icon()), ("outline.png", outline_icon())):
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
