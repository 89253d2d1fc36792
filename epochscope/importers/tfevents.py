"""TensorBoard event files, read with the standard library.

A file is a sequence of records: uint64 length, uint32 masked CRC-32C of the length, the data,
uint32 masked CRC-32C of the data (TFRecord framing). Each record is an ``Event`` protobuf; this
reads the few fields scalars need: ``wall_time`` (1, double), ``step`` (2, int64), ``summary``
(5) -> repeated ``value`` (1) -> ``tag`` (1), ``simple_value`` (2, float) or ``tensor`` (8:
``dtype`` 1, ``tensor_content`` 4, ``float_val`` 5, ``double_val`` 6) as TF2 writes scalars.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scalar:
    tag: str
    step: int
    wall_time: float
    value: float


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path: str | os.PathLike[str], check_data: bool = True) -> Iterator[bytes]:
    """The records of one event file; stops at a torn tail, ValueError at a bad length CRC."""
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if len(head) < 12:
                return
            (length,) = struct.unpack("<Q", head[:8])
            (crc,) = struct.unpack("<I", head[8:])
            if masked_crc(head[:8]) != crc:
                raise ValueError(f"{path}: not a TFRecord file (bad length checksum)")
            data = f.read(length)
            tail = f.read(4)
            if len(data) < length or len(tail) < 4:
                return  # still being written
            if check_data and masked_crc(data) != struct.unpack("<I", tail)[0]:
                continue  # a damaged record: skip it, keep the rest
            yield data


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message: ints, bytes, or raw 4/8 bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _tensor_value(buf: bytes) -> float | None:
    dtype, content, floats, doubles = 0, b"", [], []
    for number, wire, value in fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 4 and wire == 2:
            content = value
        elif number == 5:
            floats += (
                list(struct.unpack(f"<{len(value) // 4}f", value))
                if wire == 2
                else [struct.unpack("<f", value)[0]]
            )
        elif number == 6:
            doubles += (
                list(struct.unpack(f"<{len(value) // 8}d", value))
                if wire == 2
                else [struct.unpack("<d", value)[0]]
            )
    if floats:
        return floats[0]
    if doubles:
        return doubles[0]
    if content and dtype == 1 and len(content) == 4:
        return struct.unpack("<f", content)[0]
    if content and dtype == 2 and len(content) == 8:
        return struct.unpack("<d", content)[0]
    return None


def scalars(path: str | os.PathLike[str]) -> Iterator[Scalar]:
    """Every scalar summary value in one event file."""
    for record in records(path):
        wall, step, summary = 0.0, 0, None
        for number, wire, value in fields(record):
            if number == 1 and wire == 1:
                wall = struct.unpack("<d", value)[0]
            elif number == 2 and wire == 0:
                step = value - (1 << 64) if value >= 1 << 63 else value
            elif number == 5 and wire == 2:
                summary = value
        if summary is None:
            continue
        for number, wire, value in fields(summary):
            if number != 1 or wire != 2:
                continue
            tag, scalar = "", None
            for n2, w2, v2 in fields(value):
                if n2 == 1 and w2 == 2:
                    tag = v2.decode("utf-8", "replace")
                elif n2 == 2 and w2 == 5:
                    scalar = struct.unpack("<f", v2)[0]
                elif n2 == 8 and w2 == 2:
                    scalar = _tensor_value(v2)
            if tag and scalar is not None:
                yield Scalar(tag, step, wall, float(scalar))


def event_files(logdir: str | os.PathLike[str]) -> list[Path]:
    """Event files under ``logdir`` (TensorBoard's ``*tfevents*`` names), sorted."""
    return sorted(p for p in Path(logdir).rglob("*tfevents*") if p.is_file())
