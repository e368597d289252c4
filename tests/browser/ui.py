"""Drives Archway's web pages in headless Chromium (Debian's, through Playwright's CDP client;
Playwright's own browser download is never used), as tests/ui.rs asks:

    python tests/browser/ui.py URL ADMIN_TOKEN OUTSIDER_TOKEN SCREENSHOT_DIR

Signs in as the admin, searches, narrows by a facet, opens the demo volume, browses to its
image, waits for the quick-look to load (a PNG of the image's size) and the histogram, runs a
reduction from the form, signs out; then signs in as a user without a grant and checks that
the demo volume and its objects are nowhere to be seen. Screenshots of each step go to
SCREENSHOT_DIR. Prints one JSON line of what it saw; exits non-zero on the first failed check,
saying which.
"""
import json
import os
import sys

from playwright.sync_api import sync_playwright

url, admin_token, outsider_token, shots = sys.argv[1:5]
chromium = os.environ.get("ARCHWAY_TEST_CHROMIUM", "/usr/bin/chromium")
os.makedirs(shots, exist_ok=True)
seen = {}


def check(cond, what):
    if not cond:
        print(json.dumps({"failed": what, "seen": seen}), flush=True)
        sys.exit(1)


def shot(page, name):
    page.screenshot(path=os.path.join(shots, f"{name}.png"), full_page=True)


def sign_in(page, token, then):
    page.goto(url + then)
    check(page.url.startswith(url + "/ui/login"), f"not sent to sign in: {page.url}")
    page.fill("input[name=token]", token)
    page.click("form#login button[type=submit]")
    page.wait_for_load_state()


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # `/` in a browser leads to the sign-in page.
    page.goto(url + "/")
    check(page.url.startswith(url + "/ui/login"), f"/ led to {page.url}")
    shot(page, "01-login")

    # A wrong token: the form again, with the message.
    page.fill("input[name=token]", "awt_not_a_token")
    page.click("form#login button[type=submit]")
    check("unknown" in page.inner_text("#error"), "no message for a wrong token")

    # Sign in; the volume list with facets.
    page.fill("input[name=token]", admin_token)
    page.click("form#login button[type=submit]")
    page.wait_for_url(url + "/ui/volumes")
    check(page.inner_text("#user") == "admin", "not signed in as admin")
    volumes = page.locator("article.volume").evaluate_all("els => els.map(e => e.dataset.volume)")
    seen["admin_volumes"] = volumes
    check("demo" in volumes, f"demo not listed: {volumes}")
    shot(page, "02-volumes")

    # Search by words, then narrow by the mission facet.
    page.fill("input[name=q]", "FITS images")
    page.click("form.search button[type=submit]")
    found = page.locator("article.volume").evaluate_all("els => els.map(e => e.dataset.volume)")
    check(found == ["demo"], f"search found {found}")
    page.click("a.facet[data-facet=mission]")
    check(page.locator("a.facet.on").count() == 1, "the facet is not shown as chosen")
    found = page.locator("article.volume").evaluate_all("els => els.map(e => e.dataset.volume)")
    check(found == ["demo"], f"facet found {found}")
    shot(page, "03-search-facet")

    # The volume page: facts, snippets, admin forms.
    page.click("article.volume[data-volume=demo] h2 a")
    check(page.inner_text("#volume-id") == "demo", "not the demo page")
    snippets = page.inner_text("#snippets")
    for s in ["boto3", "fsspec", "aws --endpoint-url", "rclone", "archway mount"]:
        check(s in snippets, f"no {s} snippet")
    check(page.locator("form#edit").count() == 1, "no edit form for the admin")
    seen["objects"] = page.inner_text("#objects")
    shot(page, "04-volume")

    # Browse to the image.
    page.click("#browse")
    page.click("tr.folder a:text('images/')")
    page.click("tr.object a:text('field1.fits')")
    check(page.inner_text("#key") == "images/field1.fits", "not the image's page")
    img = page.locator("img#quicklook")
    img.wait_for()
    page.wait_for_function(
        "() => { const i = document.getElementById('quicklook'); return i.complete && i.naturalWidth > 0; }",
        timeout=30000,
    )
    size = page.evaluate(
        "() => { const i = document.getElementById('quicklook'); return [i.naturalWidth, i.naturalHeight]; }"
    )
    seen["quicklook_size"] = size
    check(size == [128, 128], f"quick-look is {size}, not 128 x 128")
    png = page.request.get(url + img.get_attribute("src"))
    check(png.status == 200 and png.headers["content-type"] == "image/png", "quick-look not a PNG")
    body = png.body()
    check(body[:8] == b"\x89PNG\r\n\x1a\n" and len(body) > 1000, "quick-look bytes are not a PNG")
    seen["quicklook_bytes"] = len(body)
    page.wait_for_function(
        "() => { const i = document.getElementById('histogram'); return i.complete && i.naturalWidth > 0; }",
        timeout=30000,
    )
    check("SIMPLE" in page.inner_text("#header"), "no header shown")
    check("demo field 1" in page.inner_text("#science"), "no science index facts")
    shot(page, "05-object-quicklook")

    # A reduction from the form.
    page.select_option("form#reduce select[name=op]", "stats")
    page.click("form#reduce button[type=submit]")
    result = json.loads(page.inner_text("#reduce-result"))
    seen["reduce"] = {k: result[k] for k in ("op", "count", "bytes_read")}
    check(result["op"] == "stats" and result["count"] == 128 * 128, f"reduction: {result}")
    shot(page, "06-reduce")

    # The sky search finds the image around M51.
    page.goto(url + "/ui/search?ra=202.47&dec=47.19&radius=0.2")
    check("images/field1.fits" in page.inner_text("#found"), "cone search did not find field1")
    shot(page, "07-sky-search")

    # An error is a message, not a blank page.
    page.goto(url + "/ui/volumes/no-such-volume")
    check(page.locator("#error").count() == 1, "no error message for a missing volume")

    # Sign out: the pages ask to sign in again.
    page.goto(url + "/ui/volumes")
    page.click("nav form button[type=submit]")
    page.goto(url + "/ui/volumes")
    check(page.url.startswith(url + "/ui/login"), "still signed in after signing out")

    # A user without a grant: neither the volume nor its objects.
    sign_in(page, outsider_token, "/ui/volumes")
    volumes = page.locator("article.volume").evaluate_all("els => els.map(e => e.dataset.volume)")
    seen["outsider_volumes"] = volumes
    check("demo" not in volumes, f"the outsider sees demo: {volumes}")
    check("Archway demo" not in page.inner_text("main"), "the outsider sees the demo's mission")
    shot(page, "08-outsider-volumes")
    for path in [
        "/ui/volumes/demo",
        "/ui/volumes/demo/objects?prefix=images/",
        "/ui/volumes/demo/object?key=images/field1.fits",
    ]:
        resp = page.goto(url + path)
        check(resp.status == 404, f"{path} answered {resp.status} to the outsider")
        check("field1" not in page.inner_text("main").replace(path, ""), f"{path} shows the object")
    shot(page, "09-outsider-refused")
    ql = page.request.get(url + "/ui/volumes/demo/quicklook.png?key=images/field1.fits")
    check(ql.status == 404, f"the outsider's quick-look answered {ql.status}")
    page.goto(url + "/ui/search?ra=202.47&dec=47.19&radius=0.2")
    check("field1" not in page.inner_text("#found"), "the outsider's cone search finds field1")
    check(not errors, f"script errors on the pages: {errors}")
    browser.close()

print(json.dumps({"ok": True, "seen": seen}), flush=True)
