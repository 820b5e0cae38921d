"""The generated blocks of docs/*.md (settings table, services' commands, CLI
help) are committed into the Markdown, so a reader on GitHub sees them; this
checks that every one is what the code generates now
(regenerate: ``python scripts/generate_docs.py``)."""
from __future__ import annotations

import difflib
import re
import subprocess
import sys

from support.servers import ROOT

DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

import snorky_docs  # noqa: E402


def test_every_generated_block_is_committed_and_current():
    problems = []
    for path in snorky_docs.pages():
        text = path.read_text()
        new = snorky_docs.render(text, str(path))
        if new != text:
            diff = "".join(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                str(path.relative_to(ROOT)), "generated", n=1))
            problems.append(diff[:3000])
    assert not problems, ("generated blocks out of date; run: python scripts/generate_docs.py\n"
                          + "\n".join(problems))


def test_the_blocks_are_plain_markdown_outside_the_comments():
    """What a reader of the Markdown sees: the rows, not an HTML comment."""
    visible = {
        "deployment.md": "| `SNORKY_BACKEND_PORT` |",
        "services/pubsub.md": "| `subscribe` | `channel`",
        "cli.md": "$ python -m snorky_sync serve --help",
    }
    for page, row in visible.items():
        text = (DOCS / page).read_text()
        without_comments = re.sub(r"<!--.*?-->", "", text, flags=re.S)
        assert row in without_comments, f"{page}: {row!r} is not in the Markdown a reader sees"


def test_the_script_checks_and_rewrites(tmp_path, monkeypatch):
    check = subprocess.run([sys.executable, "scripts/generate_docs.py", "--check"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    # a stale block is found and rewritten (on a copy of a page)
    page = tmp_path / "pubsub.md"
    text = (DOCS / "services/pubsub.md").read_text()
    page.write_text(text.replace("| `unsubscribe` | `channel` | at once |\n", ""))
    monkeypatch.setattr(snorky_docs, "pages", lambda: [page])
    monkeypatch.setattr(snorky_docs, "ROOT", tmp_path)
    assert snorky_docs.stale_pages(write=False) == [page]
    assert snorky_docs.stale_pages(write=True) == [page]
    assert page.read_text() == text


def test_a_new_marker_gets_its_block_and_an_unknown_kind_fails():
    import pytest
    from sphinx.errors import ExtensionError

    text = "# t\n\n<!-- generated: commands snorky_sync.services.pubsub:PubSubBackend -->\n\nafter\n"
    new = snorky_docs.render(text)
    assert "| `publish` | `channel`, `message`, `excludeSender` (optional), `idempotencyKey` (optional) | at once |" in new
    assert new.endswith(snorky_docs.END + "\n\nafter\n")
    assert snorky_docs.render(new) == new
    with pytest.raises(ExtensionError, match="has no generated block"):
        snorky_docs._check_structure(None, "t", [text])
    snorky_docs._check_structure(None, "t", [new])
    with pytest.raises(ExtensionError, match="unknown generated block"):
        snorky_docs.render("<!-- generated: nothing -->\n")
