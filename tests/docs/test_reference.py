"""The reference pages agree with the code: commands, error texts, settings."""
from __future__ import annotations

import ast
import dataclasses
import re
import sys

import pytest

from support.servers import ROOT

DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))


def docs_text() -> str:
    return "\n".join(p.read_text() for p in DOCS.rglob("*.md") if "_build" not in p.parts)


SERVICE_PAGES = {
    "snorky_sync.services.pubsub:PubSubService": "services/pubsub.md",
    "snorky_sync.services.pubsub:PubSubBackend": "services/pubsub.md",
    "snorky_sync.services.chat:ChatService": "services/chat.md",
    "snorky_sync.services.cursors:CursorsService": "services/cursors.md",
    "snorky_sync.services.messaging:MessagingService": "services/messaging.md",
    "snorky_sync.services.datasync:DataSyncService": "services/datasync.md",
    "snorky_sync.services.datasync:DataSyncBackend": "services/datasync.md",
}


def load(spec):
    import importlib
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("spec", SERVICE_PAGES)
def test_every_command_is_described_on_its_page(spec):
    page = (DOCS / SERVICE_PAGES[spec]).read_text()
    cls = load(spec)
    assert f"<!-- generated: commands {spec} -->" in page  # the table of commands and params
    for command in cls.rpc_commands:
        # described in the prose, as `command(params)` or `command`
        assert re.search(rf"`{command}[(`]", page), f"{command} of {cls.__name__} is not described on {page}"


def error_texts() -> set[str]:
    """Every literal text an RPCError is raised with in snorky_sync/ (and bounded_key's,
    and a Membership's ``too_many``)."""
    texts = set()
    for path in (ROOT / "snorky_sync").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
                args = node.args
                name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                if name == "RPCError" and args:
                    candidates = [args[0]]
                elif name == "bounded_key" and len(args) == 3:
                    candidates = [args[2]]
                else:  # Membership(service, limit, too_many=...) raises it past the limit
                    candidates = [k.value for k in node.keywords if k.arg == "too_many"]
                    if not candidates:
                        continue
                for a in candidates:
                    for value in ast.walk(a):
                        if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value:
                            texts.add(value.value)
    return texts


def test_every_error_text_is_documented():
    texts = error_texts()
    assert {"Not joined", "Channel too long", "Invalid query", "Too many groups"} <= texts  # found
    text = docs_text()
    missing = sorted(t for t in texts if f"`{t}`" not in text)
    assert not missing, f"error texts raised by the code but on no docs page: {missing}"


def test_settings_table_has_every_setting_and_no_stale_note():
    import snorky_docs

    from snorky_sync.settings import Settings

    page = (DOCS / "deployment.md").read_text()
    m = re.search(r"<!-- generated: settings\n(.*?)-->", page, re.S)
    table = snorky_docs.settings_table("", m.group(1))
    for f in dataclasses.fields(Settings):
        if not f.name.startswith("_"):
            assert f"| `SNORKY_{f.name.upper()}` |" in table
    from sphinx.errors import ExtensionError
    with pytest.raises(ExtensionError, match="SNORKY_NO_SUCH"):
        snorky_docs.settings_table("", m.group(1) + "SNORKY_NO_SUCH: gone\n")


# text a maintainer could not follow from a clone: documents outside the repository
_OUTSIDE = re.compile(r"(?<![\w/.-])(DESIGN\.md|PROTOCOL\.md)|\.\./shared|/work/shared")


def test_the_repository_stands_alone():
    """architecture.md rule 14: no file of the repository points outside it (the
    design and protocol documents are docs/architecture.md and docs/protocol.md)."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    found = []
    for name in tracked:
        if name in ("CHANGELOG.md", "tests/docs/test_reference.py") or not name.endswith((".py", ".md", ".js", ".mjs", ".sh",
                                                         ".toml", ".cfg", ".txt", ".html")):
            continue
        try:
            text = (ROOT / name).read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                found.append(f"{name}:{lineno}: {line.strip()[:100]}")
    assert not found, "references outside the repository:\n" + "\n".join(found)
