# As Snorky 0.1's DataSync documentation (datasync/django.rst) and its
# snorky_todo demo write them; only the import prefix differs.
from django.db import models
from snorky_sync.backend.django import subscribable


@subscribable
class Task(models.Model):
    title = models.CharField(max_length=100)
    completed = models.BooleanField(default=False)

    def jsonify(self):
        from .serializers import TaskSerializer
        return TaskSerializer(self).data


@subscribable
class Note(models.Model):
    """No jsonify(): the connector's default serializes every field."""
    text = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)
