"""The RecordIO-protobuf codec against bytes written out by hand from the proto definition."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from scipy import sparse

from modelgate.containers import recordio
from modelgate.containers.payloads import parse_recordio_protobuf

# Record{features: {"values": Value{float32_tensor: Float32Tensor{values: [1.0, 2.0]}}}}
_TENSOR = bytes.fromhex("0a08") + struct.pack("<ff", 1.0, 2.0)  # field 1, packed floats
_VALUE = bytes.fromhex("120a") + _TENSOR  # Value.float32_tensor = 2
_ENTRY = bytes.fromhex("0a06") + b"values" + bytes.fromhex("120c") + _VALUE  # map entry: key 1, value 2
_RECORD = bytes.fromhex("0a16") + _ENTRY  # Record.features = 1
_FRAMED = struct.pack("<II", 0xCED7230A, len(_RECORD)) + _RECORD  # 24 bytes: no padding


def test_encoder_writes_the_wire_format_byte_for_byte() -> None:
    payload = recordio.record(features={"values": recordio.float32_tensor([1.0, 2.0])})
    assert payload == _RECORD
    assert recordio.write_records([payload]) == _FRAMED


def test_framing_pads_to_four_bytes_and_reads_back() -> None:
    framed = recordio.write_records([b"abcde", b"xy"])
    assert len(framed) == 8 + 8 + 8 + 4
    assert [bytes(r) for r in recordio.iter_records(framed)] == [b"abcde", b"xy"]


def test_dense_rows_decode_to_a_float32_matrix() -> None:
    second = recordio.record(features={"values": recordio.float32_tensor([3.0, 4.5])})
    x = parse_recordio_protobuf(_FRAMED + recordio.write_records([second]))
    assert isinstance(x, np.ndarray)
    assert x.dtype == np.float32
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.5]]


def test_unpacked_values_and_float64_tensors_are_read() -> None:
    unpacked = b"".join(bytes.fromhex("0d") + struct.pack("<f", v) for v in (5.0, 6.0))  # wire type 5
    value = bytes.fromhex("12") + bytes([len(unpacked)]) + unpacked
    as_f64 = bytes.fromhex("1a12") + bytes.fromhex("0a10") + struct.pack("<dd", 7.0, 8.0)  # float64_tensor = 3
    rows = [recordio.record(features={"values": value}), recordio.record(features={"values": as_f64})]
    x = parse_recordio_protobuf(recordio.write_records(rows))
    assert isinstance(x, np.ndarray)
    assert x.tolist() == [[5.0, 6.0], [7.0, 8.0]]


def test_sparse_rows_use_keys_and_shape() -> None:
    rows = [
        recordio.record(features={"values": recordio.float32_tensor([1.5, 2.5], keys=[0, 3], shape=[5])}),
        recordio.record(features={"values": recordio.float32_tensor([9.0], keys=[4], shape=[5])}),
    ]
    x = parse_recordio_protobuf(recordio.write_records(rows))
    assert isinstance(x, sparse.csr_matrix)
    assert x.shape == (2, 5)
    assert x.toarray().tolist() == [[1.5, 0, 0, 2.5, 0], [0, 0, 0, 0, 9.0]]
    assert x.nnz == 3  # absent entries stay absent (missing), they are not zeros


def test_labels_round_trip_through_the_map_reader() -> None:
    payload = recordio.record(label={"score": recordio.float32_tensor([0.25]), "p": recordio.float32_tensor([1, 2])})
    label = recordio.read_map(memoryview(payload), 2)
    assert {k: v.values.tolist() for k, v in label.items() if v is not None} == {"score": [0.25], "p": [1.0, 2.0]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00\x01\x02\x03\x04\x05\x06\x07", "invalid RecordIO magic"),
        (_FRAMED[:20], "truncated RecordIO record"),
        (_FRAMED[:5], "truncated RecordIO header"),
    ],
)
def test_broken_framing_is_a_value_error(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_recordio_protobuf(body)


def test_records_without_values_are_an_error() -> None:
    with pytest.raises(ValueError, match="No records found"):
        parse_recordio_protobuf(recordio.write_records([recordio.record(label={"x": recordio.float32_tensor([1])})]))
