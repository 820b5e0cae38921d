# As Snorky 0.1's demos write them (snorky_todo_react/snorky_todo/api.py); only
# the import prefix differs.
from rest_framework import serializers as drf_serializers, viewsets
import snorky_sync.backend.django.rest_framework as snorky

from . import models, serializers


class TaskViewSet(snorky.ListSubscribeModelMixin,
                  viewsets.ModelViewSet):
    model = models.Task
    queryset = models.Task.objects.all()
    dealer = "AllTasks"
    serializer_class = serializers.TaskSerializer


class NoteSerializer(drf_serializers.ModelSerializer):
    class Meta:
        model = models.Note
        fields = "__all__"


class NoteList(snorky.ListSubscribeCreateAPIView):
    queryset = models.Note.objects.all()          # dealer: the model's name, "Note"
    serializer_class = NoteSerializer
