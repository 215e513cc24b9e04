"""Drives the healthmon dashboard in Debian's headless Chromium (Playwright
for Python, never a downloaded browser), for tests/browser.rs.

Scenarios:
  flip  register a service through the form (after a refused one shows its
        field error), see it turn UP, print "UP" and wait for a line on stdin
        (the test then makes the target fail), see DOWN without a reload,
        open the service's page, and optionally a public status page.
  key   keys exist: the page asks for the key, refuses a wrong one, then
        works with the right one (the list and its live status).

Screenshots go to --out. Any console error (a CSP refusal among them) or
uncaught page error fails the run. Exit status 0 means every step passed;
otherwise the last line says which step failed.
"""

import argparse
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

STEP_TIMEOUT_MS = 20_000


def log(msg):
    print(msg, flush=True)


def row(page, name):
    return page.locator("li.row", has=page.get_by_role("link", name=name, exact=True))


def flip(page, args):
    page.goto(args.base + "/")
    expect(page.locator("#conn")).to_have_text("live", timeout=STEP_TIMEOUT_MS)
    page.evaluate("window.__sameDocument = true")

    # A refused registration shows the API's error beside the field.
    page.get_by_role("button", name="Add service").click()
    dialog = page.locator("dialog#dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name", exact=True).fill(args.name)
    dialog.get_by_label("URL", exact=True).fill("ftp://example.com/")
    dialog.get_by_label("Interval (seconds)").fill("1")
    dialog.get_by_role("button", name="Save").click()
    url_error = dialog.locator('[data-field="url"] .field-error')
    expect(url_error).to_be_visible(timeout=STEP_TIMEOUT_MS)
    log("field error shown: " + url_error.inner_text())

    dialog.get_by_label("URL", exact=True).fill(args.target)
    dialog.get_by_label("Tags").fill("browser, demo")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden(timeout=STEP_TIMEOUT_MS)

    r = row(page, args.name)
    expect(r).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    expect(r.locator(".badge")).to_have_text("UP", timeout=STEP_TIMEOUT_MS)
    # The lazily loaded sparkline draws once the first checks are stored.
    expect(r.locator("svg.spark polyline")).to_have_count(1, timeout=STEP_TIMEOUT_MS)
    page.screenshot(path=f"{args.out}/dashboard-up.png")
    log("UP")

    line = sys.stdin.readline()
    if line.strip() != "go":
        raise RuntimeError(f"expected 'go' on stdin, got {line!r}")
    started = time.monotonic()
    expect(r.locator(".badge")).to_have_text("DOWN", timeout=STEP_TIMEOUT_MS)
    seen_after = time.monotonic() - started
    if page.evaluate("window.__sameDocument") is not True:
        raise RuntimeError("the page was reloaded")
    log(f"DOWN seen {seen_after:.2f} s after the target failed, without a reload")

    # A fresh load reads the snapshot again and fetches each row's charts
    # (hourly rollups are written every few seconds): the picture for the
    # README shows every row's sparkline and uptime bars.
    page.reload()
    expect(page.locator("#conn")).to_have_text("live", timeout=STEP_TIMEOUT_MS)
    expect(r.locator(".badge")).to_have_text("DOWN")
    expect(page.locator("li.row rect.bar-up")).not_to_have_count(0, timeout=STEP_TIMEOUT_MS)
    expect(page.locator("li.row svg.spark polyline")).to_have_count(4, timeout=STEP_TIMEOUT_MS)
    page.screenshot(path=f"{args.out}/dashboard.png")

    # Search narrows the list to the one service.
    page.get_by_label("Search").fill(args.name)
    expect(page.locator("li.row")).to_have_count(1)
    page.get_by_label("Search").fill("")

    r.get_by_role("link", name=args.name, exact=True).click()
    expect(page).to_have_url(re.compile(r"#/services/\d+$"))
    expect(page.locator(".svc-head h1 .svc-name")).to_have_text(args.name, timeout=STEP_TIMEOUT_MS)
    expect(page.locator(".svc-head .badge")).to_have_text("DOWN")
    expect(page.locator("table.log-table tbody tr").first).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(page.locator("svg.chart polyline")).to_have_count(1)
    expect(page.locator(".change-list li").first).to_be_visible(timeout=STEP_TIMEOUT_MS)
    expect(page.locator(".uptime-value").first).not_to_have_text("–", timeout=STEP_TIMEOUT_MS)
    page.screenshot(path=f"{args.out}/service.png")
    log("service page shown")

    if args.status_slug:
        page.goto(f"{args.base}/status/{args.status_slug}")
        page.wait_for_load_state("load")
        page.screenshot(path=f"{args.out}/status-page.png")
        log("status page shown")


def key(page, args):
    page.goto(args.base + "/")
    dialog = page.locator("dialog#dialog")
    expect(dialog.get_by_label("API key")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    page.screenshot(path=f"{args.out}/key-asked.png")
    dialog.get_by_label("API key").fill("hm_not_a_real_key")
    dialog.get_by_role("button", name="Use this key").click()
    expect(dialog.locator(".form-error")).to_contain_text("not a valid API key", timeout=STEP_TIMEOUT_MS)
    log("wrong key refused")
    dialog.get_by_label("API key").fill(args.key)
    dialog.get_by_role("button", name="Use this key").click()
    expect(dialog).to_be_hidden(timeout=STEP_TIMEOUT_MS)
    expect(page.locator("#conn")).to_have_text("live", timeout=STEP_TIMEOUT_MS)
    r = row(page, args.name)
    expect(r.locator(".badge")).to_have_text("UP", timeout=STEP_TIMEOUT_MS)
    if page.evaluate("sessionStorage.getItem('healthmon.key')") != args.key:
        raise RuntimeError("the key is not kept in sessionStorage")
    page.screenshot(path=f"{args.out}/dashboard-with-key.png")
    log("works with the key")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", choices=["flip", "key"], required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--name", default="browser-test")
    p.add_argument("--target", default="")
    p.add_argument("--key", default="")
    p.add_argument("--status-slug", default="")
    args = p.parse_args()

    problems = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=args.chromium,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("console", lambda m: m.type == "error" and problems.append("console: " + m.text))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        try:
            {"flip": flip, "key": key}[args.scenario](page, args)
        except Exception:
            page.screenshot(path=f"{args.out}/failure-{args.scenario}.png", full_page=True)
            raise
        finally:
            browser.close()
    # Chromium logs every 4xx answer as a failed resource load. The refused
    # key (401) and the refused registration (422) are the scenarios' point;
    # any other (a missing module: 404) is a fault of the page.
    expected = ("status of 401 (Unauthorized)", "status of 422 (Unprocessable Entity)")
    problems = [p for p in problems if not p.endswith(expected)]
    if problems:
        raise RuntimeError("the page logged errors:\n" + "\n".join(problems))
    log("PASS")


if __name__ == "__main__":
    main()
