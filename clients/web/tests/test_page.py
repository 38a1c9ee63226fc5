"""The browser page in headless Debian Chromium (the `browser` fixture) against the real nginx of
the `server` fixture. Saves a screenshot to target/clients/page.png (or
$PUBSUB_SCREENSHOT).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOT = Path(os.environ.get("PUBSUB_SCREENSHOT", ROOT / "target" / "clients" / "page.png"))


def log_text(browser) -> str:
    return browser.find_element("id", "log").text


def wait_for_log(browser, text: str, timeout: float = 10) -> str:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(browser, timeout).until(lambda b: text in log_text(b))
    except TimeoutException:
        pytest.fail(f"{text!r} never appeared in #log:\n{log_text(browser)}")
    return log_text(browser)


def set_field(browser, name: str, value: str) -> None:
    field = browser.find_element("css selector", f'#fields input[data-field="{name}"]')
    field.clear()
    field.send_keys(value)


def test_the_page_pings_on_load_then_sends_commands(server, browser):
    from selenium.webdriver.support.ui import Select

    browser.get(server.http("/?ping=hello%20browser"))
    log = wait_for_log(browser, 'pong_resp state="hello browser"')
    assert "← seq 1 pong_resp" in log and " ms)" in log  # the sequence and the round-trip time

    Select(browser.find_element("id", "command")).select_by_value("cmd_kafka_list_offset")
    set_field(browser, "topic", "t")
    set_field(browser, "partition", "-1")
    set_field(browser, "timestamp", "9223372036854775807")
    browser.find_element("id", "send").click()
    log = wait_for_log(browser, "error_resp to cmd_kafka_list_offset: bad partition")
    assert "timestamp=9223372036854775807" in log  # the request as sent: int64 kept exact

    set_field(browser, "partition", "0")
    browser.find_element("id", "send").click()
    wait_for_log(browser, "← seq 3 kafka_list_offset_resp offset=42")

    Select(browser.find_element("id", "command")).select_by_value("cmd_kafka_fetch")
    browser.find_element("id", "send").click()
    wait_for_log(browser, "error_resp to cmd_kafka_fetch: unknown command: cmd_kafka_fetch")

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))

    browser.find_element("id", "disconnect").click()
    wait_for_log(browser, "closed: code 1000")


def test_the_page_shows_a_close_code_and_what_it_means(server, browser):
    browser.get(server.http("/"))
    browser.find_element("id", "connect").click()
    wait_for_log(browser, "connected to")
    state = browser.find_element("id", "ping-state")
    binary = "base64:" + "AP8A" * 10000  # 30,000 bytes of 00 ff 00: shown as base64 again
    browser.execute_script("arguments[0].value = arguments[1]", state, binary)
    browser.find_element("id", "ping").click()
    wait_for_log(browser, f'← seq 1 pong_resp state="{binary}"')
    # 75,000 bytes, over the 65,535-byte limit:
    browser.execute_script("arguments[0].value = arguments[1]", state, "base64:" + "A" * 100000)
    browser.find_element("id", "ping").click()
    wait_for_log(browser, "closed: code 1009 (message too big")
    wait_for_log(browser, "cmd_ping: no reply before the close")


def connect_to(browser, server, path: str) -> None:
    browser.get(server.http("/"))
    url = browser.find_element("id", "url")
    url.clear()
    url.send_keys(server.ws(path))
    browser.find_element("id", "connect").click()


def test_the_page_shows_pushes_from_a_pushing_peer(server, browser):
    connect_to(browser, server, "/raw-push")
    wait_for_log(browser, '⇐ push seq 7 pong_resp state="second"')
    browser.find_element("id", "ping").click()
    log = wait_for_log(browser, '← seq 1 pong_resp state="hello"')
    assert log.index('⇐ push seq 0 pong_resp state="first"') < log.index("seq 7")
    assert log.index('⇐ push seq 0 pong_resp state="between"') < log.index("← seq 1")


def test_the_page_shows_pushes(server, browser):
    if not server.has_push():
        pytest.skip("the server has no push yet: apisix_pubsub_rs instances lack send()")
    connect_to(browser, server, "/push")
    wait_for_log(browser, '⇐ push seq 0 pong_resp state="pushed"')


def test_the_page_shows_the_servers_counters_live(server, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def counter(b, series: str) -> int | None:
        rows = b.find_elements("css selector", f'#metrics tr[data-series="{series}"] td.value')
        return int(rows[0].text) if rows else None

    browser.get(server.http("/"))
    WebDriverWait(browser, 10).until(lambda b: counter(b, "connections_open") is not None)
    before = counter(browser, "commands_total{command=cmd_ping}") or 0
    browser.get(server.http("/?ping=counted"))
    wait_for_log(browser, 'pong_resp state="counted"')
    browser.find_element("id", "ping").click()
    wait_for_log(browser, "← seq 2 pong_resp")
    try:
        # The page polls every second; the demo's one worker serves its figures live.
        WebDriverWait(browser, 10).until(lambda b: (counter(b, "commands_total{command=cmd_ping}") or 0) >= before + 2)
        WebDriverWait(browser, 10).until(lambda b: (counter(b, "connections_open") or 0) >= 1)
    except TimeoutException:
        pytest.fail("the counters never moved:\n" + browser.find_element("id", "metrics").text)
    assert "/metrics" in browser.find_element("id", "metrics-status").text
