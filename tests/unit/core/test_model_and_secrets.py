from __future__ import annotations

import pickle

import pytest

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.model import EngineKind, Product, parse_node_url
from keyturn.core.secrets import Secret


def test_secret_is_masked_everywhere() -> None:
    secret = Secret("hunter2-Pa55")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret} {[secret]} { ({'k': secret}) }"
    assert secret.reveal() == "hunter2-Pa55"
    assert secret == Secret("hunter2-Pa55")
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_parse_node_url() -> None:
    address = parse_node_url("redis://default:p%40ss@127.0.0.1:6380/0", EngineKind.REDIS)
    assert (address.host, address.port, address.username) == ("127.0.0.1", 6380, "default")
    assert address.password is not None and address.password.reveal() == "p@ss"
    assert address.public_url() == "redis://default@127.0.0.1:6380/0"
    assert "p@ss" not in repr(address)


def test_parse_node_url_defaults_the_user() -> None:
    address = parse_node_url("redis://:pw@localhost:1", EngineKind.REDIS)
    assert address.username == "default"


@pytest.mark.parametrize(
    "url", ["http://h:1", "redis://h", "redis://:secretpw@:1", "redis://h:99999", "not a url"]
)
def test_parse_node_url_errors_never_echo_the_url(url: str) -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        parse_node_url(url, EngineKind.REDIS)
    assert "secretpw" not in caught.value.message


def test_product_knows_its_engine_and_id_format() -> None:
    assert Product.TENCENT_REDIS.engine is EngineKind.REDIS
    assert Product.TENCENT_REDIS.id_pattern.match("crs-5a4py64p")
    assert not Product.TENCENT_REDIS.id_pattern.match("postgres-5a4py64p")
