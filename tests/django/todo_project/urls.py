from django.urls import include, path
from rest_framework import routers

from todo_app import api

router = routers.DefaultRouter()
router.register("tasks", api.TaskViewSet)

urlpatterns = [
    path("api/", include(router.urls)),
    path("api/notes/", api.NoteList.as_view()),
]
