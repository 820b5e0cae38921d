"""Rewrite the generated blocks of docs/*.md from the code: the settings table
(deployment.md), the services' command tables (services/*.md) and the CLI help
(cli.md). Run it after changing a setting, a command or an option:

    .venv/bin/python scripts/generate_docs.py          # rewrite
    .venv/bin/python scripts/generate_docs.py --check  # exit 1 if a page is out of date

It needs the extras whose modules it runs (``cli snorky_sync.integrations.postgres``
runs with psycopg): the development venv of scripts/test.sh has them all.
See docs/_ext/snorky_docs.py for the markers.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import snorky_docs  # noqa: E402

if __name__ == "__main__":
    sys.exit(snorky_docs.main())
