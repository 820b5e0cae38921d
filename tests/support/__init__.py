"""Shared test helpers: fake clients, real servers on free ports, WebSocket clients."""
