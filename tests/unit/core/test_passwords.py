from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyturn.core.errors import (
    PasswordCharsetViolation,
    PasswordCompositionViolation,
    PasswordLengthViolation,
    PasswordPolicyViolation,
)
from keyturn.core.passwords import ALIBABA_KVSTORE, HUAWEI_DCS, TENCENT_POSTGRES, TENCENT_REDIS


@pytest.mark.parametrize(
    "password", ["Passw0rd!2024", "abcdefg1", "ABCDEFGH!", "zy456987", "a" * 31 + "1"]
)
def test_tencent_redis_accepts(password: str) -> None:
    TENCENT_REDIS.check(password)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Ab1!", "8-32 characters"),
        ("A1" * 17, "8-32 characters"),
        ("/Abcdef12", "must not start with '/'"),
        ("abcdefgh", "at least 2 of"),
        ("12345678", "at least 2 of"),
        ("Abcdefg 1", "not allowed"),
        ("Abcdefg`1", "not allowed"),
        ("Abcdéfg12", "not allowed"),
    ],
)
def test_tencent_redis_refuses_with_the_rule_not_the_password(password: str, rule: str) -> None:
    with pytest.raises(PasswordPolicyViolation) as caught:
        TENCENT_REDIS.check(password)
    assert rule in caught.value.message
    assert password not in caught.value.message


@given(st.text(max_size=40))
def test_check_never_raises_anything_else(password: str) -> None:
    with contextlib.suppress(PasswordPolicyViolation):
        TENCENT_REDIS.check(password)


def test_describe_names_the_rules() -> None:
    assert "8-32 characters" in TENCENT_REDIS.describe()


@pytest.mark.parametrize(
    ("password", "error"),
    [
        ("Sh0rt!", PasswordLengthViolation),
        ("Passw0rd2024", PasswordCompositionViolation),
        ("/Passw0rd!24", PasswordCompositionViolation),
        ("Passw0rd!2024é", PasswordCharsetViolation),
    ],
)
def test_tencent_postgres_names_the_broken_rule(password: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        TENCENT_POSTGRES.check(password)


def test_tencent_postgres_accepts_all_four_kinds() -> None:
    TENCENT_POSTGRES.check("1234qwer()A")
    TENCENT_POSTGRES.check("Passw0rd'2024")


@pytest.mark.parametrize("password", ["uWonno_2212", "Abcdefg1", "abc123!@#", "ABC_-=+()1"])
def test_alibaba_kvstore_accepts(password: str) -> None:
    ALIBABA_KVSTORE.check(password)


@pytest.mark.parametrize(
    ("password", "error"),
    [
        ("Ab1_", PasswordLengthViolation),
        ("Ab1_" * 9, PasswordLengthViolation),
        ("abcdefgh1", PasswordCompositionViolation),
        ("Abcdefg1?", PasswordCharsetViolation),
    ],
)
def test_alibaba_kvstore_refuses(password: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        ALIBABA_KVSTORE.check(password)


@pytest.mark.parametrize(
    "password", ["Passw0rd|2024", "abc123?<>", "A" * 60 + "b1c", "a`~\\{}.,/?B"]
)
def test_huawei_dcs_accepts(password: str) -> None:
    HUAWEI_DCS.check(password)


@pytest.mark.parametrize(
    ("password", "error"),
    [
        ("Ab1?", PasswordLengthViolation),
        ("Ab1?" * 17, PasswordLengthViolation),
        ("abcdefgh12", PasswordCompositionViolation),
        ("Abcdefg1%", PasswordCharsetViolation),
        ("Abcdefg1:", PasswordCharsetViolation),
    ],
)
def test_huawei_dcs_refuses(password: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        HUAWEI_DCS.check(password)
