"""Parts of the documentation generated from the code, so they cannot drift.

A page asks for one with an HTML comment, replaced before the page is parsed::

    <!-- generated: settings
    SNORKY_BACKEND_PORT: more words for this row (optional, one line per variable)
    -->
    <!-- generated: commands snorky_sync.services.pubsub:PubSubService -->
    <!-- generated: cli snorky_sync -->

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


def _expand(app, docname, source):
    def replace(match):
        kind, args, body = match.group(1), match.group(2), match.group(3) or ""
        if kind not in GENERATORS:
            raise ExtensionError(f"{docname}: unknown generated block {kind!r}")
        return GENERATORS[kind](args, body)

    source[0] = MARKER.sub(replace, source[0])


def setup(app):
    app.connect("source-read", _expand)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
