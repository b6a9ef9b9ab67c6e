#!/usr/bin/env python3
"""Drives an auditor's vote in forja's web UI (Debian's chromium with
Playwright): sign in with the tenant's key, open the version that awaits
audit, pick the auditor, load its key file (read by the page, signed with
WebCrypto Ed25519, never uploaded) and approve; the version is promoted.
Also checks that the key file's text never appears in a request.

usage: web-audit-e2e.py URL KEY AUDITOR_KEY_FILE OUTDIR
Prints one line per stage; exits non-zero on the first failure.
"""

import os
import sys

from playwright.sync_api import expect, sync_playwright

URL, KEY, KEY_FILE, OUT = sys.argv[1:5]
CHROMIUM = os.environ.get("FORJA_CHROMIUM", "/usr/bin/chromium")
SECRET = open(KEY_FILE).read().strip()
os.makedirs(OUT, exist_ok=True)


def stage(msg):
    print("stage:", msg, flush=True)


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB").new_page()
    sent, errors = [], []
    page.on("request", lambda r: sent.append((r.url, r.post_data or "")))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(URL + "/")
    page.fill("#key", KEY)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("button", name="Models", exact=True).click()
    row = page.get_by_test_id("version").filter(has_text="awaiting_audit").first
    expect(row).to_be_visible(timeout=30_000)
    vid = row.locator("code").inner_text()
    row.get_by_role("button", name="Audit", exact=True).click()
    panel = page.get_by_test_id("audit")
    expect(panel.get_by_test_id("tally")).to_contain_text("0/1 votes")
    stage("audit panel for " + vid)

    panel.get_by_label("Your auditor key (it never leaves the browser)").set_input_files(KEY_FILE)
    panel.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_test_id("champion")).to_have_text(vid, timeout=30_000)
    page.screenshot(path=f"{OUT}/audit.png", full_page=True)
    stage("approved: " + vid + " is the champion")

    assert not any(SECRET in url or SECRET in body for url, body in sent), "the key left the browser"
    assert not errors, errors
    print("web audit e2e: ok", flush=True)
    browser.close()
