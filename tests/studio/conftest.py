"""Fixtures for Studio's tests: Studio and the fake provider as real processes, and Chromium.

- ``browser``: Debian's ``chromium`` driven through ``chromium-driver`` (Selenium), headless,
  one per test. When either is missing the test is skipped, unless ``CI`` is set: then it
  fails (``make browser-deps`` installs them).
- ``launch(name, *args, env=...)``: starts ``python <args>`` from the repository root, its
  output in a log; :meth:`Process.wait_for` waits for a line with a deadline. Every process is
  killed at teardown.
- ``studio(*args)``: starts ``flowai studio`` on a free port, waits until it answers, returns
  it with its ``url``.
- ``shoot(driver, name)``: saves a screenshot to ``$FLOWAI_STUDIO_SCREENSHOTS/<name>.png`` when
  that is set (``make studio-screenshots`` refreshes docs/studio/ this way), else nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from studio_procs import CHROMEDRIVER, CHROMIUM, DEADLINE_S, REPO, Process, Studio, free_port


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def launch_(name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        process = Process(name, list(args), full_env, tmp_path / f"{name}.log")
        started.append(process)
        return process

    yield launch_
    for process in started:
        process.kill()


@pytest.fixture
def studio(launch: Callable[..., Process]) -> Callable[..., Studio]:
    def start(*args: str, port: int | None = None, env: dict[str, str] | None = None) -> Studio:
        port = port or free_port()
        process = launch(
            f"studio-{port}",
            "-m",
            "flowai_harness.studio",
            "--port",
            str(port),
            *args,
            env=env,
        )
        process.wait_for("flowai studio: open http://")
        return Studio(process, port)

    return start


def _missing_browser() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not shutil.which(path):
            return f"{path} is missing: install Debian's {package} (make browser-deps)"
    return None


@pytest.fixture
def browser() -> Iterator[object]:
    missing = _missing_browser()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1360,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(DEADLINE_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shoot() -> Callable[[object, str], None]:
    where = os.environ.get("FLOWAI_STUDIO_SCREENSHOTS")

    def shoot_(driver: object, name: str) -> None:
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(where) / f"{name}.png"))  # type: ignore[attr-defined]

    return shoot_
