"""tests.integration.testapp on SNORKY_REDIS_URL, for node tests: the Redis
broker needs gevent's monkey-patching before the app makes it."""
from gevent import monkey

monkey.patch_all()

from tests.integration.testapp import app  # noqa: E402,F401
