#!/usr/bin/python3
"""Edits a DOCX the way a secretary would, in a real LibreOffice (headless,
through UNO), and saves it as DOCX again: the round trip that proves
forja's hidden chunk ids survive an editor.

usage: libreoffice-edit.py IN.docx OUT.docx OP...

OPs run in order; paragraph numbers are 0-based and counted anew before
each OP (only body paragraphs, not tables):
  move:I:J        cut paragraph I, paste it as a new paragraph after J
                  (the clipboard path of Ctrl+X / Ctrl+V)
  copy:I:J        copy paragraph I, paste it after J
  pagebreak:I     paragraph I starts a new page
  replace:OLD:NEW replace every OLD with NEW (Find & Replace)
  delete:I        remove paragraph I
  insert:I:TEXT   a new paragraph with TEXT after paragraph I
  split:I:WORD    press Enter before the first WORD in paragraph I

Needs Debian's libreoffice-writer-nogui and python3-uno; run with
/usr/bin/python3 (the UNO bindings are built for it). Nothing leaves the
machine: a fresh profile in a temporary directory, a named pipe.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import uno  # noqa: E402  (Debian's python3-uno)
from com.sun.star.beans import PropertyValue  # noqa: E402
from com.sun.star.text.ControlCharacter import PARAGRAPH_BREAK  # noqa: E402
from com.sun.star.style.BreakType import PAGE_BEFORE  # noqa: E402


def prop(name, value):
    p = PropertyValue()
    p.Name, p.Value = name, value
    return p


def paragraphs(doc):
    out, e = [], doc.getText().createEnumeration()
    while e.hasMoreElements():
        p = e.nextElement()
        if p.supportsService("com.sun.star.text.Paragraph"):
            out.append(p)
    return out


def new_paragraph_after(doc, para):
    """An empty paragraph after `para`; returns a cursor in it."""
    text = doc.getText()
    cur = text.createTextCursorByRange(para.getEnd())
    text.insertControlCharacter(cur, PARAGRAPH_BREAK, False)
    return cur


def paste_after(doc, transferable, j):
    ctrl = doc.getCurrentController()
    cur = new_paragraph_after(doc, paragraphs(doc)[j])
    ctrl.select(cur)
    ctrl.insertTransferable(transferable)


def clip(doc, i):
    ctrl = doc.getCurrentController()
    ctrl.select(paragraphs(doc)[i])
    return ctrl.getTransferable()


def run(doc, op):
    kind, _, rest = op.partition(":")
    if kind == "move":
        i, j = map(int, rest.split(":"))
        t = clip(doc, i)
        doc.getText().removeTextContent(paragraphs(doc)[i])
        paste_after(doc, t, j - 1 if j > i else j)
    elif kind == "copy":
        i, j = map(int, rest.split(":"))
        paste_after(doc, clip(doc, i), j)
    elif kind == "pagebreak":
        paragraphs(doc)[int(rest)].setPropertyValue("BreakType", PAGE_BEFORE)
    elif kind == "replace":
        old, new = rest.split(":", 1)
        rd = doc.createReplaceDescriptor()
        rd.SearchString, rd.ReplaceString = old, new
        rd.setPropertyValue("SearchCaseSensitive", True)
        if doc.replaceAll(rd) == 0:
            sys.exit(f"replace: {old!r} not found")
    elif kind == "delete":
        doc.getText().removeTextContent(paragraphs(doc)[int(rest)])
    elif kind == "insert":
        i, text = rest.split(":", 1)
        cur = new_paragraph_after(doc, paragraphs(doc)[int(i)])
        doc.getText().insertString(cur, text, False)
    elif kind == "split":
        i, word = rest.split(":", 1)
        para = paragraphs(doc)[int(i)]
        at = para.getString().find(word)
        if at < 0:
            sys.exit(f"split: {word!r} not in paragraph {i}")
        cur = doc.getText().createTextCursorByRange(para.getStart())
        cur.goRight(at, False)
        doc.getText().insertControlCharacter(cur, PARAGRAPH_BREAK, False)
    else:
        sys.exit(f"unknown op {op!r}")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, dst, ops = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3:]
    profile = tempfile.mkdtemp(prefix="forja-lo-")
    pipe = f"forja_lo_{os.getpid()}"
    office = subprocess.Popen(
        ["soffice", "--headless", "--invisible", "--norestore", "--nologo", "--nodefault",
         f"-env:UserInstallation={uno.systemPathToFileUrl(profile)}",
         f"--accept=pipe,name={pipe};urp;StarOffice.ComponentContext"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    desktop = None
    try:
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
        for _ in range(600):
            try:
                ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
                break
            except Exception:
                if office.poll() is not None:
                    sys.exit("soffice exited before accepting a connection")
                time.sleep(0.1)
        else:
            sys.exit("soffice did not accept a connection within 60 s")
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        # Read-only: no lock file next to the input, which a crashed run
        # would leave behind.
        doc = desktop.loadComponentFromURL(
            uno.systemPathToFileUrl(src), "_blank", 0, (prop("Hidden", True), prop("ReadOnly", True)))
        if doc is None:
            sys.exit(f"LibreOffice could not open {src}")
        for op in ops:
            run(doc, op)
        doc.storeToURL(uno.systemPathToFileUrl(dst), (prop("FilterName", "MS Word 2007 XML"),))
        doc.close(True)
    finally:
        if desktop is not None:
            try:
                desktop.terminate()
            except Exception:
                pass  # the bridge goes away with the process
        try:
            office.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        # soffice is a wrapper: its soffice.bin child lives in the same
        # session; take the whole group down whatever happened.
        try:
            os.killpg(office.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
