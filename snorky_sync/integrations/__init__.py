"""Model-driven DataSync deltas: changes made through an ORM (or straight in
the database) become deltas without a line of publishing code.

* :mod:`.sqlalchemy` — SQLAlchemy 2 / Flask-SQLAlchemy session events.
* :mod:`.flask_views` — 0.1's ``X-Snorky: Subscribe`` header convention for Flask views.
* :mod:`snorky_sync.backend.django` — Django (0.1's connector, at 0.1's path).
"""
