"""Driving the Prefect UIs' Custom run form in a real browser (Debian's chromium, selenium).

:class:`RunForm` clicks and types what a user does on a deployment's Custom run page
(``/deployments/deployment/<id>/run`` in the V1 UI, the same under ``/v2`` in the
V2 UI), for the two UIs Prefect 3.9 serves: a parameter's label and description,
the date pickers, a source kind's tab, its block picker and the "Add" dialog that
saves a new block, the dry-run switch and the Submit button.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Literal

from selenium.webdriver.common.keys import Keys

UI = Literal["v1", "v2"]

CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,2400",
)


def browser_missing() -> str | None:
    """Why no browser test can run here (``None``: chromium and chromedriver are there)."""
    missing = [b for b in ("chromium", "chromedriver") if shutil.which(b) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not installed (Debian packages chromium and "
            "chromium-driver; .ci/run installs them)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (dev dependency group)"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by Debian's chromedriver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = str(shutil.which("chromium"))
    driver = webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


_SERVER_REFUSED = ("Something went wrong", "Unknown error while")
"""What the V1 and V2 UIs show when a request failed on the server's side."""


def _literal(text: str) -> str:
    """``text`` as an XPath string literal."""
    if "'" not in text:
        return f"'{text}'"
    return "concat('" + "', \"'\", '".join(text.split("'")) + "')"


