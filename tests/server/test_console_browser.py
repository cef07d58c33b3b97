"""The web console in headless Chromium against the real local stack.

`llmfleet up` (what `make up` runs: vLLM on the CPU, moto, the agent, the router)
serves the page; Playwright drives Debian's chromium (`make test` installs it;
nothing downloads a browser). The error states that the real stack cannot be
told to produce (no backend, a key's limit, an unreachable API) get routers of
their own in front of the fake engine. Each view is saved as a screenshot in
LLMFLEET_SCREENSHOTS (default .run/screenshots; `make screenshots` refreshes
the copies docs/console.md shows, in docs/console).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from llmfleet.core.net import free_port
from tests.helpers.fake_upstream import FakeControl
from tests.helpers.local_up import LocalUp, local_up
from tests.helpers.router import TEST_KEY, RouterFactory

pytestmark = [pytest.mark.browser]

KEY = "sk-console-test"
SHOTS = Path(os.environ.get("LLMFLEET_SCREENSHOTS", ".run/screenshots"))
# As root, without a sandbox, and with nothing that phones home: this machine's network
# is closed and Chromium's background connections would only fail (and slow it down).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def chromium_path() -> str:
    path = os.environ.get("LLMFLEET_CHROMIUM") or shutil.which("chromium") or ""
    if not path:
        pytest.fail("no chromium on PATH: `make test` installs Debian's chromium package "
                    "(or set LLMFLEET_CHROMIUM to a Chromium binary)")
    return path


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context each test: its own session storage, so no key carries over."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page threw: {errors}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalUp]:
    with local_up(tmp_path_factory.mktemp("up"), KEY, models="llmfleet-tiny") as up:
        assert f"console  : {up.url}/" in up.banner, up.banner
        yield up


def connect(page: Page, url: str, key: str, api_base: str = "") -> None:
    """Open the console and enter the key as a person would."""
    page.goto(url)
    expect(page.locator("#connection")).to_have_attribute("open", "")  # no key yet: asks
    page.fill("#api-base", api_base)
    page.fill("#api-key", key)
    page.click("#connection-form button[type=submit]")


def shot(page: Page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def chat(page: Page, model: str, prompt: str, max_tokens: int = 48) -> None:
    page.select_option("#model", model)
    page.fill("#max-tokens", str(max_tokens))
    # Greedy: the generated model's answer to a given prompt is then the same every run
    # (sampled, it can end at its first token).
    page.fill("#temperature", "0")
    page.fill("#prompt", prompt)
    page.click("#send")


def number(page: Page, metric: str) -> float | None:
    text = page.locator(f'.card[data-metric="{metric}"] b').text_content() or "-"
    found = re.search(r"[\d.]+", text)
    return float(found.group()) if found else None


@pytest.mark.engine
def test_playground_streams_tokens_from_vllm_and_shows_the_routed_model(
        page: Page, stack: LocalUp) -> None:
    connect(page, stack.url, KEY)
    expect(page.locator("#model option[value=auto]")).to_have_count(1)
    expect(page.locator("#model option[value=llmfleet-tiny]")).to_have_count(1)
    # Count the pieces the answer was built from: one per streamed delta event.
    page.evaluate("""() => {
        window.pieces = 0;
        new MutationObserver((records) => { window.pieces += records.length; })
            .observe(document.getElementById('output'), {childList: true, subtree: true});
    }""")
    chat(page, "auto", "Tell me about GPUs.", max_tokens=160)
    expect(page.locator("#send")).to_be_enabled(timeout=60_000)
    expect(page.locator("#banner")).to_be_hidden()
    pieces = page.evaluate("() => window.pieces")
    assert pieces >= 10, pieces
    # The generated model answers in long runs without spaces; they wrap inside the box
    # (they once widened the page to 6,900 px).
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    assert (page.locator("#output").text_content() or "").strip()
    expect(page.locator("#stat-model")).to_have_text("llmfleet-tiny")
    expect(page.locator("#stat-route")).not_to_have_text(re.compile(r"^(-|asked for by name)$"))
    expect(page.locator("#stat-ttft")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator("#stat-tps")).to_have_text(re.compile(r"^\d+(\.\d)?$"))
    expect(page.locator("#stat-tokens")).to_have_text(re.compile(r"^\d+ / \d+$"))
    shot(page, "playground")


def load(url: str, stop: threading.Event, seconds: float = 30.0) -> int:
    """Streamed chats, two at a time, until `stop` is set (or `seconds` pass)."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=3)
    deadline = time.monotonic() + seconds

    def one(_: int) -> None:
        list(client.chat.completions.create(
            model="llmfleet-tiny", messages=[{"role": "user", "content": "hello"}],
            max_tokens=32, stream=True))

    sent = 0
    with ThreadPoolExecutor(2) as pool:
        while not stop.is_set() and time.monotonic() < deadline:
            list(pool.map(one, range(2)))
            sent += 2
    return sent


