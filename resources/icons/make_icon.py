#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Draws Tessera's icon (a 4x4 mosaic of tiles fading from noise-grey to colour, the
way a diffusion sample emerges) as PNGs with the standard library only.
Run from this folder: python3 make_icon.py"""
import struct
import zlib


def png(path, size):
    tiles, gap = 4, size // 32
    cell = (size - gap) // tiles
    margin = (size - (cell * tiles + gap)) // 2
    palette = [(52, 101, 164), (78, 154, 6), (204, 0, 0), (237, 212, 0), (117, 80, 123), (245, 121, 0)]
    rows = []
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            cx, cy = (x - margin - gap) // cell, (y - margin - gap) // cell
            ix, iy = (x - margin - gap) % cell, (y - margin - gap) % cell
            inside = 0 <= cx < tiles and 0 <= cy < tiles and ix < cell - gap and iy < cell - gap
            r = max(2, cell // 6)
            # rounded corners
            if inside:
                dx = min(ix, cell - gap - 1 - ix)
                dy = min(iy, cell - gap - 1 - iy)
                if dx < r and dy < r and (r - dx) ** 2 + (r - dy) ** 2 > r * r:
                    inside = False
            if not inside:
                row += bytes((0, 0, 0, 0))
                continue
            k = (cx + cy) / (2 * tiles - 2)          # 0 at top-left (noise) .. 1 (clean)
            base = palette[(cx * 7 + cy * 3) % len(palette)]
            h = ((cx * 73 + cy * 151 + ix // 3 * 31 + iy // 3 * 17) * 2654435761) & 0xff
            grey = 90 + h // 3
            col = [int(grey * (1 - k) + c * k) for c in base]
            row += bytes((*col, 255))
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


if __name__ == "__main__":
    for s in (32, 64, 128, 256):
        png("tessera-%d.png" % s, s)