class RunForm:
    """The Custom run form of one deployment, in the V1 or V2 UI."""

    def __init__(self, driver: Any, ui_address: str, ui: UI, shots: Path | None = None) -> None:
        self.driver = driver
        self.base = ui_address if ui == "v1" else f"{ui_address}/v2"
        self.ui = ui
        self.shots = shots

    # ------------------------------------------------------------ finding things

    def wait(self, find: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        """Poll ``find`` until it returns something truthy (a page renders in steps)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                found = find()
                if found:
                    return found
            except Exception as exc:  # stale element while the page re-renders
                last = exc
            time.sleep(0.25)
        self.shot(f"timeout-{what}")
        raise AssertionError(f"{self.ui}: {what} not found after {timeout} s ({last})")

    def xpath(self, path: str, root: Any = None) -> list[Any]:
        from selenium.webdriver.common.by import By

        return [e for e in (root or self.driver).find_elements(By.XPATH, path) if e.is_displayed()]

    def shot(self, name: str) -> None:
        if self.shots is not None:
            self.shots.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(self.shots / f"{self.ui}-{name}.png"))

    def text(self) -> str:
        return str(self.driver.find_element("tag name", "body").text)

    def click(self, element: Any) -> None:
        from selenium.common.exceptions import ElementClickInterceptedException

        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        try:
            element.click()
        except ElementClickInterceptedException:  # a toast over it (the user moves it away)
            self.driver.execute_script("arguments[0].click();", element)

    def label(self, name: str, root: Any = None) -> Any:
        """The element whose own text is ``name`` (a parameter's or a field's label)."""
        return self.wait(
            lambda: self.xpath(
                f".//*[normalize-space(text())={_literal(name)} or "
                f"normalize-space(text())={_literal(name + ' (Optional)')}]",
                root,
            ),
            f"label {name!r}",
        )[0]

    def input_after(self, name: str, root: Any = None) -> Any:
        """The first text box, number box, date box or picker button after label ``name``."""
        lab = self.label(name, root)
        return self.wait(
            lambda: self.xpath(
                "following::*[self::input[not(@type='checkbox')] or self::textarea or "
                "self::button[@aria-haspopup='dialog']][1]",
                lab,
            ),
            f"input after {name!r}",
        )[0]

    # ------------------------------------------------------------ the form

    def open(self, deployment_id: object) -> None:
        self.driver.get(f"{self.base}/deployments/deployment/{deployment_id}/run")
        self.wait(lambda: self.xpath("//button[normalize-space()='Submit']"), "Submit button")
        self.label("repository")

    def run_name(self) -> str:
        return str(self.input_after("Run Name").get_attribute("value"))

    def set_date(self, name: str, day: date, root: Any = None) -> None:
        """Pick ``day`` in the date picker of parameter (or field) ``name``."""
        box = self.input_after(name, root)
        if self.ui == "v1":  # a native date input: type the digits in the locale's order
            self.click(box)
            box.send_keys(day.strftime("%m%d%Y"))
            return
        self.click(box)  # V2: a popover with a calendar and a text box (YYYY-MM-DD)
        typed = self.wait(
            lambda: self.xpath("//*[@role='dialog' or @data-radix-popper-content-wrapper]//input"),
            f"date box of {name!r}",
        )[0]
        typed.send_keys(Keys.CONTROL, "a")
        typed.send_keys(Keys.DELETE)
        typed.send_keys(day.isoformat(), Keys.ENTER)
        from selenium.common.exceptions import StaleElementReferenceException

        with contextlib.suppress(StaleElementReferenceException):  # Enter may have closed it
            typed.send_keys(Keys.ESCAPE)
        self.wait(
            lambda: (
                day.isoformat() in str(self.input_after(name, root).text)
                or day.strftime("%m/%d/%Y") in str(self.input_after(name, root).text)
                or not self.xpath("//*[@data-radix-popper-content-wrapper]")
            ),
            f"date of {name!r} set",
        )

    def choose_tab(self, title: str) -> None:
        """Click the tab ``title`` of a parameter with several types (the source kinds)."""
        tab = self.wait(
            lambda: self.xpath(f"//button[normalize-space()={_literal(title)}]"), f"tab {title}"
        )[0]
        self.click(tab)

    def add_block(self, name: str, fields: dict[str, Any]) -> None:
        """The picker's "Add": fill the new block's name and ``fields`` (label -> value),
        then create it (the picker then holds it)."""
        add = self.wait(lambda: self.xpath("//button[normalize-space()='Add']"), "Add button")[0]
        self.click(add)
        dialog = self.wait(lambda: self.xpath("//*[@role='dialog']"), "new block dialog")[-1]
        self._fill_block(name, fields, dialog)
        self.click_until(
            lambda: self.xpath(".//button[normalize-space()='Create']", dialog)[0],
            lambda: not self.xpath("//*[@role='dialog']"),
            "dialog closed",
        )
        self.wait(lambda: name in self.text(), f"block {name!r} in the picker")

    def create_block_page(self, slug: str, name: str, fields: dict[str, Any]) -> None:
        """Save a new block of type ``slug`` from the Blocks catalog's create page (the V2
        UI's way: its run-form "Add" dialog also submits the run form, see docs)."""
        self.driver.get(f"{self.base}/blocks/catalog/{slug}/create")
        save = "//button[normalize-space()='Save' or normalize-space()='Create']"
        self.wait(lambda: self.xpath(save), "Save button")
        self._fill_block(name, fields, None)
        self.click_until(
            lambda: self.xpath(save)[0],
            lambda: "/create" not in self.driver.current_url,
            "the saved block's page",
        )

    def _fill_block(self, name: str, fields: dict[str, Any], root: Any) -> None:
        self.input_after("Block Name" if self.ui == "v1" else "Name", root).send_keys(name)
        for label, value in fields.items():
            if isinstance(value, date):
                self.set_date(label, value, root)
                continue
            box = self.input_after(label, root)
            self.click(box)
            box.send_keys(Keys.CONTROL, "a")  # replace the default
            box.send_keys(str(value))
        self.shot(f"new-block-{name}")

    def pick_block(self, name: str) -> None:
        """Choose the saved block ``name`` in the visible block picker."""
        if self.ui == "v1":  # a native select over the styled box
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.select import Select

            path = f"//select[option[normalize-space()={_literal(name)}]]"
            select = self.wait(lambda: self.driver.find_elements(By.XPATH, path), "picker")[0]
            Select(select).select_by_visible_text(name)
            return
        picker = self.wait(lambda: self.xpath("//*[@aria-label='Select a block']"), "picker")
        self.click(picker[0])
        option = self.wait(
            lambda: self.xpath(f"//*[@role='option' and normalize-space()={_literal(name)}]"),
            f"option {name!r}",
        )[0]
        self.click(option)
        # the list closes with an animation; a click meanwhile only dismisses it
        self.wait(lambda: not self.xpath("//*[@role='listbox' or @role='option']"), "list closed")
        self.wait(lambda: name in self.text(), f"{name!r} picked")

    def switch_on(self, name: str) -> None:
        """Turn on the switch of boolean parameter ``name``."""
        lab = self.label(name)
        toggle = self.wait(
            lambda: self.xpath(
                "following::*[@role='switch' or self::input[@type='checkbox']][1]", lab
            ),
            f"switch {name!r}",
        )[0]
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", toggle)
        self.driver.execute_script("arguments[0].click();", toggle)

    def submit(self) -> None:
        self.shot("before-submit")
        self.click_until(
            lambda: self.xpath("//button[normalize-space()='Submit']")[0],
            lambda: "/run" not in self.driver.current_url,
            "the page after Submit",
        )

    def refusals(self) -> int:
        """How many messages saying that the server refused a request the UI shows
        (Prefect's server answers 503 while its SQLite database is busy; the UIs do not
        retry)."""
        signs = " or ".join(f"contains(normalize-space(), {_literal(t)})" for t in _SERVER_REFUSED)
        return len(self.xpath(f"//*[({signs}) and not(*[{signs}])]"))

    def click_until(
        self, button: Callable[[], Any], done: Callable[[], Any], what: str, tries: int = 3
    ) -> None:
        """Click ``button()`` until ``done()``: again, as a user would, when the UI says the
        server refused the request (a new message, see :meth:`refusals`), at most ``tries``
        times."""
        for attempt in range(tries):
            before = self.refusals()
            self.click(button())
            self.wait(lambda before=before: done() or self.refusals() > before, what, 90)
            if done():
                return
            self.shot(f"refused-{what}-{attempt}")
            time.sleep(1)
        raise AssertionError(f"{self.ui}: {what}: the server refused {tries} times")