def test_the_answer_shows_while_it_is_still_streaming(
        page: Page, make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    # vLLM on two shared cores can finish before the browser reads twice; a paced engine
    # shows that the page renders each piece as it comes, not the whole answer at the end.
    control, url = fake
    control.chunk_delay_s = 0.05
    with make_router([url]) as router:
        connect(page, router.url, TEST_KEY)
        expect(page.locator("#model option[value='fake-model']")).to_have_count(1)
        chat(page, "fake-model", "hello", max_tokens=40)
        expect(page.locator("#output")).to_contain_text("t3")
        expect(page.locator("#send")).to_be_disabled()  # still streaming, text already shown
        expect(page.locator("#output")).not_to_contain_text("t39")
        expect(page.locator("#send")).to_be_enabled(timeout=10_000)
        expect(page.locator("#output")).to_contain_text("t39")
        expect(page.locator("#stat-tokens")).to_have_text(re.compile(r"^\d+ / 40$"))


@pytest.mark.engine
def test_fleet_view_numbers_move_after_requests(page: Page, stack: LocalUp) -> None:
    connect(page, stack.url, KEY)
    page.goto(stack.url + "/#fleet")
    expect(page.locator('.card[data-metric="requests_per_s"]')).to_be_visible()
    expect(page.locator("#backends tbody td.ok")).to_have_text("healthy")
    stop = threading.Event()
    with ThreadPoolExecutor(1) as background:
        sending = background.submit(load, stack.url, stop)
        started = time.monotonic()
        moved = False
        # Bounded: the router samples every 2 s over a 10 s window. Some history first,
        # so that the charts (and the screenshot) show the load arriving.
        while time.monotonic() - started < 60 and not moved:
            time.sleep(1)
            moved = bool(time.monotonic() - started > 12 and number(page, "requests_per_s")
                         and number(page, "output_tokens_per_s")
                         and number(page, "cost_usd_per_hour"))
        shot(page, "fleet")
        stop.set()
        assert sending.result() > 0
    assert moved, "requests/s, tokens/s or the agent's cost never showed"
    # The agent `make up` runs prices the machine as a g5.xlarge ($1.006/hr on demand).
    expect(page.locator('.card[data-metric="cost_usd_per_hour"] b')).to_have_text("$1.006/hr")
    expect(page.locator('.card[data-metric="cost_usd_per_million_output_tokens"] b')
           ).to_have_text(re.compile(r"^\$\d+\.\d\d$"))
    assert page.locator("#chart-rps path[data-series='requests/s']").get_attribute("d")
    expect(page.locator("#fleet-scope")).to_contain_text("g5.xlarge")


@pytest.mark.engine
def test_sizing_explorer_ranks_instances_and_offers_the_tfvars(
        page: Page, stack: LocalUp) -> None:
    connect(page, stack.url, KEY)
    page.goto(stack.url + "/#sizing")
    expect(page.locator("#plan-model option[value='Llama-3.1-8B']")).to_have_count(1)
    page.select_option("#plan-model", "Llama-3.1-8B")
    page.fill("#plan-rate", "20")
    page.click("#plan-run")
    rows = page.locator("#plan-table tbody tr")
    expect(rows.first).to_have_class("best")
    assert rows.count() > 10
    expect(page.locator("#tfvars")).to_contain_text('instance_type = "')
    expect(page.locator("#plan-chart circle.recommended")).to_have_count(1)
    assert page.locator("#plan-chart circle.point").count() > 10
    expect(page.locator("#plan-summary")).to_contain_text("Recommended")
    shot(page, "sizing", full_page=False)


@pytest.mark.engine
def test_a_wrong_key_shows_the_auth_error(page: Page, stack: LocalUp) -> None:
    connect(page, stack.url, "sk-wrong")
    banner = page.locator("#banner")
    expect(banner).to_be_visible()  # listing the models already fails
    expect(banner).to_have_attribute("data-kind", "auth")
    chat(page, "auto", "hello")
    expect(banner).to_contain_text("The API key was refused (HTTP 401)")
    expect(page.locator("#output")).to_have_text("")
    shot(page, "auth-error", full_page=False)


def test_no_backend_says_so(page: Page, make_router: RouterFactory) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with make_router([dead], unhealthy_threshold=1) as router:
        connect(page, router.url, TEST_KEY)
        page.select_option("#model", "auto")
        page.click("#send")
        banner = page.locator("#banner")
        expect(banner).to_have_attribute("data-kind", "unavailable")
        expect(banner).to_contain_text("No backend can serve this right now (HTTP 503)")
        page.goto(router.url + "/#fleet")
        expect(page.locator("#backends tbody td.bad")).to_have_text("down")
        expect(banner).to_contain_text("no healthy backend")


def test_a_rate_limited_key_is_told_when_to_retry(
        page: Page, make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    with make_router([fake[1]], rate_limit_rpm=2) as router:
        connect(page, router.url, TEST_KEY)  # listing the models is free; each chat costs one
        expect(page.locator("#model option[value='fake-model']")).to_have_count(1)
        for _ in range(3):
            chat(page, "fake-model", "hello", max_tokens=4)
            expect(page.locator("#send")).to_be_enabled()
        banner = page.locator("#banner")
        expect(banner).to_have_attribute("data-kind", "rate")
        expect(banner).to_contain_text(re.compile(r"Rate limited \(HTTP 429\).*Retry after \d+ s"))


def test_an_unreachable_api_is_a_network_error(
        page: Page, make_router: RouterFactory, fake: tuple[FakeControl, str]) -> None:
    with make_router([fake[1]]) as router:
        gone = f"http://127.0.0.1:{free_port()}"
        connect(page, router.url, TEST_KEY, api_base=gone)
        banner = page.locator("#banner")
        expect(banner).to_have_attribute("data-kind", "network")
        expect(banner).to_contain_text(f"Cannot reach the API at {gone}")
