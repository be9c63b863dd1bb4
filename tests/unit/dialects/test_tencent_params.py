from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyturn.core.errors import (
    DomainError,
    InvalidParameter,
    InvalidParameterValue,
    MissingParameter,
)
from keyturn.dialects.tencent.params import Params, unflatten


def test_unflatten_lists_and_objects() -> None:
    flat = [
        ("InstanceId", "x"),
        ("Users.0.UserName", "a"),
        ("Users.1.UserName", "b"),
        ("Users.0.Host", "%"),
        ("InstanceIds.0", "crs-1"),
    ]
    assert unflatten(flat) == {
        "InstanceId": "x",
        "Users": [{"UserName": "a", "Host": "%"}, {"UserName": "b"}],
        "InstanceIds": ["crs-1"],
    }


@pytest.mark.parametrize(
    "flat",
    [
        [("A.1", "x")],
        [("A", "x"), ("A.0", "y")],
        [("A", "1"), ("A", "2")],
        [("A..B", "x")],
        [("A.99999", "x")],
    ],
)
def test_unflatten_rejects_malformed_names(flat: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidParameter):
        unflatten(flat)


@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=4)), max_size=8))
def test_unflatten_only_raises_domain_errors(flat: list[tuple[str, str]]) -> None:
    with contextlib.suppress(DomainError):
        unflatten(flat)


@pytest.mark.parametrize(("raw", "value"), [(True, True), ("False", False), ("true", True)])
def test_booleans_from_json_and_query(raw: object, value: bool) -> None:
    assert Params({"NoAuth": raw}).boolean("NoAuth", False) is value


def test_typed_errors_name_the_parameter() -> None:
    params = Params({"NoAuth": "maybe", "Limit": "x", "Password": 3, "Offset": -1})
    with pytest.raises(InvalidParameter, match="NoAuth"):
        params.boolean("NoAuth", False)
    with pytest.raises(InvalidParameter, match="Limit"):
        params.integer("Limit", 20)
    with pytest.raises(InvalidParameter, match="Password"):
        params.string("Password")
    with pytest.raises(InvalidParameterValue, match="Offset"):
        params.integer("Offset", 0)
    with pytest.raises(MissingParameter, match="InstanceId"):
        params.required_string("InstanceId")
    assert params.integer("Missing", 7) == 7
