"""``app`` for gunicorn: the default server built from SNORKY_* settings.

    gunicorn -c gunicorn.conf.py wsgi:app
"""
from snorky_sync.app import create_app

app = create_app()
