"""SageMaker's ``application/x-recordio-protobuf``: RecordIO framing around protobuf ``Record``s.

Framing (MXNet RecordIO, as the SageMaker SDK writes it): each record is a little-endian uint32
magic ``0xCED7230A``, a little-endian uint32 whose low 29 bits are the payload length (the top 3
bits are a continuation flag, always 0 from the SDK), the payload, and zero padding to a multiple of
4 bytes.

Payload (``aialgs.data.Record``, proto2), the fields used here::

    message Float32Tensor { repeated float  values = 1 [packed]; repeated uint64 keys = 2 [packed];
                            repeated uint64 shape = 3 [packed]; }
    message Float64Tensor { repeated double values = 1 [packed]; keys = 2; shape = 3 }
    message Int32Tensor   { repeated int32  values = 1 [packed]; keys = 2; shape = 3 }
    message Value  { oneof value { Float32Tensor float32_tensor = 2; Float64Tensor float64_tensor = 3;
                                   Int32Tensor int32_tensor = 7; Bytes bytes = 9; } }
    message Record { map<string, Value> features = 1; map<string, Value> label = 2;
                     optional string uid = 3; optional string metadata = 4;
                     optional string configuration = 5; }

A tensor with ``keys`` is sparse (``keys`` are column indices, ``shape[0]`` the width); without, it
is a dense row. The decoder accepts packed and unpacked repeated fields, as protobuf parsers must.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MAGIC = 0xCED7230A
_HEADER = struct.Struct("<II")
_LENGTH_MASK = (1 << 29) - 1


class RecordIOError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------- framing


def iter_records(buf: bytes) -> Iterator[memoryview]:
    view = memoryview(buf)
    offset, size = 0, len(buf)
    while offset < size:
        if offset + 8 > size:
            raise RecordIOError(f"truncated RecordIO header at offset {offset}")
        magic, lrecord = _HEADER.unpack_from(view, offset)
        if magic != MAGIC:
            raise RecordIOError(f"invalid RecordIO magic number 0x{magic:08x} at offset {offset}")
        length = lrecord & _LENGTH_MASK
        offset += 8
        if offset + length > size:
            raise RecordIOError(f"truncated RecordIO record at offset {offset - 8}")
        yield view[offset : offset + length]
        offset += (length + 3) & ~3


def frame(payload: bytes, out: bytearray) -> None:
    out += _HEADER.pack(MAGIC, len(payload))
    out += payload
    out += b"\0" * (-len(payload) % 4)


# ------------------------------------------------------------------------------------- protobuf reading


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise RecordIOError("truncated protobuf varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise RecordIOError("protobuf varint too long")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field; value is an int or the bytes of a LEN field."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise RecordIOError("truncated protobuf field")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise RecordIOError("truncated protobuf field")
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        elif wire == 1:
            if pos + 8 > end:
                raise RecordIOError("truncated protobuf field")
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        else:
            raise RecordIOError(f"unsupported protobuf wire type {wire}")


@dataclass(slots=True)
class Tensor:
    values: npt.NDArray[np.float32]
    keys: list[int]
    shape: list[int]


_VALUE_KINDS = {2: ("<f4", 4, 5), 3: ("<f8", 8, 1), 7: ("int32", 0, 0)}


def _read_tensor(buf: memoryview, kind: int) -> Tensor:
    dtype, width, fixed_wire = _VALUE_KINDS[kind]
    chunks: list[npt.NDArray[np.float32]] = []
    keys: list[int] = []
    shape: list[int] = []
    for number, wire, value in _fields(buf):
        if number == 1:
            if isinstance(value, int):  # unpacked int32
                chunks.append(np.array([_int32(value)], dtype=np.float32))
            elif kind == 7 and wire == 2:  # packed int32 varints
                chunks.append(np.array([_int32(v) for v in _packed_varints(value)], dtype=np.float32))
            elif wire == 2 or wire == fixed_wire:
                if len(value) % width:
                    raise RecordIOError("packed tensor values have a partial element")
                chunks.append(np.frombuffer(value, dtype=dtype).astype(np.float32))
        elif number in (2, 3):
            target = keys if number == 2 else shape
            if isinstance(value, int):
                target.append(value)
            elif wire == 2:
                target.extend(_packed_varints(value))
    values = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float32)
    return Tensor(values, keys, shape)


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _packed_varints(buf: memoryview) -> list[int]:
    out: list[int] = []
    pos = 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        out.append(value)
    return out


def _read_value(buf: memoryview) -> Tensor | None:
    for number, _wire, value in _fields(buf):
        if number in _VALUE_KINDS and isinstance(value, memoryview):
            return _read_tensor(value, number)
    return None  # bytes values are not numeric data


def read_map(record: memoryview, field: int) -> dict[str, Tensor | None]:
    """One of the Record's ``map<string, Value>`` fields (1 = features, 2 = label)."""
    out: dict[str, Tensor | None] = {}
    for number, _wire, entry in _fields(record):
        if number != field or not isinstance(entry, memoryview):
            continue
        key, tensor = "", None
        for enumber, _w, evalue in _fields(entry):
            if enumber == 1 and isinstance(evalue, memoryview):
                key = bytes(evalue).decode("utf-8")
            elif enumber == 2 and isinstance(evalue, memoryview):
                tensor = _read_value(evalue)
        out[key] = tensor
    return out


# ------------------------------------------------------------------------------------- protobuf writing


def _put_varint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_len(number: int, payload: bytes | bytearray, out: bytearray) -> None:
    _put_varint((number << 3) | 2, out)
    _put_varint(len(payload), out)
    out += payload


def float32_tensor(
    values: Sequence[float] | npt.NDArray[np.float32], keys: Sequence[int] = (), shape: Sequence[int] = ()
) -> bytes:
    """A serialized ``Value`` holding a ``Float32Tensor``."""
    tensor = bytearray()
    _put_len(1, np.asarray(values, dtype="<f4").tobytes(), tensor)
    for number, ints in ((2, keys), (3, shape)):
        if len(ints):
            packed = bytearray()
            for k in ints:
                _put_varint(int(k), packed)
            _put_len(number, packed, tensor)
    value = bytearray()
    _put_len(2, tensor, value)
    return bytes(value)


def record(features: dict[str, bytes] | None = None, label: dict[str, bytes] | None = None) -> bytes:
    """A serialized ``Record`` from already serialized ``Value``s (see :func:`float32_tensor`)."""
    out = bytearray()
    for number, entries in ((1, features or {}), (2, label or {})):
        for key, value in entries.items():
            entry = bytearray()
            _put_len(1, key.encode("utf-8"), entry)
            _put_len(2, value, entry)
            _put_len(number, entry, out)
    return bytes(out)


def write_records(payloads: Sequence[bytes]) -> bytes:
    out = bytearray()
    for payload in payloads:
        frame(payload, out)
    return bytes(out)
