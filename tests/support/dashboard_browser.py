"""Drives the healthmon dashboard in Debian's headless Chromium (Playwright
for Python, never a downloaded browser), for tests/browser.rs.

Scenarios:
  flip  register a service through the form (after a refused one shows its
        field error), see it turn UP, print "UP" and wait for a line on stdin
        (the test then makes the target fail), see DOWN without a reload,
        open the service's page, and optionally a public status page.
  key   keys exist: the page asks for the key, refuses a wrong one, then
        works with the right one (the list and its live status).
  scale --count services exist (svc-000001...): the page loads them over the
        WebSocket only, keeps only the rows in view in the DOM, scrolls,
        searches, filters and sorts; prints a SCALE line of timings.

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
    # Notes the wall-clock time the row turns DOWN, as the DOM changes
    # (expect() polls with growing pauses, up to a second).
    page.evaluate(
        """(name) => {
            window.__downAt = null;
            const rows = document.querySelector("ul.rows");
            const seen = () => [...rows.querySelectorAll("li.row")].some((li) => {
                const a = li.querySelector(".name a");
                const badge = li.querySelector(".badge");
                return a && a.textContent === name && badge && badge.textContent === "DOWN";
            });
            const obs = new MutationObserver(() => {
                if (!window.__downAt && seen()) {
                    window.__downAt = Date.now();
                    obs.disconnect();
                }
            });
            obs.observe(rows, { subtree: true, childList: true, characterData: true });
        }""",
        args.name,
    )
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
    log(f"DOWN_AT {page.evaluate('window.__downAt')}")

    # A fresh load reads the snapshot again and fetches each row's charts
    # (hourly rollups are written every few seconds): the picture for the
    # README shows every row's sparkline and uptime bars.
    page.reload()
    expect(page.locator("#conn")).to_have_text("live", timeout=STEP_TIMEOUT_MS)
    expect(r.locator(".badge")).to_have_text("DOWN")
    expect(page.locator("li.row rect.bar-up")).not_to_have_count(0, timeout=STEP_TIMEOUT_MS)
    expect(page.locator("li.row svg.spark polyline")).to_have_count(4, timeout=STEP_TIMEOUT_MS)
    page.screenshot(path=f"{args.out}/dashboard.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=f"{args.out}/dashboard-dark.png")
    page.emulate_media(color_scheme="light")

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
    admin(page, args)


def admin(page, args):
    """Channels and maintenance windows: add one of each, then delete it."""
    dialog = page.locator("dialog#dialog")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("link", name="Channels").click()
    page.get_by_role("button", name="Add channel").click()
    dialog.get_by_label("Name", exact=True).fill("ops-webhook")
    dialog.get_by_label("Settings (JSON)").fill('{"url": "https://hooks.example.com/healthmon"}')
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden(timeout=STEP_TIMEOUT_MS)
    expect(page.get_by_role("cell", name="ops-webhook", exact=True)).to_be_visible(timeout=STEP_TIMEOUT_MS)
    page.get_by_role("button", name="Delete channel ops-webhook").click()
    expect(page.get_by_text("No channels yet.")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    log("channel added and deleted")

    page.once("dialog", lambda d: d.accept())
    page.get_by_role("link", name="Maintenance").click()
    page.get_by_role("button", name="Add window").click()
    dialog.get_by_label("Name", exact=True).fill("database upgrade")
    dialog.get_by_label("Start (one-off)").fill("2030-01-01T02:00")
    # An end before the start is refused, and the form says so.
    dialog.get_by_label("End (one-off)").fill("2030-01-01T01:00")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".form-error")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    dialog.get_by_label("End (one-off)").fill("2030-01-01T03:00")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden(timeout=STEP_TIMEOUT_MS)
    expect(page.get_by_role("cell", name="database upgrade", exact=True)).to_be_visible(timeout=STEP_TIMEOUT_MS)
    page.screenshot(path=f"{args.out}/maintenance.png")
    page.get_by_role("button", name="Delete window database upgrade").click()
    expect(page.get_by_text("No maintenance windows.")).to_be_visible(timeout=STEP_TIMEOUT_MS)
    log("maintenance window added and deleted")


LONG_TASKS = """
window.__longest = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
}).observe({ type: "longtask", buffered: true });
"""


def frames(page, script):
    """Runs `script` in the page, then waits two animation frames: the
    milliseconds until the change is painted."""
    return page.evaluate(
        """(script) => new Promise((done) => {
            const t = performance.now();
            (0, eval)(script);
            requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t)));
        })""",
        script,
    )


def scale(page, args):
    n = args.count
    requests = []
    in_flight = {"now": 0, "most": 0}

    def started(r):
        requests.append(r.url)
        if "/logs?" in r.url or "/uptime?" in r.url:
            in_flight["now"] += 1
            in_flight["most"] = max(in_flight["most"], in_flight["now"])

    def ended(r):
        if "/logs?" in r.url or "/uptime?" in r.url:
            in_flight["now"] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    page.add_init_script(LONG_TASKS)
    started = time.monotonic()
    page.goto(args.base + "/")
    expect(page.locator(".counts")).to_contain_text(f"{n:,} services", timeout=120_000)
    load_ms = (time.monotonic() - started) * 1000
    dom_rows = page.locator("li.row").count()
    page.evaluate("window.__longest = 0")

    # Halfway down: the rows there are drawn, and only they.
    middle = n // 2
    scroll_ms = frames(page, f"document.querySelector('.scroller').scrollTop = {middle} * 56")
    expect(page.get_by_role("link", name=f"svc-{middle:06d}", exact=True)).to_be_visible()
    rows_after_scroll = page.locator("li.row").count()

    # Search: 100 of the names contain "svc-0777".
    started = time.monotonic()
    page.get_by_label("Search").fill("svc-0777")
    expect(page.locator(".counts")).to_contain_text("100 shown")
    filter_ms = (time.monotonic() - started) * 1000
    started = time.monotonic()
    page.get_by_label("Status").select_option("DOWN")
    expect(page.locator(".counts")).to_contain_text("10 shown")
    status_ms = (time.monotonic() - started) * 1000
    page.get_by_label("Search").fill("")
    page.get_by_label("Status").select_option("")
    started = time.monotonic()
    page.get_by_label("Sort by").select_option("status")
    expect(page.locator("li.row .badge").first).to_have_text("DOWN")
    sort_ms = (time.monotonic() - started) * 1000
    longest = page.evaluate("window.__longest")
    # The rows in view fetch their charts lazily, a few at a time.
    page.wait_for_function(
        "() => document.querySelectorAll('li.row[data-charts]').length > 0"
    )
    page.wait_for_load_state("networkidle")
    page.screenshot(path=f"{args.out}/dashboard-100k.png")

    path = lambda u: u.split("//", 1)[-1].split("/", 1)[-1]
    lists = [u for u in requests if path(u).startswith("services?") or path(u) == "services"]
    details = [u for u in requests if "/logs?" in u or "/uptime?" in u]
    log(
        f"SCALE services={n} load_ms={load_ms:.0f} dom_rows={dom_rows} "
        f"rows_after_scroll={rows_after_scroll} scroll_ms={scroll_ms:.0f} "
        f"search_ms={filter_ms:.0f} status_filter_ms={status_ms:.0f} sort_ms={sort_ms:.0f} "
        f"longest_task_ms={longest:.0f} list_requests={len(lists)} detail_requests={len(details)} "
        f"detail_in_flight_max={in_flight['most']}"
    )
    for u in lists:
        if "limit=1" not in u:
            raise RuntimeError(f"the page asked REST for the service list: {u}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", choices=["flip", "key", "scale"], required=True)
    p.add_argument("--count", type=int, default=100_000)
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
            {"flip": flip, "key": key, "scale": scale}[args.scenario](page, args)
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
