"""The embedded server's fast header reader agrees with pywsgi's own parser."""
from io import BytesIO

import pytest
from gevent.pywsgi import headers_factory

from snorky_sync.http_headers import FastHeaders, read_headers

CASES = [
    b"Host: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Type: text/plain\r\n\r\n",
    b"Host: a\r\nX-Dup: 1\r\nx-dup: 2\r\nContent-Length: 5\r\n\r\n",
    b"Host:   spaced   \r\nEmpty:\r\n\r\n",
    b"Host: a\r\n\r\n",
]
ODD = [
    b"Host: a\r\nFolded: one\r\n two\r\n\r\n",                      # continuation line
    b"Host: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",   # repeated length
    b"Host: a\r\nno colon here\r\n\r\n",
    b"Host: a\r\nBad Name : x\r\n\r\n",
]


def both(raw):
    return read_headers(BytesIO(raw), 0), headers_factory(BytesIO(raw), 0)


@pytest.mark.parametrize("raw", CASES)
def test_common_requests_parse_fast_and_alike(raw):
    fast, std = both(raw)
    assert isinstance(fast, FastHeaders)
    assert list(fast.headers) == list(std.headers)
    for name in ("host", "HOST", "x-dup", "content-length", "missing", "empty"):
        assert fast.get(name) == std.get(name)
        assert fast.getheader(name, "d") == std.getheader(name, "d")
    assert fast.typeheader == std.typeheader
    assert fast.status == std.status == ""


@pytest.mark.parametrize("raw", ODD)
def test_anything_unusual_goes_to_the_standard_parser(raw):
    fast, std = both(raw)
    assert not isinstance(fast, FastHeaders)
    assert list(fast.headers) == list(std.headers)


def test_delete_and_the_rest_of_the_stream_is_untouched():
    stream = BytesIO(b"Content-Length: 3\r\nA: b\r\n\r\nxyz")
    h = read_headers(stream, 0)
    del h["content-length"]
    assert h.get("Content-Length") is None and list(h.headers) == ["A: b\r\n"]
    assert stream.read() == b"xyz"


def test_too_many_or_too_long_lines_are_judged_by_pywsgi():
    many = b"".join(b"H%d: v\r\n" % i for i in range(150)) + b"\r\n"
    with pytest.raises(Exception):
        headers_factory(BytesIO(many), 0)  # what pywsgi does with it...
    with pytest.raises(Exception):
        read_headers(BytesIO(many), 0)     # ...happens here too
    long = b"H: " + b"x" * 70000 + b"\r\n\r\n"
    assert read_headers(BytesIO(long), 0).status == headers_factory(BytesIO(long), 0).status != ""
