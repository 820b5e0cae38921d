"""A Django project written the Snorky 0.1 way (0.1's DataSync docs and its
snorky_todo demo), with ``snorky.`` changed to ``snorky_sync.``."""
import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "todo_app",
]
MIDDLEWARE = []
ROOT_URLCONF = "todo_project.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3",
                "NAME": os.environ.get("TODO_SQLITE_PATH", ":memory:")},
}
if os.environ.get("TODO_PG_NAME"):    # tests/django/conftest.py: the tests' own PostgreSQL
    DATABASES["pg"] = {"ENGINE": "django.db.backends.postgresql", "NAME": os.environ["TODO_PG_NAME"],
                       "USER": "postgres", "HOST": "127.0.0.1", "PORT": os.environ["TODO_PG_PORT"]}
REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": [], "DEFAULT_PERMISSION_CLASSES": [],
                  "UNAUTHENTICATED_USER": None}

# Snorky (0.1's settings)
SNORKY_BACKEND_URL = os.environ.get("SNORKY_BACKEND_URL", "http://localhost:5002/backend")
SNORKY_API_KEY = os.environ.get("SNORKY_API_KEY", "swordfish")
