"""Just enough of PNG to check a screenshot: size, and how many distinct colours it has.

8-bit RGB or RGBA, non-interlaced (what Chromium writes); zlib from the standard library.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from itertools import accumulate

SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes]  # unfiltered scanlines

    def pixel(self, x: int, y: int) -> tuple[int, ...]:
        i = x * self.channels
        return tuple(self.rows[y][i : i + self.channels])


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(data: bytes) -> Image:
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    pos, idat, header = len(SIGNATURE), bytearray(), None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    adder = _ByteAdder(stride)
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        if kind == 1:  # Sub: a running sum per channel
            out = bytearray(line)
            for c in range(channels):
                out[c::channels] = bytes(v & 0xFF for v in accumulate(line[c::channels]))
            line = bytes(out)
        elif kind == 2:  # Up
            line = adder.add(line, previous)
        elif kind in (3, 4):  # Average, Paeth: byte by byte
            out = bytearray(line)
            for i in range(stride):
                left = out[i - channels] if i >= channels else 0
                up = previous[i]
                if kind == 3:
                    out[i] = (out[i] + (left + up) // 2) & 0xFF
                else:
                    upper_left = previous[i - channels] if i >= channels else 0
                    out[i] = (out[i] + _paeth(left, up, upper_left)) & 0xFF
            line = bytes(out)
        rows.append(line)
        previous = line
    return Image(width, height, channels, rows)


class _ByteAdder:
    """Byte-wise addition modulo 256 of two equal-length byte strings, as one big-integer sum
    (the high bit of each byte is added separately so no carry crosses into the next byte)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.low = int.from_bytes(b"\x7f" * size, "little")
        self.high = int.from_bytes(b"\x80" * size, "little")

    def add(self, a: bytes, b: bytes) -> bytes:
        x, y = int.from_bytes(a, "little"), int.from_bytes(b, "little")
        total = ((x & self.low) + (y & self.low)) ^ ((x ^ y) & self.high)
        return total.to_bytes(self.size, "little")
