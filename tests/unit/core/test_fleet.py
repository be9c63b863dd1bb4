"""Fleet jobs' pure rules: wave planning, the failure threshold, selectors, account options,
and passwords generated to each product's rules."""

from __future__ import annotations

import pytest

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.fleet import (
    FleetOptions,
    Selector,
    Threshold,
    check_job_id,
    parse_accounts,
    parse_labels,
    wave_of,
    wave_sizes,
)
from keyturn.core.model import MAX_LABELS, EngineKind, Product, check_labels
from keyturn.core.passwords import (
    ALIBABA_KVSTORE,
    GENERATED_LENGTH,
    HUAWEI_DCS,
    TENCENT_POSTGRES,
    TENCENT_REDIS,
    TENCENT_TDMYSQL,
    PasswordPolicy,
    generate,
)


def test_waves_start_with_the_canary_then_double() -> None:
    assert wave_sizes(200, 5) == [5, 10, 20, 40, 80, 45]
    assert wave_sizes(10_000, 10) == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 4890]
    assert wave_sizes(3, 5) == [3]
    assert wave_sizes(0, 5) == []


def test_wave_of_agrees_with_the_sizes() -> None:
    for total, canary in [(200, 5), (1, 1), (777, 3), (10_000, 10)]:
        expected = [w for w, size in enumerate(wave_sizes(total, canary)) for _ in range(size)]
        assert [wave_of(p, canary) for p in range(total)] == expected
    with pytest.raises(ValueError):
        wave_of(0, 0)


def test_count_threshold_trips_past_the_count() -> None:
    three = Threshold.parse("3")
    assert not three.tripped(3, 10)
    assert three.tripped(4, 10)
    assert Threshold.parse("0").tripped(1, 1)
    assert not Threshold.parse("0").tripped(0, 100)


def test_percent_threshold_is_of_the_finished_targets_and_exact() -> None:
    five = Threshold.parse("5%")
    assert not five.tripped(10, 200)  # exactly 5 %
    assert five.tripped(11, 200)
    assert five.tripped(1, 1)  # a failed canary of one is 100 %
    assert not five.tripped(0, 0)
    assert Threshold.parse("2.5%").tripped(3, 100)
    assert not Threshold.parse("2.5%").tripped(25, 1000)
    assert str(Threshold.parse("2.5%")) == "2.5%"
    assert str(Threshold.parse("7")) == "7"


@pytest.mark.parametrize("text", ["", "x", "-1", "101%", "5%%", "1e9"])
def test_bad_thresholds_are_refused(text: str) -> None:
    with pytest.raises(InvalidParameterValue):
        Threshold.parse(text)


def test_options_are_bounded_and_round_trip() -> None:
    options = FleetOptions(canary=3, max_in_flight=16, stop_after=Threshold.parse("5%"))
    assert FleetOptions.from_json(options.to_json()) == options
    for bad in ({"canary": 0}, {"max_in_flight": 0}, {"max_in_flight": 1_000_001}):
        with pytest.raises(InvalidParameterValue):
            FleetOptions(**bad)  # type: ignore[arg-type]


def test_selector_globs_accounts_and_json() -> None:
    selector = Selector(
        tenant_id="t1",
        product=Product.TENCENT_REDIS,
        instances="crs-fleet*",
        region="ap-guangzhou",
        accounts=parse_accounts(["postgres:app", "mysql:app@%"]),
    )
    assert selector.matches_id("crs-fleet001") and not selector.matches_id("crs-other")
    assert selector.account_for(EngineKind.REDIS) == "default"
    assert selector.account_for(EngineKind.POSTGRES) == "app"
    assert selector.account_for(EngineKind.MYSQL) == "app@%"
    assert Selector.from_json(selector.to_json()) == selector
    assert parse_accounts(["ops"]) == {e: "ops" for e in EngineKind}
    assert Selector(tenant_id="t").account_for(EngineKind.MYSQL) is None
    with pytest.raises(InvalidParameterValue):
        parse_accounts(["redis:"])


def test_job_ids_are_checked() -> None:
    assert check_job_id("fj-0123456789ab") == "fj-0123456789ab"
    for bad in ("fj-1", "../x", "fj-0123456789ABC", ""):
        with pytest.raises(InvalidParameterValue):
            check_job_id(bad)


@pytest.mark.parametrize(
    "policy", [TENCENT_REDIS, TENCENT_POSTGRES, TENCENT_TDMYSQL, ALIBABA_KVSTORE, HUAWEI_DCS]
)
def test_generated_passwords_follow_the_product_rules(policy: PasswordPolicy) -> None:
    seen = set()
    for _ in range(200):
        password = generate(policy)
        policy.check(password)
        assert len(password) == min(GENERATED_LENGTH, policy.max_length)
        assert all(any(ch in c.chars for ch in password) for c in policy.classes)
        seen.add(password)
    assert len(seen) == 200


def test_label_selectors_all_must_match() -> None:
    selector = Selector(tenant_id="1", labels=parse_labels(["team=orders", "env=prod"]))
    assert selector.labels == (("env", "prod"), ("team", "orders"))
    assert selector.matches_labels((("env", "prod"), ("region", "x"), ("team", "orders")))
    assert not selector.matches_labels((("env", "prod"),))
    assert not selector.matches_labels((("env", "dev"), ("team", "orders")))
    assert Selector(tenant_id="1").matches_labels(())
    assert Selector.from_json(selector.to_json()).labels == selector.labels
    # An empty value is a value: it matches only an instance labelled with it.
    assert parse_labels(["canary="]) == (("canary", ""),)


@pytest.mark.parametrize(
    "values",
    [["env"], ["Env=prod"], ["env=prod", "env=dev"], ["=x"], ["env=a b"], ["env=" + "v" * 64],
     ["k" * 64 + "=v"], ["env=pr\nod"], [f"k{n}=v" for n in range(MAX_LABELS + 1)]],
)  # fmt: skip
def test_bad_label_selectors_are_refused(values: list[str]) -> None:
    with pytest.raises(InvalidParameterValue):
        parse_labels(values)


def test_instance_labels_are_bounded_and_sorted() -> None:
    assert check_labels({"team": "orders", "env": "prod"}) == (("env", "prod"), ("team", "orders"))
    assert len(check_labels({f"k{n}": "v" for n in range(MAX_LABELS)})) == MAX_LABELS
    for bad in ({"-x": "v"}, {"x": 1}, {"x": "ü"}, {"": "v"}):
        with pytest.raises(InvalidParameterValue):
            check_labels(bad)
