"""python -m bench.testbed: several "hosts" behind a real nginx, on one machine.

    sudo python -m bench.testbed up [--hosts 3] [--workers 2] [--app MODULE:APP] [--env K=V ...]
    python -m bench.testbed status
    python -m bench.testbed kill --host 2 [--how sigkill|link]
    python -m bench.testbed revive --host 2
    python -m bench.testbed down [--all]

Each host is a Linux network namespace ``snorkytbN-hI`` with its own address
``10.231.N.(10+I)`` on a bridge ``snorkytbNbr`` (``10.231.N.1``) and its own
host name (a UTS namespace: ``control.info`` answers it as ``host``), running
``gunicorn -c python:snorky_sync.gunicorn_conf`` with ``-k gevent`` and
``--workers`` workers on port 8002.  nginx runs in the root namespace on
``127.0.0.1:PORT`` and balances every path (``/ws``, ``/sockjs``, the rest)
over the hosts with ``least_conn`` and no sticky sessions, the upstream block
docs/scaling.md recommends.  Three redis-server shards listen on the bridge
address (ports 7001-7003), reachable from every host; SNORKY_REDIS_URL names
all three (the channels spread over them), or ``--broker-shards`` of them.  The namespaces have no
route but their bridge: nothing leaves 127.0.0.1 and 10.231.N.0/24.

N is ``--instance`` (0-9, default 0; the tests use 1), so a test run and a
hand-started testbed can coexist.  Every name starts with ``snorkytb``; every
process outside the namespaces names the state directory
(``/tmp/snorkytbN``, or ``$SNORKY_TESTBED_DIR/snorkytbN``) on its command
line, so ``down`` finds and removes what a crashed run left (``down --all``:
every instance).  ``up`` first tears down what the instance left.

Needs root (``ip netns``), iproute2, util-linux's ``unshare``, nginx and
redis-server.  See docs/development.md, "The multi-host testbed".
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "snorkytb"
DEFAULT_APP = "snorky_sync.app:create_app()"
HOST_PORT = 8002
SHARD_PORTS = (7001, 7002, 7003)
API_KEY = "snorkytb-backend-key-0123456789"
TOKEN_SECRET = "snorkytb-connection-token-secret-0123456789"

#: How many of the shards go into SNORKY_REDIS_URL (comma-separated: a
#: ShardedBroker, snorky_sync/brokers/sharded.py): all three by default;
#: ``--broker-shards 1`` runs one Redis broker (the others idle), as the
#: capacity bench's one-shard cells do.
BROKER_SHARDS = len(SHARD_PORTS)


def _base_dir() -> Path:
    return Path(os.environ.get("SNORKY_TESTBED_DIR", "/tmp"))


@dataclass
class Layout:
    """Names and addresses of one instance; nothing here touches the system."""
    instance: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.instance <= 9:
            raise ValueError(f"--instance must be 0-9, got {self.instance}")

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.instance}"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def gateway(self) -> str:
        return f"10.231.{self.instance}.1"

    @property
    def state_dir(self) -> Path:
        return _base_dir() / self.prefix

    def netns(self, i: int) -> str:
        return f"{self.prefix}-h{i}"

    def veth(self, i: int) -> str:
        return f"{self.prefix}h{i}"  # the root side; eth0 in the namespace

    def address(self, i: int) -> str:
        return f"10.231.{self.instance}.{10 + i}"

    def shard_url(self, port: int) -> str:
        return f"redis://{self.gateway}:{port}/0"


@dataclass
class Host:
    index: int
    netns: str
    address: str
    url: str
    pid: int = 0


@dataclass
class State:
    instance: int
    hosts: list[Host] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)
    nginx: dict = field(default_factory=dict)
    broker_url: str = ""
    app: str = DEFAULT_APP
    workers: int = 2
    env: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        """nginx: ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.nginx['port']}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.nginx['port']}"

    def save(self) -> None:
        path = Layout(self.instance).state_dir / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, instance: int = 0) -> State | None:
        path = Layout(instance).state_dir / "state.json"
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        raw["hosts"] = [Host(**h) for h in raw["hosts"]]
        return cls(**raw)


def log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out


def _need(exe: str) -> str:
    found = shutil.which(exe) or next((p for p in (f"/usr/sbin/{exe}", f"/sbin/{exe}") if os.path.exists(p)), None)
    if not found:
        raise RuntimeError(f"the testbed needs {exe}")
    return found


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = check()
        except (OSError, requests.RequestException) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise RuntimeError(f"testbed: timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(0.1)  # polling a port or /healthz: nothing announces readiness


def _port_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=0.5):
        return True


