"""Request bodies to feature matrices, as XGBoost algorithm mode parses them (reference §2.2).

Each parser returns a dense float32 ``ndarray`` (rows x columns, NaN = missing) or a SciPy CSR
matrix (absent entries = missing), and raises ``ValueError`` on a body that does not parse; the
caller maps that to the container's 415 texts.
"""

from __future__ import annotations

import csv
import math
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from scipy import sparse

from modelgate.containers import recordio

Dense: TypeAlias = npt.NDArray[np.float32]
Features: TypeAlias = "Dense | sparse.csr_matrix"

_NAN = math.nan
_PREFERRED = (",", "\t", ";", " ", ":")


def sniff_delimiter(first_line: str) -> str:
    """The delimiter ``csv.Sniffer`` finds in the first line (alphanumeric results mean ``,``).

    For a line without quote characters the sniffer picks the first of its preferred delimiters
    present in the line (a single line is perfectly consistent), so that case is answered without
    running it; anything else goes through ``csv.Sniffer`` itself.
    """
    sample = first_line[:512]
    if '"' not in sample and "'" not in sample:
        for candidate in _PREFERRED:
            if candidate in sample:
                return candidate
    try:
        delimiter = csv.Sniffer().sniff(sample).delimiter
    except csv.Error as exc:
        raise ValueError(f"Could not determine delimiter: {exc}") from None
    return "," if delimiter.isalnum() else delimiter


def parse_csv(text: str, *, strip: bool = True) -> Dense:
    """Rows split on ``\\n``; empty fields are NaN; no header and no label column."""
    if strip:
        text = text.strip()
    lines = text.split("\n")
    delimiter = sniff_delimiter(lines[0])
    if len(lines) == 1:
        return np.array([[float(f) if f else _NAN for f in lines[0].split(delimiter)]], dtype=np.float32)
    rows = [[float(f) if f else _NAN for f in line.split(delimiter)] for line in lines]
    width = len(rows[0])
    for index, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(
                f"row {index + 1} has {len(row)} fields but row 1 has {width} "
                "(all rows must have the same number of columns)"
            )
    return np.array(rows, dtype=np.float32)


def parse_libsvm(text: str, *, zero_based_shift: bool = True) -> sparse.csr_matrix:
    """``[label] idx:val idx:val ...`` per line; tokens without ``:`` (labels) are ignored.

    With ``zero_based_shift`` (the 3.0 containers), indices are shifted down by one when none of
    them is 0, so 1-based files address the same columns as 0-based ones.
    """
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lines = text.strip().split("\n")
    for row_index, line in enumerate(lines):
        for token in line.split(" "):
            if ":" in token:
                index, _, value = token.partition(":")
                rows.append(row_index)
                cols.append(int(index))
                vals.append(float(value))
    col_arr = np.asarray(cols, dtype=np.int64)
    if col_arr.size and col_arr.min() < 0:
        raise ValueError(f"negative feature index {int(col_arr.min())}")
    if zero_based_shift and col_arr.size and col_arr.min() >= 1:
        col_arr -= 1
    width = int(col_arr.max()) + 1 if col_arr.size else 0
    return sparse.csr_matrix(
        (np.asarray(vals, dtype=np.float32), (np.asarray(rows, dtype=np.int64), col_arr)),
        shape=(len(lines), width),
        dtype=np.float32,
    )


def parse_recordio_protobuf(body: bytes) -> Features:
    """One row per Record, from ``features["values"]``; dense rows, or sparse rows with keys."""
    dense_rows: list[Dense] = []
    sparse_rows: list[tuple[Dense, list[int], int]] = []
    order: list[bool] = []  # True for a sparse row
    for payload in recordio.iter_records(body):
        tensor = recordio.read_map(payload, 1).get("values")
        if tensor is None:
            continue
        if tensor.keys:
            if len(tensor.keys) != len(tensor.values):
                raise ValueError("sparse tensor has a different number of keys and values")
            width = tensor.shape[0] if tensor.shape else max(tensor.keys) + 1
            sparse_rows.append((tensor.values, tensor.keys, int(width)))
            order.append(True)
        elif tensor.shape and not tensor.values.size:  # an all-missing sparse row
            sparse_rows.append((tensor.values, [], int(tensor.shape[0])))
            order.append(True)
        else:
            dense_rows.append(tensor.values)
            order.append(False)
    if not order:
        raise ValueError("No records found in RecordIO-Protobuf data")
    if not sparse_rows:
        width = dense_rows[0].size
        for index, row in enumerate(dense_rows):
            if row.size != width:
                raise ValueError(f"record {index + 1} has {row.size} values but record 1 has {width}")
        return np.vstack(dense_rows).astype(np.float32, copy=False)
    width = max([w for _v, _k, w in sparse_rows] + [r.size for r in dense_rows])
    data: list[Dense] = []
    indices: list[npt.NDArray[np.int64]] = []
    indptr = [0]
    dense_iter, sparse_iter = iter(dense_rows), iter(sparse_rows)
    for is_sparse in order:
        if is_sparse:
            values, keys, _w = next(sparse_iter)
            key_arr = np.asarray(keys, dtype=np.int64)
        else:
            values = next(dense_iter)
            key_arr = np.arange(values.size, dtype=np.int64)
        data.append(values)
        indices.append(key_arr)
        indptr.append(indptr[-1] + values.size)
    return sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.asarray(indptr, dtype=np.int64)),
        shape=(len(order), width),
        dtype=np.float32,
    )
