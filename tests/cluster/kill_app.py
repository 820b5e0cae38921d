"""The server of tests/cluster/test_idempotent_publish_cluster.py's kill test:
the default app (``create_app``, every SNORKY_* setting) whose Redis history
append SIGKILLs this process right after the append returned (the message
numbered, kept and published), before anything else runs (the answer of an
``idempotencyKey`` recorded, the reply sent), when the message names this
process: ``{"killAfterAppend": <pid>}``.  Test code only: the library has
no such hook."""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import signal  # noqa: E402

from snorky_sync.app import create_app  # noqa: E402
from snorky_sync.brokers.redis_history import RedisHistory  # noqa: E402

_append = RedisHistory.append


def append_then_die(self, key, head, size=None):
    result = _append(self, key, head, size)
    if b'"killAfterAppend":%d' % os.getpid() in head:
        os.kill(os.getpid(), signal.SIGKILL)
    return result


RedisHistory.append = append_then_die
app = create_app()
