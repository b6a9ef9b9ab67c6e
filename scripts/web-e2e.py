#!/usr/bin/env python3
"""Drives forja's web UI in Debian's chromium with Playwright, the whole
loop a person does: sign in, chat (streamed), correct an answer, watch the
pending count rise, train, follow the progress bar to 100 %, promote the
new version, see it answer, roll back. Also: the key never appears in a
URL or in localStorage, the page carries a strict CSP, stored model output
with <script>, event handlers and javascript: links renders inert, and
another tenant's history is not listed.

usage: web-e2e.py URL KEY OTHER_TENANT_TITLE OUTDIR CORRECTED_DOCX ADMIN_KEY
Prints one line per stage; exits non-zero on the first failure.
Screenshots of each view go to OUTDIR. CORRECTED_DOCX is a corrected
version of a draft the node wrote (one paragraph rewritten, one moved).
"""

import json
import os
import sys
import urllib.request

from playwright.sync_api import expect, sync_playwright

URL, KEY, OTHER_TITLE, OUT, CORRECTED, ADMIN_KEY = sys.argv[1:7]
CHROMIUM = os.environ.get("FORJA_CHROMIUM", "/usr/bin/chromium")
os.makedirs(OUT, exist_ok=True)


def api(method, path, body=None):
    req = urllib.request.Request(
        URL + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def stage(msg):
    print("stage:", msg, flush=True)


# Stored output a model could have written: must render inert.
HOSTILE = (
    "<script>window.__pwned = 1</script>\n\n"
    "[click me](javascript:window.__pwned=2) "
    '<img src=x onerror="window.__pwned=3"> **bold**'
)
api("POST", "/v1/conversations", {"title": "hostile output", "messages": [
    {"role": "user", "content": "hola"},
    {"role": "assistant", "content": HOSTILE},
]})

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
    page = ctx.new_page()
    urls, errors = [], []
    page.on("request", lambda r: urls.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: d.accept("e2e rollback") if d.type == "prompt" else d.accept())

    resp = page.goto(URL + "/")
    csp = resp.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
    page.screenshot(path=f"{OUT}/signin.png")
    page.fill("#key", "forja-sk-wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("API key")
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("tenant")).to_have_text("acme")
    stage("signed in")

    # Hostile stored output renders inert; the other tenant's history is not listed.
    expect(page.get_by_role("button", name="hostile output", exact=True)).to_be_visible()
    assert page.get_by_role("button", name=OTHER_TITLE).count() == 0, "another tenant's conversation"
    page.get_by_role("button", name="hostile output", exact=True).click()
    expect(page.locator(".turn.assistant strong")).to_have_text("bold")
    assert page.evaluate("window.__pwned") is None, "stored output ran script"
    assert page.locator(".turns script").count() == 0
    assert page.locator(".turns img").count() == 0
    hrefs = page.locator(".turns a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert not any(h and h.strip().lower().startswith("javascript:") for h in hrefs), hrefs
    stage("hostile output inert")

    # Modes live on the node: add one, and it is in the picker (and stays).
    page.get_by_role("button", name="Edit modes", exact=True).click()
    page.get_by_role("button", name="Add mode", exact=True).click()
    page.get_by_label("Mode name").last.fill("Acta del Pleno")
    page.get_by_label("Instruction (system message)").last.fill("Redacta como el acta oficial del Pleno.")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_test_id("mode").locator("option", has_text="Acta del Pleno")).to_have_count(1)
    modes = api("GET", "/v1/modes")
    assert modes["custom"] and modes["data"][-1]["name"] == "Acta del Pleno", modes
    stage("custom mode saved on the node")

    # Chat, streamed; then correct the answer.
    page.get_by_role("button", name="New conversation", exact=True).click()
    before = api("GET", "/v1/learning/status")["pending"]["curated"]
    with page.expect_response(lambda r: r.url.endswith("/v1/chat/completions")) as r:
        page.get_by_label("Type your message…").fill("fox 1")
        page.keyboard.press("Enter")
    assert r.value.headers["content-type"].startswith("text/event-stream"), r.value.headers
    expect(page.get_by_role("button", name="Correct", exact=True)).to_be_visible(timeout=60_000)
    page.screenshot(path=f"{OUT}/chat.png")
    page.get_by_role("button", name="Correct", exact=True).click()
    page.get_by_label("Correct").fill("quick dog")
    page.get_by_role("button", name="Send correction", exact=True).click()
    expect(page.get_by_test_id("verdict")).to_have_text("Kept for training")
    expect(page.get_by_test_id("pending")).to_contain_text(f"Pending: {before + 1}")
    stage("corrected; pending %d -> %d" % (before, before + 1))
    page.get_by_role("button", name="Good answer", exact=True).click()
    page.get_by_label("Comment (optional)").fill("clear and short")
    page.get_by_role("button", name="Send", exact=True).first.click()
    expect(page.get_by_label("Comment (optional)")).to_have_count(0)
    stage("rated with a comment")

    # Train and follow the job live.
    page.get_by_role("button", name="Learning", exact=True).click()
    page.get_by_role("button", name="Train now", exact=True).click()
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded", timeout=300_000)
    expect(page.get_by_test_id("job-progress")).to_have_attribute("data-value", "100")
    expect(page.get_by_test_id("checkpoints")).to_contain_text("final")
    # What it trained on: the new examples (nothing to replay yet).
    expect(page.get_by_test_id("training-mix")).to_contain_text("new + 0 replayed")
    page.screenshot(path=f"{OUT}/learning.png")
    stage("trained; progress 100 %")

    # Promote the new version (forced when the gate refused it) and see it answer.
    page.get_by_role("button", name="Models", exact=True).click()
    expect(page.get_by_test_id("version").first).to_be_visible(timeout=60_000)
    vid = page.get_by_test_id("version").first.locator("code").inner_text()
    if page.get_by_test_id("champion").count() == 0 or page.get_by_test_id("champion").inner_text() != vid:
        page.get_by_test_id("version").first.get_by_role("button", name="Promote", exact=True).click()
    expect(page.get_by_test_id("champion")).to_have_text(vid, timeout=30_000)
    page.get_by_test_id("version").first.get_by_role("button", name="Report", exact=True).click()
    expect(page.get_by_test_id("gate-report")).to_contain_text("wer")
    expect(page.get_by_test_id("sample").first).to_contain_text("quick dog")
    expect(page.get_by_test_id("lineage")).to_contain_text("ftjob-")
    # Charts of learning, drawn by the API and fetched with the key.
    for chart in ["loss-chart", "metrics-chart"]:
        expect(page.get_by_test_id(chart)).to_be_visible(timeout=30_000)
        assert page.get_by_test_id(chart).evaluate("img => img.naturalWidth") > 100, chart
    # Forgetting, measured: the general probe against the base model.
    expect(page.get_by_test_id("probe-checks")).to_contain_text("accuracy")
    expect(page.get_by_test_id("probe-checks")).to_contain_text("mean_logprob")
    gs = page.get_by_test_id("golden-sets")
    expect(gs).to_contain_text("g.jsonl")
    gs.get_by_role("button", name="Inspect", exact=True).first.click()
    expect(page.get_by_test_id("golden-page")).to_contain_text("quick dog")
    page.screenshot(path=f"{OUT}/models.png", full_page=True)
    stage("promoted " + vid)

    page.get_by_role("button", name="Chat", exact=True).click()
    served = None
    for attempt in range(20):
        page.get_by_role("button", name="New conversation", exact=True).click()
        page.get_by_label("Type your message…").fill(f"fox {attempt + 2}")
        page.keyboard.press("Enter")
        meta = page.locator(".turn.assistant .meta").last
        expect(meta).to_be_visible(timeout=60_000)
        served = meta.inner_text()
        if served == vid:
            break
        page.wait_for_timeout(1000)
    assert served == vid, f"the champion answers from {served}, not {vid}"
    stage("the promoted version answers")

    # Documents: upload the corrected minutes, see the delta, edit the dictionary.
    page.get_by_role("button", name="Documents", exact=True).click()
    expect(page.get_by_test_id("dictionary-entry")).to_contain_text("Jhon")
    page.get_by_label("Upload corrected minutes (.docx)").set_input_files(CORRECTED)
    expect(page.get_by_test_id("delta")).to_be_visible(timeout=30_000)
    ops = page.get_by_test_id("delta-op")
    expect(ops.filter(has_text="moved").first).to_be_visible()
    expect(ops.filter(has_text="training example").first).to_be_visible()
    page.screenshot(path=f"{OUT}/documents.png", full_page=True)
    page.get_by_test_id("dictionary-entry").get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_test_id("dictionary-entry")).to_have_count(0)
    stage("documents: delta shown, dictionary entry removed")

    page.get_by_role("button", name="Models", exact=True).click()
    expect(page.get_by_test_id("champion")).to_have_text(vid)
    page.get_by_role("button", name="Roll back", exact=True).click()
    expect(page.get_by_test_id("champion")).to_have_count(0, timeout=30_000)
    stage("rolled back")

    # An admin key acting for no tenant sees the node.
    admin = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
    ad = admin.new_page()
    ad.on("request", lambda r: urls.append(r.url))
    ad.goto(URL + "/")
    ad.fill("#key", ADMIN_KEY)
    ad.get_by_role("button", name="Sign in", exact=True).click()
    expect(ad.get_by_test_id("node-model")).to_contain_text("tiny")
    expect(ad.get_by_test_id("node")).to_contain_text("succeeded")
    ad.screenshot(path=f"{OUT}/node.png")
    assert ad.get_by_role("button", name="Chat", exact=True).count() == 0
    stage("admin: node view")

    # A phone, in dark mode, in Spanish.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark", locale="es-ES")
    ph = phone.new_page()
    ph.on("request", lambda r: urls.append(r.url))
    ph.goto(URL + "/")
    ph.fill("#key", KEY)
    ph.get_by_role("button", name="Entrar", exact=True).click()
    expect(ph.get_by_role("button", name="Nueva conversación", exact=True)).to_be_visible()
    ph.screenshot(path=f"{OUT}/phone-dark-es.png")
    stage("phone, dark, Spanish")

    storage = page.evaluate("JSON.stringify(localStorage)")
    assert KEY not in storage, "the key is in localStorage"
    leaked = [u for u in urls if KEY in u or ADMIN_KEY in u]
    assert not leaked, f"the key is in a URL: {leaked[:1]}"
    assert not errors, f"page errors: {errors}"
    stage("the key is in no URL and not in localStorage (%d requests)" % len(urls))
    browser.close()
print("web e2e: ok")
