#!/usr/bin/env python
"""Snorky 0.1's demos/snorky_todo/run_snorky_server.py: the import prefix
changed and the Tornado wiring replaced by Flask (two ports, as in 0.1)."""
import logging
import os

from flask import Flask
from snorky_sync.services.datasync import DataSyncService, DataSyncBackend
from snorky_sync.services.datasync.dealers import BroadcastDealer
from snorky_sync import ServiceRegistry, Snorky, serve
from snorky_sync.embedded import make_server


#-----------------------------------------------------------------------------#
# Dealers (model classes and filters)                                         #
#-----------------------------------------------------------------------------#

class AllTodos(BroadcastDealer):
    name = "AllTasks"
    model = "Task"


class AllNotes(BroadcastDealer):
    name = "Note"
    model = "Note"

#-----------------------------------------------------------------------------#
# Server startup                                                              #
#-----------------------------------------------------------------------------#
if __name__ == "__main__":
    # Create two services
    datasync = DataSyncService("datasync", [AllTodos, AllNotes])
    datasync_backend = DataSyncBackend("datasync_backend", datasync)

    logging.basicConfig(level=logging.INFO)

    # Register the frontend and backend services in different handlers
    frontend = ServiceRegistry([datasync])
    backend = ServiceRegistry([datasync_backend])

    # Create a WebSocket frontend
    app_frontend = Flask("frontend")
    Snorky(app_frontend).websocket("/ws", frontend)

    # Create a backend, set a secret key, port and address
    app_backend = Flask("backend")
    Snorky(app_backend).backend("/backend", backend, api_key=os.environ["SNORKY_API_KEY"])
    make_server(app_backend, "127.0.0.1", int(os.environ["BACKEND_PORT"])).start()

    # Start processing
    serve(app_frontend, "127.0.0.1", int(os.environ["PORT"]))
