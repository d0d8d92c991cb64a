"""/docs as a person sees it: Debian's headless Chromium renders every documented operation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from rates_platform.http.ops import openapi_document
from tests.support import ApiServer, PreparedDatabase

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
)
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
RENDER_TIMEOUT = 30


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chrome]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"headless Chromium is required and missing ({', '.join(missing)}): install the "
            "Debian packages chromium and chromium-driver (`make system-packages`)"
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(RENDER_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def api(sample_db: PreparedDatabase) -> Iterator[ApiServer]:
    server = ApiServer(sample_db.app)
    try:
        yield server
    finally:
        server.stop()


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in HTTP_METHODS
        if method in item
    }


def rendered_operations(driver: Chrome) -> set[tuple[str, str]]:
    pairs: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('.opblock')].map(b => ["
        "b.querySelector('.opblock-summary-method').textContent,"
        "b.querySelector('.opblock-summary-path').dataset.path])"
    )
    return {(method, path) for method, path in pairs}


def wait_for(driver: Chrome, condition: Callable[[Chrome], object], what: str) -> None:
    try:
        WebDriverWait(driver, RENDER_TIMEOUT).until(condition)
    except TimeoutException:
        page = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"{what} within {RENDER_TIMEOUT} s; the page shows:\n{page}") from None


def problems_in(log: list[dict[str, Any]]) -> list[str]:
    """Console errors: failed loads, CSP violations, script errors."""
    return [
        entry["message"]
        for entry in log
        if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]
    ]


def test_docs_render_every_operation_under_a_strict_policy(api: ApiServer, browser: Chrome) -> None:
    expected = documented_operations()
    browser.get(api.base + "/docs")
    # Swagger UI 4 met OpenAPI 3.1 with a .version-pragma: "Unable to render this definition".
    wait_for(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock, .errors-wrapper, .version-pragma"),
        "Swagger UI drew neither an operation nor an error",
    )
    page_text = browser.find_element(By.TAG_NAME, "body").text
    assert "Unable to render" not in page_text
    assert not browser.find_elements(By.CSS_SELECTOR, ".errors-wrapper"), page_text
    assert rendered_operations(browser) == expected

    rates_get = openapi_document()["paths"]["/rates"]["get"]
    block = browser.find_element(By.CSS_SELECTOR, ".opblock-get:has([data-path='/rates'])")
    summary = block.find_element(By.CSS_SELECTOR, ".opblock-summary-description").text
    assert summary == rates_get["summary"]
    block.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait_for(
        browser,
        lambda _: block.find_elements(By.CSS_SELECTOR, "tr[data-param-name]"),
        "GET /rates showed no parameters",
    )
    shown = {
        cell.get_attribute("data-param-name")
        for cell in block.find_elements(By.CSS_SELECTOR, "tr[data-param-name]")
    }
    assert shown == {parameter["name"] for parameter in rates_get["parameters"]}

    # Usable, not just drawn: "Try it out" sends the examples to the API under the policy.
    block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    block.find_element(By.CSS_SELECTOR, ".execute").click()
    wait_for(
        browser,
        lambda _: block.find_elements(
            By.CSS_SELECTOR, ".live-responses-table .response-col_status"
        ),
        "Try it out showed no response",
    )
    statuses = block.find_elements(By.CSS_SELECTOR, ".live-responses-table .response-col_status")
    assert [cell.text for cell in statuses][-1] == "200"

    assert problems_in(browser.get_log("browser")) == []
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert api.base + "/openapi.json" in loaded
    assert [url for url in loaded if not url.startswith(api.base + "/")] == []


def test_the_policy_is_enforced_and_its_violations_are_seen(
    api: ApiServer, browser: Chrome
) -> None:
    """The console check above can fail: an inline script is refused, and reported."""
    browser.get(api.base + "/docs")
    browser.execute_script(
        "const s = document.createElement('script');"
        "s.textContent = 'window.inlineRan = true';"
        "document.body.appendChild(s);"
    )
    assert browser.execute_script("return window.inlineRan === true") is False
    violations = [
        message
        for message in problems_in(browser.get_log("browser"))
        if "Content Security Policy" in message
    ]
    assert violations, "an inline script ran or was refused without a console report"
