"""Request parsing of XGBoost algorithm mode: content types, CSV, libsvm, the feature-count check."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from modelgate.containers.errors import UnsupportedMediaType
from modelgate.containers.payloads import parse_csv, parse_libsvm, sniff_delimiter
from modelgate.containers.xgb_algorithm import check_feature_count, content_kind, parse_body

ACCEPTED = (
    "csv, libsvm, parquet, recordio-protobuf, text/csv, text/libsvm, text/x-libsvm, "
    "application/x-parquet, application/x-recordio-protobuf"
)


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("text/csv", "csv"),
        ("csv", "csv"),
        ("Text/CSV; charset=utf-8", "csv"),
        ("text/csv; label_size=1", "csv"),
        ("text/csv;label_size = 1", "csv"),
        ("text/libsvm", "libsvm"),
        ("text/x-libsvm", "libsvm"),
        ("libsvm", "libsvm"),
        (None, "libsvm"),  # header absent
        ("application/x-recordio-protobuf", "recordio-protobuf"),
        ("recordio-protobuf", "recordio-protobuf"),
    ],
)
def test_accepted_content_types(content_type: str | None, kind: str) -> None:
    assert content_kind(content_type) == kind


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("application/json", f"application/json is not an accepted ContentType: {ACCEPTED}."),
        ("application/jsonlines", f"application/jsonlines is not an accepted ContentType: {ACCEPTED}."),
        ("application/csv", f"application/csv is not an accepted ContentType: {ACCEPTED}."),
        ("application/x-parquet", "Content-type application/x-parquet is not supported."),
        (
            "text/csv; label_size=5",
            "text/csv; label_size=5 is not an accepted csv ContentType. "
            "Optional parameter label_size must be equal to 1",
        ),
    ],
)
def test_refused_content_types_carry_the_container_texts(content_type: str, message: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        content_kind(content_type)
    assert info.value.message == message
    assert info.value.status == 415


@pytest.mark.parametrize(
    "line",
    ["1.0,2.0,3.0", "1\t2\t3", "1;2;3", "1 2 3", "1:2", "5", "1.5", "a|b|c", '"1","2"', "1;2,3", ",,", "-1e-3,nan,"],
)
def test_delimiter_is_what_csv_sniffer_finds(line: str) -> None:
    try:
        expected = csv.Sniffer().sniff(line).delimiter
        expected = "," if expected.isalnum() else expected
    except csv.Error:
        with pytest.raises(ValueError):
            sniff_delimiter(line)
        return
    assert sniff_delimiter(line) == expected


def test_csv_empty_fields_are_missing_and_rows_split_on_newlines() -> None:
    x = parse_csv("1,,3\n4,5,\n")
    assert x.dtype == np.float32
    assert x.shape == (2, 3)
    assert x[0, 0] == 1 and math.isnan(x[0, 1]) and math.isnan(x[1, 2])


def test_csv_other_delimiters() -> None:
    assert parse_csv("1\t2\n3\t4").tolist() == [[1, 2], [3, 4]]
    assert parse_csv("1;2").tolist() == [[1, 2]]


def test_ragged_or_non_numeric_csv_is_a_415_with_the_container_text() -> None:
    for body in (b"1,2\n3", b"1,abc"):
        with pytest.raises(UnsupportedMediaType) as info:
            parse_body("csv", body)
        assert info.value.message.startswith(
            "Loading csv data failed with Exception, please ensure data is in csv format:\n <class 'ValueError'>\n "
        )


def test_libsvm_labels_ignored_and_one_based_indices_shifted() -> None:
    x = parse_libsvm("1 1:0.5 3:2\n0 2:1.5")
    assert x.shape == (2, 3)
    assert x.toarray().tolist() == [[0.5, 0, 2], [0, 1.5, 0]]
    assert x.nnz == 3


def test_libsvm_zero_based_indices_kept() -> None:
    x = parse_libsvm("0:1 2:3")
    assert x.toarray().tolist() == [[1, 0, 3]]
    assert parse_libsvm("1:1 2:3", zero_based_shift=False).toarray().tolist() == [[0, 1, 3]]


def test_bad_libsvm_is_a_415() -> None:
    with pytest.raises(UnsupportedMediaType, match="Loading libsvm data failed with Exception"):
        parse_body("libsvm", b"1 a:b")


@pytest.mark.parametrize(
    ("kind", "columns", "features", "message"),
    [
        ("csv", 20, 20, None),
        ("csv", 19, 20, None),  # one missing column tolerated (issue #410)
        (
            "csv",
            21,
            20,
            "Feature size of csv inference data 21 is not consistent with feature size of trained model 20.",
        ),
        (
            "csv",
            18,
            20,
            "Feature size of csv inference data 18 is not consistent with feature size of trained model 20.",
        ),
        ("recordio-protobuf", 30, 29, "Feature size of recordio-protobuf inference data 30 is not consistent"),
        ("libsvm", 21, 20, None),
        ("libsvm", 5, 20, None),
        ("libsvm", 22, 20, "Feature size of libsvm inference data 22 is larger than feature size of trained model 20."),
    ],
)
def test_pickled_model_feature_count_check(kind: str, columns: int, features: int, message: str | None) -> None:
    if message is None:
        check_feature_count(kind, columns, features)  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match=message.replace(".", r"\.")):
            check_feature_count(kind, columns, features)  # type: ignore[arg-type]