# -- the network --------------------------------------------------------------------
def _network_up(lay: Layout, hosts: int) -> None:
    _run("ip", "link", "add", lay.bridge, "type", "bridge")
    _run("ip", "addr", "add", f"{lay.gateway}/24", "dev", lay.bridge)
    _run("ip", "link", "set", lay.bridge, "up")
    for i in range(1, hosts + 1):
        _host_network(lay, i)


def _host_network(lay: Layout, i: int) -> None:
    ns, veth = lay.netns(i), lay.veth(i)
    _run("ip", "netns", "add", ns)
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p")
    _run("ip", "link", "set", veth + "p", "netns", ns)
    _run("ip", "link", "set", veth, "master", lay.bridge, "up")
    _run("ip", "-n", ns, "link", "set", veth + "p", "name", "eth0")
    _run("ip", "-n", ns, "addr", "add", f"{lay.address(i)}/24", "dev", "eth0")
    _run("ip", "-n", ns, "link", "set", "eth0", "up")
    _run("ip", "-n", ns, "link", "set", "lo", "up")
    # no default route: a host reaches its bridge's /24 and nothing else


# -- processes ----------------------------------------------------------------------
def _spawn(cmd: list[str], logfile: Path, env: dict | None = None, cwd: Path = ROOT) -> int:
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=str(cwd), start_new_session=True)
    return proc.pid


def _start_shard(lay: Layout, port: int) -> dict:
    d = lay.state_dir / f"redis-{port}"
    d.mkdir(exist_ok=True)
    pid = _spawn([_need("redis-server"), "--bind", lay.gateway, "--port", str(port), "--dir", str(d),
                  "--save", "", "--appendonly", "no", "--protected-mode", "no",
                  "--client-output-buffer-limit", "pubsub 256mb 64mb 60"],
                 lay.state_dir / "logs" / f"redis-{port}.log")
    return {"port": port, "url": lay.shard_url(port), "pid": pid}


def _host_env(lay: Layout, state: State, i: int) -> dict:
    env = dict(os.environ)
    env.setdefault("SNORKY_API_KEY", API_KEY)
    env.setdefault("SNORKY_TOKEN_SECRET", TOKEN_SECRET)
    env.update({
        "SNORKY_REDIS_URL": state.broker_url,
        "SNORKY_HOST": lay.address(i), "SNORKY_PORT": str(HOST_PORT),
        "SNORKY_WORKERS": str(state.workers), "SNORKY_WORKER_CLASS": "gevent",
        "SNORKY_TRUSTED_PROXIES": lay.gateway,   # nginx's address as the hosts see it
        "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT),
    })
    env.pop("SNORKY_BIND", None)
    env.pop("SNORKY_BACKEND_PORT", None)
    env.update(state.env)
    return env


def _start_host(lay: Layout, state: State, host: Host) -> None:
    """gunicorn in the host's network namespace, under its own host name."""
    cmd = [_need("ip"), "netns", "exec", host.netns, _need("unshare"), "--uts", "--",
           "sh", "-c", 'hostname "$0" && exec "$@"', host.netns,
           sys.executable, "-m", "gunicorn", "--no-control-socket",
           "-c", "python:snorky_sync.gunicorn_conf", state.app]
    # ip, unshare and sh each exec the next: the pid is gunicorn's master
    host.pid = _spawn(cmd, lay.state_dir / "logs" / f"{host.netns}.log", env=_host_env(lay, state, host.index))


def _host_ready(host: Host, peers: int = 0) -> bool:
    """/healthz answers with the broker connected and knowing at least ``peers`` other processes."""
    answer = requests.get(host.url + "/healthz", timeout=2).json()
    broker = answer.get("broker") or {}
    if broker.get("state") == "local":   # --broker-shards 0: one process, no Redis
        return peers == 0
    return broker.get("state") == "connected" and (broker.get("peers") or 0) >= peers


