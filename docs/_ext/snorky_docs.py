"""Parts of the documentation generated from the code, so they cannot drift.

A page asks for one with an HTML comment; the generated Markdown is committed
right after it, up to an end marker, so the page reads the same on GitHub as
in the Sphinx build::

    <!-- generated: settings
    SNORKY_BACKEND_PORT: more words for this row (optional, one line per variable)
    -->

    | variable | default | meaning |
    ...

    <!-- end generated: edit the code, then run python scripts/generate_docs.py -->

    <!-- generated: commands snorky_sync.services.pubsub:PubSubService -->
    <!-- generated: cli snorky_sync -->

``python scripts/generate_docs.py`` (or ``python -m docs._ext.snorky_docs``)
rewrites every block from the code (a new marker gets its block); with
``--check`` it only says which pages are out of date (exit status 1), as
tests/docs/test_generated.py does in CI. The Sphinx build renders the
committed blocks as they are (it runs none of the code, so it needs none of
the optional extras: ``cli snorky_sync.integrations.postgres`` needs psycopg);
it only fails on a marker without its end marker or of an unknown kind.

- ``settings``: every field of :class:`snorky_sync.settings.Settings` (its
  variable, its default, and the comment beside the field unless the page
  gives a longer note), plus the variables only ``snorky_sync/gunicorn_conf.py`` reads;
  a note naming a variable that does not exist fails the build, and so does
  a setting with neither a comment nor a note.
- ``commands MODULE:CLASS``: the RPC commands of a service with their wire
  parameters (required, optional), from the same specs the dispatcher uses.
- ``cli MODULE``: ``python -m MODULE --help`` and the help of each subcommand.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path

from sphinx.errors import ExtensionError

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!-- generated: (\w+)([^\n]*?)(?:\n(.*?))?-->", re.DOTALL)


# settings ---------------------------------------------------------------------------------

def _field_comments() -> dict[str, str]:
    """``field name -> the comment beside it`` in settings.py's ``Settings``."""
    path = ROOT / "snorky_sync" / "settings.py"
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    comments = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    line = lines[item.lineno - 1]
                    _, _, comment = line.partition("  # ")
                    comments[item.target.id] = comment.strip()
    return comments


def _default_text(value) -> str:
    if value is None:
        return "unset"
    if value is True:
        return "on"
    if value is False:
        return "off"
    if isinstance(value, tuple):
        return "`" + ",".join(value) + "`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _meaning(variable: str, comment: str) -> str:
    """The comment without its leading variable name and outer parentheses."""
    rest = comment[len(variable):].strip() if comment.startswith(variable) else comment
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1]
    return rest.replace("|", "\\|")


def _gunicorn_only() -> dict[str, str]:
    """``SNORKY_*`` variables read by the shipped gunicorn config (snorky_sync/gunicorn_conf.py;
    the top-level gunicorn.conf.py imports it) and not by Settings, with defaults."""
    text = (ROOT / "snorky_sync" / "gunicorn_conf.py").read_text()
    found = {}
    for name, default in re.findall(r'os\.environ\.get\("(SNORKY_\w+)",\s*("[^"]*"|[^,)\s]+)', text):
        found[name] = default.strip('"')
    return found


def settings_table(args: str, body: str) -> str:
    from snorky_sync.settings import Settings

    notes = {}
    for line in body.strip().splitlines():
        if line.strip():
            name, sep, note = line.partition(":")
            if not sep:
                raise ExtensionError(f"settings note without ':': {line!r}")
            notes[name.strip()] = note.strip()
    comments = _field_comments()
    rows = []
    known = set()
    for f in dataclasses.fields(Settings):
        if f.name.startswith("_"):
            continue
        variable = "SNORKY_" + f.name.upper()
        known.add(variable)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        meaning = _meaning(variable, comments.get(f.name, ""))
        text = notes.get(variable) or meaning
        if not text:
            raise ExtensionError(f"{variable}: no comment beside the field in settings.py and no note")
        rows.append(f"| `{variable}` | {_default_text(default)} | {text} |")
    for variable, default in _gunicorn_only().items():
        if variable in known:
            continue
        known.add(variable)
        if variable not in notes:
            raise ExtensionError(f"{variable} (read by snorky_sync/gunicorn_conf.py) needs a note in the settings table")
        shown = "computed" if "%" in default else f"`{default}`"
        rows.append(f"| `{variable}` | {shown} | gunicorn only: {notes[variable]} |")
    unknown = set(notes) - known
    if unknown:
        raise ExtensionError(f"settings notes for variables that do not exist: {sorted(unknown)}")
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


