"""gunicorn settings for snorky_sync: the package's own, kept here so that

    gunicorn -c gunicorn.conf.py wsgi:app

works from a checkout.  Installed from pip, use the same settings with
``gunicorn -c python:snorky_sync.gunicorn_conf myapp:app`` (snorky_sync/gunicorn_conf.py).
"""
from snorky_sync.gunicorn_conf import *  # noqa: F401,F403