def _nginx_conf(lay: Layout, state: State) -> str:
    d = lay.state_dir
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
    servers = "".join(f"        server {h.address}:{HOST_PORT} max_fails=1 fail_timeout=10s;\n"
                      for h in state.hosts)
    temp = "".join(f"    {name}_temp_path {d}/nginx/{name};\n"
                   for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    upgrade = ("            proxy_http_version 1.1;\n"
               "            proxy_set_header Upgrade $http_upgrade;\n"
               "            proxy_set_header Connection $connection_upgrade;\n"
               "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
               "            proxy_read_timeout 300s;   # longer than SNORKY_PING_INTERVAL\n")
    return f"""# written by python -m bench.testbed (instance {lay.instance})
daemon off;
user root;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {d}/nginx/nginx.pid;
error_log {d}/logs/nginx-error.log warn;
events {{ worker_connections {nofile // 2}; }}
http {{
    access_log off;
{temp}
    # docs/scaling.md's block: one upstream, no sticky sessions; least_conn so that
    # long-lived WebSockets spread evenly; a dead host is skipped within 2 s
    upstream snorky {{
        least_conn;
{servers}    }}
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    proxy_connect_timeout 2s;
    server {{
        listen 127.0.0.1:{state.nginx['port']} backlog=4096;
        location /ws {{
            proxy_pass http://snorky;
{upgrade}        }}
        location /sockjs {{
            proxy_pass http://snorky;
            proxy_buffering off;
{upgrade}        }}
        location / {{
            proxy_pass http://snorky;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def _start_nginx(lay: Layout, state: State) -> None:
    d = lay.state_dir / "nginx"
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / name).mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(_nginx_conf(lay, state))
    nginx = _need("nginx")
    out = _run(nginx, "-t", "-p", str(d), "-c", str(conf), check=False)
    if out.returncode != 0:
        raise RuntimeError(f"nginx -t: {out.stderr.strip()}")
    state.nginx["pid"] = _spawn([nginx, "-p", str(d), "-c", str(conf)], lay.state_dir / "logs" / "nginx.log")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def up(hosts: int = 3, workers: int = 2, app: str = DEFAULT_APP, env: dict | None = None,
       instance: int = 0, port: int = 0, broker_shards: int | None = None, timeout: float = 60.0) -> State:
    """Start the testbed (after tearing down whatever the instance left) and
    return its state once every host answers /healthz with its broker connected
    and nginx listens.  On failure everything is torn down again."""
    if os.geteuid() != 0:
        raise RuntimeError("the testbed needs root (ip netns)")
    if not 1 <= hosts <= 200:
        raise ValueError("--hosts: 1-200")
    for exe in ("ip", "unshare", "nginx", "redis-server"):
        _need(exe)
    lay = Layout(instance)
    down(instance, quiet=True)
    (lay.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    state = State(instance=instance, app=app, workers=workers, env=dict(env or {}))
    state.nginx = {"port": port or _free_port()}
    try:
        state.save()
        _network_up(lay, hosts)
        for p in SHARD_PORTS:
            state.shards.append(_start_shard(lay, p))
            state.save()
        used = BROKER_SHARDS if broker_shards is None else broker_shards
        if not 0 <= used <= len(SHARD_PORTS) or (used == 0 and hosts * workers > 1):
            raise ValueError(f"--broker-shards: 1-{len(SHARD_PORTS)} (0, no Redis: one host with one worker)")
        state.broker_url = ",".join(s["url"] for s in state.shards[:used])
        for s in state.shards:
            _wait(lambda s=s: _port_open(lay.gateway, s["port"]), 15, f"redis-server on {s['url']}")
        for i in range(1, hosts + 1):
            host = Host(i, lay.netns(i), lay.address(i), f"http://{lay.address(i)}:{HOST_PORT}")
            state.hosts.append(host)
            _start_host(lay, state, host)
            state.save()
        for host in state.hosts:
            _wait(lambda h=host: _host_alive(h) and _host_ready(h, hosts * workers - 1), timeout,
                  f"{host.netns} ({host.url}/healthz) knowing the other {hosts * workers - 1} processes")
        _start_nginx(lay, state)
        state.save()
        _wait(lambda: _port_open("127.0.0.1", state.nginx["port"]), 15, f"nginx on {state.url}")
    except BaseException:
        logs = lay.state_dir / "logs"
        log(f"up failed; logs in {logs}")
        down(instance, quiet=True, keep_logs=True)
        raise
    log(f"up: {hosts} hosts x {workers} workers behind nginx at {state.url}; broker {state.broker_url}")
    return state


def _host_alive(host: Host) -> bool:
    if not _pid_alive(host.pid):
        raise RuntimeError(f"{host.netns}: gunicorn exited; see its log")
    return True


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _netns_pids(ns: str) -> list[int]:
    out = _run("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in out.stdout.split()]


def _kill_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _stop(pids: list[int], grace: float) -> None:
    """SIGTERM, then SIGKILL what is still there after ``grace`` seconds."""
    _kill_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for processes of other sessions to exit: no handle to wait on
    _kill_all([p for p in pids if _pid_alive(p)], signal.SIGKILL)


def kill_host(state: State, index: int, how: str = "sigkill") -> None:
    """Take host ``index`` away: ``sigkill`` kills every process in its
    namespace at once (its sockets close: nginx sees its WebSockets end);
    ``link`` takes its veth down (its processes live on, unreachable: nginx
    notices its WebSockets only at proxy_read_timeout)."""
    host = state.hosts[index - 1]
    if how == "sigkill":
        pids = _netns_pids(host.netns)
        _kill_all(pids, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_pid_alive(p) for p in pids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host.netns}: processes {pids} survived SIGKILL")
            time.sleep(0.02)  # reaped by their parent (or init): no handle to wait on
    elif how == "link":
        _run("ip", "link", "set", Layout(state.instance).veth(index), "down")
    else:
        raise ValueError(f"kill --how: sigkill or link, not {how!r}")


def revive_host(state: State, index: int, timeout: float = 60.0) -> None:
    """Bring host ``index`` back: its link up, gunicorn started again if it is not running."""
    lay = Layout(state.instance)
    host = state.hosts[index - 1]
    _run("ip", "link", "set", lay.veth(index), "up")
    if not _netns_pids(host.netns):
        _start_host(lay, state, host)
        state.save()
    peers = len(state.hosts) * state.workers - 1
    _wait(lambda: _host_alive(host) and _host_ready(host, peers), timeout, f"{host.netns} back, knowing {peers} peers")
    reload_nginx(state)


def _nginx_workers(master: int) -> dict[int, bytes]:
    """{pid: process title} of the nginx master's workers."""
    from bench.procs import children
    return {p: _cmdline(p) for p in children(master) if _pid_alive(p)}


def reload_nginx(state: State, timeout: float = 15.0) -> None:
    """Reload nginx (SIGHUP) and wait until new workers serve: they start
    with a fresh view of the upstream, so a host revived within
    ``fail_timeout`` of its failures gets connections again at once.  Old
    workers finish the WebSockets they carry."""
    master = state.nginx["pid"]
    old = set(_nginx_workers(master))
    os.kill(master, signal.SIGHUP)

    def reloaded() -> bool:
        workers = _nginx_workers(master)
        fresh = [p for p in workers if p not in old]
        return bool(fresh) and all(p not in workers or b"shutting down" in workers[p] for p in old)
    _wait(reloaded, timeout, "nginx's reload")


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _marked_pids(markers: list[str]) -> list[int]:
    """Processes whose command line (or process title: redis-server shows
    ``redis-server ADDRESS:PORT``) names one of ``markers``, and their
    descendants (nginx's workers)."""
    me = os.getpid()
    pids = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != me]
    found = {p for p in pids if any(m.encode() in _cmdline(p) for m in markers)}
    grew = True
    while grew:
        more = {p for p in pids if p not in found and _parent(p) in found}
        found |= more
        grew = bool(more)
    return sorted(found)


