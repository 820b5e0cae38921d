"""The I/O edge: Flask views that turn sockets and HTTP requests into registry calls."""
