"""The page at / in a real browser: Debian's chromium, headless, driven by selenium through chromedriver, against a
real uvicorn on loopback serving `create_app`. It uploads real photos and reads the answer the way a person would.

Set CASSAVA_EDGE_SCREENSHOT=docs/serve-page.png to save the phone-width screenshot of a diagnosis (the README's).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install 'cassava-edge[serve]')")
uvicorn = pytest.importorskip("uvicorn", reason="the [serve] extra is not installed (pip install 'cassava-edge[serve]')")
pytest.importorskip("selenium", reason="selenium is not installed (pip install 'cassava-edge[dev]')")
httpx = pytest.importorskip("httpx", reason="httpx is not installed (pip install 'cassava-edge[dev]')")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from cassava_edge import Classifier  # noqa: E402
from cassava_edge.serve import ServeSettings, create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        "Debian's chromium and chromedriver are not installed (apt-get install chromium chromium-driver; .ci/run does)",
        allow_module_level=True,
    )

# The phone the page must be usable on: the narrowest common Android width.
PHONE_WIDTH, PHONE_HEIGHT = 360, 800
ANSWER_SECONDS = 60  # generous bound on one photo's answer on a shared 2-core machine


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` on a real uvicorn at 127.0.0.1 on a free port, in a thread; stopped (and joined) on exit."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + ANSWER_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="cassava-edge-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        phone(driver, PHONE_WIDTH, PHONE_HEIGHT)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def phone(driver: WebDriver, width: int, height: int) -> None:
    """A phone's viewport (headless chromium will not make a window narrower than 500 px)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
    )


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier()  # the bundled model, as `cassava-edge serve` runs it


@pytest.fixture(scope="module")
def ok_photo(classifier: Classifier, field_rows: list[dict[str, str]], data_dir: Path) -> Path:
    """The first field photo the Python API diagnoses with status ok."""
    for row in field_rows[:20]:
        photo = data_dir / "field" / "images" / row["image_id"]
        if classifier.classify(photo).status == "ok":
            return photo
    raise AssertionError("none of the first 20 field photos is ok under the bundled model")


@pytest.fixture(scope="module")
def other_photo(classifier: Classifier, data_dir: Path) -> Path:
    """The first photo of something else (a car, a cat, a maize leaf) that the Python API calls not_cassava."""
    for photo in sorted((data_dir / "not-cassava" / "images").glob("*.jpg"))[::40][:30]:
        if classifier.classify(photo).status == "not_cassava":
            return photo
    raise AssertionError("none of 30 not-cassava photos is not_cassava under the bundled model")


def full_name(classifier: Classifier, label: str) -> str:
    """How the page names a class: the metadata's full name, then the short label when they differ."""
    name = classifier.metadata.label_names[classifier.labels.index(label)]
    return name if name == label else f"{name} ({label})"


def check_photo(driver: WebDriver, photo: Path) -> str:
    """Choose `photo` on the page, then from the keyboard Tab to the button and press Enter; wait for the answer;
    the result region's status."""
    chooser = driver.find_element(By.ID, "photo")
    chooser.send_keys(str(photo))
    button = driver.find_element(By.ID, "check")
    WebDriverWait(driver, 10).until(lambda _: button.is_enabled())
    driver.execute_script("arguments[0].focus()", chooser)
    ActionChains(driver).send_keys(Keys.TAB).perform()
    assert driver.switch_to.active_element == button, "Tab from the photo chooser does not reach the button"
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    result = driver.find_element(By.ID, "result")
    WebDriverWait(driver, ANSWER_SECONDS).until(lambda _: result.get_attribute("data-status") not in ("none", "busy"))
    return result.get_attribute("data-status")


def text_of(driver: WebDriver, selector: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, selector).text


def test_a_real_photo_gets_its_diagnosis_on_a_phone(browser: WebDriver, classifier: Classifier, ok_photo: Path) -> None:
    expected = classifier.classify(ok_photo)
    with served(create_app(classifier, ServeSettings())) as url:
        browser.get(url)
        assert check_photo(browser, ok_photo) == "ok"
        assert text_of(browser, "#result .diagnosis") == full_name(classifier, expected.label)
        assert text_of(browser, "#result .confidence") == f"Confidence {round(expected.confidence * 100)}% (calibrated)"
        # The five classes as bars, best first, with the same percentages as the Python API.
        bars = browser.find_elements(By.CSS_SELECTOR, "#result .bars li")
        ranked = sorted(expected.probabilities.items(), key=lambda item: -item[1])
        assert [bar.find_element(By.CLASS_NAME, "name").text for bar in bars] == [
            full_name(classifier, label) for label, _ in ranked
        ]
        assert bars[0].find_element(By.CLASS_NAME, "value").text == f"{round(ranked[0][1] * 100)}%"
        # Usable at 360 px: nothing wider than the screen, every control labelled, the answer announced.
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE_WIDTH
        assert browser.execute_script(
            "return [...document.querySelectorAll('input, button')].every("
            "e => e.labels && e.labels.length || e.textContent.trim())"
        )
        assert browser.find_element(By.ID, "result").get_attribute("aria-live") == "polite"
        screenshot = os.environ.get("CASSAVA_EDGE_SCREENSHOT")
        if screenshot:
            save_screenshot(browser, Path(screenshot))