def _instances() -> list[int]:
    """Instances something is left of: state directories, namespaces, links."""
    found = set()
    for d in _base_dir().glob(f"{PREFIX}[0-9]"):
        found.add(int(d.name[len(PREFIX):]))
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX) and name[len(PREFIX):len(PREFIX) + 1].isdigit():
            found.add(int(name[len(PREFIX)]))
    for line in _run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(PREFIX) and name[len(PREFIX):len(PREFIX) + 1].isdigit():
            found.add(int(name[len(PREFIX)]))
    return sorted(found)


def down(instance: int = 0, quiet: bool = False, keep_logs: bool = True) -> list[str]:
    """Remove everything of ``instance``, whether or not its state file
    survived: processes in its namespaces, processes naming its state
    directory (nginx, redis), its namespaces, its links.  Idempotent; returns
    what it removed."""
    lay = Layout(instance)
    removed: list[str] = []
    namespaces = [ln.split()[0] for ln in _run("ip", "netns", "list", check=False).stdout.splitlines()
                  if ln.split() and ln.split()[0].startswith(lay.prefix + "-")]
    for ns in namespaces:
        pids = _netns_pids(ns)
        if pids:
            _stop(pids, 5.0)
            removed.append(f"{len(pids)} process(es) in {ns}")
    pids = _marked_pids([str(lay.state_dir) + "/", f" {lay.gateway}:"])
    if pids:
        _stop(pids, 5.0)
        removed.append(f"{len(pids)} process(es) of {lay.state_dir} (nginx, redis)")
    for ns in namespaces:
        _run("ip", "netns", "del", ns, check=False)
        removed.append(f"netns {ns}")
    for line in _run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(lay.prefix) and not name.startswith(lay.prefix + "-") and \
                (name == lay.bridge or name[len(lay.prefix):len(lay.prefix) + 1] == "h"):
            if _run("ip", "link", "del", name, check=False).returncode == 0:
                removed.append(f"link {name}")
    state_file = lay.state_dir / "state.json"
    if state_file.exists():
        state_file.unlink()
    if not keep_logs and lay.state_dir.exists():
        shutil.rmtree(lay.state_dir, ignore_errors=True)
    if not quiet:
        log(f"down {lay.prefix}: " + ("; ".join(removed) if removed else "nothing left to remove"))
    return removed


