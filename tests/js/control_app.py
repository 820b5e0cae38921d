"""The default app (``create_app``, with its backend ``control`` service) and a
``/token/<user>`` route signing connection tokens, for control.test.mjs.

The test server's environment gives ``SNORKY_TOKEN_SECRET`` (and the helper's
``SNORKY_API_KEY``).
"""
from snorky_sync.app import create_app
from snorky_sync.auth import ConnectionTokens
from snorky_sync.settings import Settings

settings = Settings.from_env()
app = create_app(settings)
_tokens = ConnectionTokens(settings.token_secret)


@app.get("/token/<user>")
def token(user):
    return _tokens.create(user)