def save_screenshot(driver: WebDriver, path: Path, width: int = 390) -> None:
    """The whole page at a phone's width, as a 256-colour PNG (the README's figure; the photo would make a
    full-colour one 250 KB)."""
    phone(driver, width, 844)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    phone(driver, width, height)
    driver.save_screenshot(str(path))
    phone(driver, PHONE_WIDTH, PHONE_HEIGHT)
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def test_an_unsure_answer_says_probably_and_how_to_retake(browser: WebDriver, ok_photo: Path) -> None:
    # A minimum confidence no answer reaches: every photo that is a cassava leaf comes back uncertain.
    unsure = Classifier(min_confidence=1.0)
    expected = unsure.classify(ok_photo)
    assert expected.status == "uncertain"
    with served(create_app(unsure, ServeSettings())) as url:
        browser.get(url)
        assert check_photo(browser, ok_photo) == "uncertain"
        assert text_of(browser, "#result .diagnosis") == f"Probably {full_name(unsure, expected.top_k[0][0])}"
        advice = text_of(browser, "#result .advice")
        for tip in ("one leaf filling the frame", "in focus", "in daylight"):
            assert tip in advice


def test_a_file_that_is_not_a_photo_fails_with_the_reason(
    browser: WebDriver, classifier: Classifier, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo of a leaf\n")
    with served(create_app(classifier, ServeSettings())) as url:
        browser.get(url)
        assert check_photo(browser, notes) == "failed"
        # The reason the service gives for this upload, as the page shows it.
        answer = httpx.post(url + "v1/classify", files={"image": ("notes.txt", notes.read_bytes(), "text/plain")})
        assert answer.status_code == 422
        reason = answer.json()["error"]
        assert reason and text_of(browser, "#result .error") == reason


def test_a_photo_of_something_else_is_called_not_a_cassava_leaf(
    browser: WebDriver, classifier: Classifier, other_photo: Path
) -> None:
    with served(create_app(classifier, ServeSettings())) as url:
        browser.get(url)
        assert check_photo(browser, other_photo) == "not_cassava"
        assert text_of(browser, "#result .diagnosis") == "This photo does not look like a cassava leaf."
        assert not browser.find_elements(By.CSS_SELECTOR, "#result .bars")  # no disease to show


def test_a_refused_request_shows_the_services_reason(browser: WebDriver, classifier: Classifier, ok_photo: Path) -> None:
    # An upload limit under the photo's size: the service answers 413 with no result row.
    settings = ServeSettings(max_upload_mb=ok_photo.stat().st_size / 2 / 2**20)
    with served(create_app(classifier, settings)) as url:
        answer = httpx.post(url + "v1/classify", files={"image": (ok_photo.name, ok_photo.read_bytes(), "image/jpeg")})
        assert answer.status_code == 413
        browser.get(url)
        assert check_photo(browser, ok_photo) == "failed"
        assert text_of(browser, "#result .error") == answer.json()["error"]


def test_an_api_key_is_asked_for_once_and_kept(browser: WebDriver, classifier: Classifier, ok_photo: Path) -> None:
    with served(create_app(classifier, ServeSettings(api_key="s3cret-key"))) as url:
        browser.get(url)
        # The page learns from v1/model that the service needs a key, and asks before any photo is sent.
        key_form = browser.find_element(By.ID, "key-form")
        WebDriverWait(browser, 10).until(lambda _: key_form.is_displayed())
        assert browser.switch_to.active_element == browser.find_element(By.ID, "api-key")  # focus is in it
        ActionChains(browser).send_keys("s3cret-key", Keys.ENTER).perform()
        assert not key_form.is_displayed()
        assert check_photo(browser, ok_photo) == "ok"
        # Kept: a reload does not ask again and the next photo is answered too.
        browser.refresh()
        WebDriverWait(browser, 10).until(lambda _: browser.find_element(By.ID, "model-line").text)
        assert not browser.find_element(By.ID, "key-form").is_displayed()
        assert check_photo(browser, ok_photo) == "ok"
