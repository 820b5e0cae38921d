"""The nginx blocks of docs/ are real configurations: each passes ``nginx -t``,
and the deployment page's block, run by a real nginx in front of a real
snorky_sync server (TLS with a throwaway certificate), carries a WebSocket
round trip and plain HTTP.  Only the listen address, the certificate paths and
the upstream port are changed (the scaling page's upstreams are only tested,
never contacted)."""
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest
import requests

from support.servers import ServerProcess, free_port
from support.wsclient import SnorkyTestClient

from .test_snippets import SNIPPETS

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if shutil.os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/test.sh installs it)")
BLOCKS = [s for s in SNIPPETS if s.lang == "nginx"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def configuration(block: str, tmp, cert, key, port: int, upstream_port: int | None) -> str:
    body = re.sub(r"listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;", block.code)
    body = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", body)
    body = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", body)
    if upstream_port is not None:
        body = body.replace("127.0.0.1:8002", f"127.0.0.1:{upstream_port}")
    temp = "".join(f"{name}_temp_path {tmp}/{name};\n" for name in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off; master_process off; worker_processes 1; pid {tmp}/nginx.pid;\n"
            f"error_log {tmp}/error.log;\nevents {{}}\nhttp {{\naccess_log off;\n{temp}"
            f"ssl_certificate {cert};\nssl_certificate_key {key};\n{body}\n}}\n")


def test_the_pages_have_nginx_blocks():
    assert {s.page for s in BLOCKS} >= {"docs/deployment.md", "docs/scaling.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_every_nginx_block_passes_nginx_t(block, certificate, tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(configuration(block, tmp_path, *certificate, free_port(), None))
    out = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # a throwaway certificate
def test_the_deployment_block_proxies_websockets_over_tls(certificate, tmp_path):
    (block,) = [s for s in BLOCKS if s.page == "docs/deployment.md"]
    srv = ServerProcess("embedded", app="wsgi:app")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(configuration(block, tmp_path, *certificate, port, srv.port))
    proxy = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:  # polling for nginx's port to open
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.05)
        c = SnorkyTestClient(f"wss://127.0.0.1:{port}/ws", sslopt={"cert_reqs": ssl.CERT_NONE})
        c.ok("pubsub", "subscribe", {"channel": "through-nginx"})
        c.ok("pubsub", "publish", {"channel": "through-nginx", "message": "hello"})
        assert c.next_notification()["message"]["message"] == "hello"
        c.close()
        health = requests.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=10)
        assert health.status_code == 200 and "broker" in health.json()
    finally:
        proxy.terminate()
        proxy.wait(10)
        srv.stop()
