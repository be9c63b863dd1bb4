"""The web console in a real headless Chromium against a real ``keyturn serve`` and a real
redis-server: sign in with an admin token, find one instance among 300 by searching, reset its
password from the dialog (a password the dialog generated from the product's rules) and watch
the task reach ``succeed``, log in to Redis with it, find the reset in the audit page; a wrong
token (then shown among the overview's refusals), an expired or forged session and a form
posted without its CSRF token are refused (the same form with it saves a policy, and the
decision simulator answers); a tenant's token sees nothing of another tenant's; an instance
named ``<img src=x onerror=alert(1)>`` renders as inert text. Every page is screenshotted
(``tests/support/browser.py`` says where). One browser for the module."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.support.select import Select

from keyturn.console.app import CSP
from keyturn.console.sessions import COOKIE
from keyturn.core.model import Product
from keyturn.core.secrets import Secret
from keyturn.service.admin import Admin
from tests.support.admin_api import create_token, token_id
from tests.support.browser import Console, forged_session
from tests.support.keyturn_server import KEY_ID, OTHER_TENANT, TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, new_password
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine

TARGET = "crs-t4rget01"
TARGET_NAME = "orders-primary-cache"
XSS_ID = "crs-x55x55x5"
XSS = "<img src=x onerror=alert(1)>"
FILLERS = 300


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer(password=new_password()).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def keyturn(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisServer
) -> Iterator[KeyturnServer]:
    server = KeyturnServer(tmp_path_factory.mktemp("console"))
    url = redis.admin_url()

    async def register(admin: Admin) -> None:
        # Many instances, all on the one redis-server (the overview probes a few of them).
        for i in range(FILLERS):
            await admin.add_instance(
                tenant_id=TENANT,
                instance_id=f"crs-{i:08d}",
                product=Product.TENCENT_REDIS,
                region="ap-guangzhou",
                node_urls=[Secret(url)],
                name=f"cache-{i}",
            )
        for instance_id, name in ((TARGET, TARGET_NAME), (XSS_ID, XSS)):
            await admin.add_instance(
                tenant_id=TENANT,
                instance_id=instance_id,
                product=Product.TENCENT_REDIS,
                region="ap-guangzhou",
                node_urls=[Secret(url)],
                name=name,
            )

    server.start()  # loads the inventory's tenants
    server.with_admin(register)
    yield server
    if server.process is not None:
        server.stop()


@pytest.fixture(scope="module")
def token(keyturn: KeyturnServer) -> str:
    return create_token(keyturn, "--name", "console")


@pytest.fixture(scope="module")
def console(keyturn: KeyturnServer) -> Iterator[Console]:
    browser = Console(keyturn)
    yield browser
    browser.close()


def test_sign_in_find_reset_and_audit(
    console: Console, keyturn: KeyturnServer, redis: RedisServer, token: str
) -> None:
    console.sign_in(token)
    assert console.heading() == "Overview"
    assert console.cookie(COOKIE)
    console.find("#by-product")
    console.screenshot("overview")

    console.open("/instances")
    assert "of 302" in console.find(".pager").text  # many instances, paged
    console.screenshot("instances")
    console.find("#search").send_keys("ORDERS-primary")
    console.navigate_by("#find")
    console.until(lambda: len(console.all("#instances tbody tr")) == 1)
    console.navigate_by(f"#instances a[href='/console/instances/{TARGET}']")
    assert console.heading() == f"Instance {TARGET}"
    assert [row.text for row in console.all("#nodes tbody tr td:nth-child(2)")] == ["primary"]
    assert "default" in console.find("#accounts").text
    console.screenshot("instance")

    console.find("#open-reset").click()
    console.find("#generate").click()
    password = console.until(lambda: console.find("#generated").text)
    USED_PASSWORDS.append(password)  # the session's secret scan looks for it too
    assert 8 <= len(password) <= 32 and not password.startswith("/")
    console.screenshot("reset-dialog")
    console.find("#reset-submit").click()
    state = console.until(
        lambda: (
            console.find("#progress-state").get_attribute("data-state") in ("succeed", "failed")
            and console.find("#progress-state")
        )
    )
    assert state.get_attribute("data-state") == "succeed", console.find("#reset-progress").text
    console.screenshot("reset-succeeded")
    console.find("#close-reset").click()
    assert can_login(redis.port, password)
    redis.password = password  # the fixture's later calls log in with it
    task_id = str(console.find("#progress-task").get_attribute("textContent")).removeprefix("task ")

    console.open(f"/instances/{TARGET}")
    assert task_id in console.find("#instance-tasks").text
    console.screenshot("instance-after-reset")  # docs/console.png

    console.open(f"/tasks/{task_id}")
    assert "succeed" in console.find("#task-state").text
    console.screenshot("task")
    console.open("/tasks")
    assert task_id in console.find("#tasks").text
    console.screenshot("tasks")

    console.open("/audit")
    console.find("#audit-action").send_keys("console:ResetPassword")
    console.navigate_by("#audit-search")
    console.until(lambda: "console:ResetPassword" in console.find("#audit").text)
    rows = [r.text for r in console.all("#audit tbody tr")]
    assert any("succeeded" in r and task_id in r for r in rows), rows
    assert any("started" in r for r in rows), rows
    assert "intact" in console.find("#chain").text
    console.screenshot("audit")
    assert password not in keyturn.log()

    for path, name in (("/policies", "policies"), ("/keys", "keys"), ("/nodes", "nodes")):
        console.open(path)
        console.find("main table")
        console.screenshot(name)


def test_a_hostile_instance_name_renders_inert(console: Console, token: str) -> None:
    if not console.cookie(COOKIE):
        console.sign_in(token)
    console.open(f"/instances?q={XSS_ID}")
    cell = console.find("#instances tbody tr td:nth-child(2)")
    assert cell.text == XSS  # shown as text
    console.open(f"/instances/{XSS_ID}")
    assert XSS in console.find(".facts").text
    assert console.all("main img") == []
    assert "&lt;img src=x onerror=alert(1)&gt;" in console.driver.page_source
    time.sleep(0.3)  # time for an onerror to have fired, were there an image
    with pytest.raises(NoAlertPresentException):
        console.driver.switch_to.alert.text  # noqa: B018
    console.screenshot("hostile-name")


def test_a_wrong_token_is_refused(console: Console, keyturn: KeyturnServer, token: str) -> None:
    console.sign_in("kt_" + "x" * 43)
    assert "unknown or revoked" in console.find("#signin-error").text
    assert console.cookie(COOKIE) is None
    console.open("/instances")
    assert console.heading() == "keyturn console"  # back at the sign-in form
    console.screenshot("signin-refused")
    answer = httpx.get(f"http://{keyturn.endpoint}/console/tasks/1.json")
    assert answer.status_code == 401
    console.sign_in(token)  # the refusal is on the overview
    refusals = console.find("#refusals").text
    assert "console:SignIn" in refusals and "MissingAuthorization" in refusals


def test_a_tenant_token_sees_only_its_tenant(keyturn: KeyturnServer) -> None:
    scoped = create_token(keyturn, "--tenant", OTHER_TENANT)
    base = f"http://{keyturn.endpoint}/console"
    with httpx.Client(base_url=base) as client:
        form = client.get("/signin")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        assert client.post("/signin", data={"csrf": csrf, "token": scoped}).status_code == 303
        listed = client.get("/instances")
        assert listed.status_code == 200 and "0-0 of 0" in listed.text
        assert TARGET not in listed.text
        # Another tenant's instance answers as one nobody has.
        assert client.get(f"/instances/{TARGET}").status_code == 404
        assert client.get("/instances/crs-n0b0dy00").status_code == 404


def test_an_expired_session_is_refused(
    console: Console, keyturn: KeyturnServer, token: str
) -> None:
    now = time.time()
    kept = token_id(keyturn, token)
    base = f"http://{keyturn.endpoint}/console"
    fresh = forged_session(keyturn, kept, issued=now - 60, seen=now - 60)
    assert httpx.get(base + "/instances", cookies={COOKIE: fresh}).status_code == 200
    for issued, seen in ((now - 3600, now - 31 * 60), (now - 9 * 3600, now - 60)):  # idle, too old
        cookie = forged_session(keyturn, kept, issued=issued, seen=seen)
        answer = httpx.get(base + "/instances", cookies={COOKIE: cookie})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/signin?expired=1"
    tampered = fresh[:-2] + ("AA" if not fresh.endswith("AA") else "BB")
    assert httpx.get(base + "/instances", cookies={COOKIE: tampered}).status_code == 303

    console.open("/signin")  # the cookie's path
    console.driver.add_cookie({"name": COOKIE, "value": cookie, "path": "/console"})
    console.open("/instances")
    assert "session has ended" in console.find("#signin-expired").text
    console.screenshot("session-expired")


def test_a_form_without_its_csrf_token_is_refused(
    console: Console, keyturn: KeyturnServer, token: str
) -> None:
    console.sign_in(token)
    assert console.heading() == "Overview"
    console.open("/policies")
    console.find("#policy-document").clear()
    form = console.find("form.editor")
    form.find_element("css selector", "input[name=tenant]").send_keys(TENANT)
    form.find_element("css selector", "input[name=name]").send_keys("from-the-browser")
    console.find("#policy-document").send_keys('{"statements": []}')
    console.driver.execute_script("document.querySelector('form.editor input[name=csrf]').remove()")
    console.navigate_by("#save-policy")
    console.until(lambda: console.heading() == "Refused")
    assert "CSRF" in console.find("main").text
    console.screenshot("csrf-refused")
    console.open("/policies")
    assert "from-the-browser" not in console.find("#policies").text

    # With its token the same form saves the policy, and the simulator explains a decision.
    form = console.find("form.editor")
    form.find_element("css selector", "input[name=tenant]").send_keys(TENANT)
    form.find_element("css selector", "input[name=name]").send_keys("from-the-browser")
    console.navigate_by("#save-policy")
    console.until(lambda: console.heading() == "Policy from-the-browser")
    console.open("/policies")
    assert "from-the-browser" in console.find("#policies").text
    Select(console.find("#check-key")).select_by_value(KEY_ID)
    console.find("#check-action").send_keys("redis:ResetPassword")
    console.find("#check-resource").send_keys(f"qcs::redis:ap-guangzhou:uin/{TENANT}:instance/x")
    console.navigate_by("#check")
    assert "allowed" in console.find("#decision").text
    console.screenshot("policy-check")

    # The same through HTTP: a signed-in session, no token, 403 and nothing queued.
    session = console.cookie(COOKIE)
    answer = httpx.post(
        f"http://{keyturn.endpoint}/console/instances/{TARGET}/resets",
        data={"account": "default", "password": new_password()},
        cookies={COOKIE: session or ""},
    )
    assert answer.status_code == 403
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_cookies_and_headers(keyturn: KeyturnServer, token: str) -> None:
    base = f"http://{keyturn.endpoint}/console"
    form = httpx.get(base + "/signin")
    assert form.headers["content-security-policy"] == CSP
    assert "<script>" not in form.text and " style=" not in form.text
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
    answer = httpx.post(base + "/signin", data={"csrf": csrf, "token": token}, cookies=form.cookies)
    assert answer.status_code == 303
    set_cookie = next(
        v for v in answer.headers.get_list("set-cookie") if v.startswith(COOKIE + "=")
    )
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP here; under TLS it is Secure
    assert token not in set_cookie