def status(state: State) -> dict:
    """Each host's /healthz (connections, broker), the shards' PING, nginx's."""
    out: dict = {"url": state.url, "broker_url": state.broker_url, "hosts": [], "shards": []}
    for h in state.hosts:
        try:
            hz = requests.get(h.url + "/healthz", timeout=2).json()
            row = {"host": h.netns, "address": h.address, "status": hz.get("status"),
                   "connections": hz.get("connections"), "broker": (hz.get("broker") or {}).get("state"),
                   "peers": (hz.get("broker") or {}).get("peers")}
        except (OSError, requests.RequestException, ValueError) as exc:
            row = {"host": h.netns, "address": h.address, "status": f"unreachable ({type(exc).__name__})"}
        out["hosts"].append(row)
    for s in state.shards:
        try:
            with socket.create_connection((Layout(state.instance).gateway, s["port"]), timeout=1) as c:
                c.sendall(b"PING\r\n")
                ok = c.recv(16).startswith(b"+PONG")
        except OSError:
            ok = False
        out["shards"].append({"url": s["url"], "up": ok})
    try:
        out["nginx"] = requests.get(state.url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        out["nginx"] = False
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.testbed", description=__doc__.splitlines()[0])
    ap.add_argument("--instance", type=int, default=int(os.environ.get("SNORKY_TESTBED_INSTANCE", "0")),
                    help="0-9: names snorkytbN*, addresses 10.231.N.0/24 (default 0)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="start (after tearing down what the instance left)")
    u.add_argument("--hosts", type=int, default=3)
    u.add_argument("--workers", type=int, default=2, help="gunicorn workers per host")
    u.add_argument("--app", default=DEFAULT_APP, help=f"the WSGI app (default {DEFAULT_APP})")
    u.add_argument("--port", type=int, default=0, help="nginx's port on 127.0.0.1 (default: a free one)")
    u.add_argument("--broker-shards", type=int, default=None,
                   help=f"shards named in SNORKY_REDIS_URL, 1-{len(SHARD_PORTS)} (default {BROKER_SHARDS}; "
                   "0: no Redis, for one host with one worker)")
    u.add_argument("--env", action="append", default=[], metavar="K=V", help="for every host's gunicorn")
    d = sub.add_parser("down", help="tear down (idempotent; also what a crash left)")
    d.add_argument("--all", action="store_true", help="every snorkytb instance")
    d.add_argument("--purge", action="store_true", help="remove the logs too")
    sub.add_parser("status", help="hosts, shards, nginx")
    k = sub.add_parser("kill", help="take a host away")
    k.add_argument("--host", type=int, required=True)
    k.add_argument("--how", choices=("sigkill", "link"), default="sigkill")
    r = sub.add_parser("revive", help="bring a killed host back")
    r.add_argument("--host", type=int, required=True)
    args = ap.parse_args(argv)

    if args.cmd == "up":
        env = dict(kv.split("=", 1) for kv in args.env)
        started = up(args.hosts, args.workers, args.app, env, args.instance, args.port, args.broker_shards)
        print(json.dumps({"url": started.url, "ws": started.ws_url + "/ws",
                          "hosts": [h.url for h in started.hosts], "broker": started.broker_url,
                          # the testbed's fixed values, never one taken from your environment
                          "api_key": "(yours)" if "SNORKY_API_KEY" in os.environ else API_KEY,
                          "token_secret": "(yours)" if "SNORKY_TOKEN_SECRET" in os.environ else TOKEN_SECRET},
                         indent=2))
        return 0
    if args.cmd == "down":
        for n in (_instances() if args.all else [args.instance]):
            down(n, keep_logs=not args.purge)
        return 0
    state = State.load(args.instance)
    if state is None:
        print(f"no testbed {PREFIX}{args.instance} is up", file=sys.stderr)
        return 1
    if args.cmd == "status":
        print(json.dumps(status(state), indent=2))
    elif args.cmd == "kill":
        kill_host(state, args.host, args.how)
    elif args.cmd == "revive":
        revive_host(state, args.host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
