"""bench/testbed.py's teardown finds what a crashed run left: with its state
file gone, ``down`` still stops the hosts' gunicorn, nginx and the Redis shards,
and removes the namespaces, the veths and the bridge; a second ``down`` finds
nothing."""
import os
import subprocess
import sys

from bench import testbed as tb
from support.servers import ROOT

INSTANCE = (int(os.environ.get("SNORKY_TESTBED_INSTANCE", "1")) + 1) % 10


def leftovers(lay: tb.Layout, nginx: tuple[str, ...] = ()) -> list[str]:
    """The namespaces, links and processes (nginx, redis; the pids in ``nginx``) of the instance."""
    netns = [ln for ln in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
             if ln.startswith(lay.prefix)]
    links = [ln for ln in subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.splitlines()
             if f": {lay.prefix}" in ln]
    procs = [ln for ln in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
             if f"{lay.state_dir}/" in ln or f" {lay.gateway}:" in ln or "nginx: worker" in ln and ln.split()[0] in nginx]
    return netns + links + procs


def test_down_removes_what_a_crashed_run_left():
    lay = tb.Layout(INSTANCE)
    cli = [sys.executable, "-m", "bench.testbed", "--instance", str(INSTANCE)]
    try:
        subprocess.run([*cli, "up", "--hosts", "2", "--workers", "1"], cwd=ROOT, check=True, capture_output=True)
        state = tb.State.load(INSTANCE)
        gunicorns = [h.pid for h in state.hosts]
        assert all(tb._pid_alive(p) for p in gunicorns)
        workers = subprocess.run(["pgrep", "-P", str(state.nginx["pid"])], capture_output=True, text=True).stdout.split()
        assert workers, "nginx has no worker"
        assert len(leftovers(lay, tuple(workers))) >= 2 + 3 + 5   # namespaces, links, nginx + worker + 3 redis-server
        (lay.state_dir / "state.json").unlink()          # the crash: nothing recorded survives
        out = subprocess.run([*cli, "down"], cwd=ROOT, check=True, capture_output=True, text=True)
        assert "netns" in out.stderr, out.stderr
        assert leftovers(lay, tuple(workers)) == []
        assert not any(tb._pid_alive(p) for p in gunicorns)
        again = subprocess.run([*cli, "down"], cwd=ROOT, check=True, capture_output=True, text=True)
        assert "nothing left to remove" in again.stderr, again.stderr
    finally:
        tb.down(INSTANCE, quiet=True)