# commands ---------------------------------------------------------------------------------

def _load(spec: str):
    module, _, attr = spec.strip().partition(":")
    return getattr(importlib.import_module(module), attr)


def commands_table(args: str, body: str) -> str:
    import inspect

    cls = _load(args)
    rows = []
    for wire_name, spec in cls._commands.items():
        params = list(inspect.signature(spec.func).parameters.values())[2:]
        from snorky_sync.services.base import to_camel

        shown = []
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                shown.append("any other")
            elif p.default is p.empty:
                shown.append(f"`{to_camel(p.name)}`")
            else:
                shown.append(f"`{to_camel(p.name)}` (optional)")
        how = "later (asynchronous)" if spec.asynchronous else "at once"
        rows.append(f"| `{wire_name}` | {', '.join(shown) or 'none'} | {how} |")
    if not rows:
        raise ExtensionError(f"{args}: no RPC commands")
    return "\n".join(["| command | params | answered |", "|---|---|---|", *rows])


# cli ----------------------------------------------------------------------------------------

def _help(args: list[str]) -> str:
    out = subprocess.run([sys.executable, "-m", *args, "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={"COLUMNS": "88", "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        raise ExtensionError(f"python -m {' '.join(args)} --help failed:\n{out.stderr}")
    return out.stdout.rstrip()


def cli_help(args: str, body: str) -> str:
    module = args.strip()
    top = _help([module])
    parts = [f"```text\n$ python -m {module} --help\n{top}\n```"]
    match = re.search(r"\{([\w,-]+)\}", top)
    for sub in match.group(1).split(",") if match else ():
        parts.append(f"```text\n$ python -m {module} {sub} --help\n{_help([module, sub])}\n```")
    return "\n\n".join(parts)


GENERATORS = {"settings": settings_table, "commands": commands_table, "cli": cli_help}


# the blocks in the pages --------------------------------------------------------------------

END = "<!-- end generated: edit the code, then run python scripts/generate_docs.py -->"
# the marker, then (once generated) a blank line, the block, a blank line and END
BLOCK = re.compile(MARKER.pattern + r"(?:\n\n(.*?)\n\n" + re.escape(END) + ")?", re.DOTALL)


def render(text: str, where: str = "") -> str:
    """``text`` with every generated block (re)made from the code."""
    def replace(match):
        kind, args, body = match.group(1), match.group(2), match.group(3) or ""
        if kind not in GENERATORS:
            raise ExtensionError(f"{where}: unknown generated block {kind!r}")
        marker = MARKER.match(match.string, match.start()).group(0)  # type: ignore[union-attr]
        return f"{marker}\n\n{GENERATORS[kind](args, body)}\n\n{END}"

    return BLOCK.sub(replace, text)


def pages() -> list[Path]:
    return sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)


def stale_pages(write: bool = False) -> list[Path]:
    """The pages whose generated blocks differ from what the code generates
    (rewritten when ``write``)."""
    stale = []
    for path in pages():
        text = path.read_text()
        if "<!-- generated: " not in text:
            continue
        new = render(text, str(path.relative_to(ROOT)))
        if new != text:
            stale.append(path)
            if write:
                path.write_text(new)
    return stale


def _check_structure(app, docname, source):
    """At build time: every marker is known and followed by its block (the
    content itself is checked against the code by tests/docs/test_generated.py)."""
    for match in MARKER.finditer(source[0]):
        if match.group(1) not in GENERATORS:
            raise ExtensionError(f"{docname}: unknown generated block {match.group(1)!r}")
        rest = source[0][match.end():]
        nxt = rest.find("<!-- generated: ")
        end = rest.find(END)
        if end < 0 or (0 <= nxt < end):
            raise ExtensionError(f"{docname}: '<!-- generated: {match.group(1)}' has no generated block "
                                 "after it: run python scripts/generate_docs.py")


def setup(app):
    app.connect("source-read", _check_structure)
    return {"version": "2", "parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python scripts/generate_docs.py",
        description="Rewrite the generated blocks of docs/*.md (settings table, commands, CLI help) from the code.")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; list the out-of-date pages and exit 1 if there are any")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    stale = stale_pages(write=not args.check)
    for path in stale:
        print(("out of date: " if args.check else "rewrote: ") + str(path.relative_to(ROOT)))
    if args.check and stale:
        print("run: python scripts/generate_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
