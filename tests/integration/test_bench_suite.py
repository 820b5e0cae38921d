"""python -m bench runs end to end in its smallest mode against snorky_sync
embedded (no peers) and loses nothing (correctness, not speed)."""
import json

from bench.__main__ import main


def test_bench_suite_quick_embedded(tmp_path, capsys):
    assert main(["--quick", "--only", "embedded", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| snorky_sync embedded |" in out
    [result_file] = tmp_path.glob("*-*.md")
    text = result_file.read_text()
    assert "| snorky_sync embedded |" in text and "Problems:" not in text
    [r] = json.loads(text.split("Raw: ", 1)[1])
    assert r["name"] == "embedded" and "errors" not in r
    for run in (r["fanout"], r["rate"]):
        assert run["published"] > 0 and run["lost"] == 0 and run["received"] == run["expected"]
        assert run["failed"] == 0 and run["errors"] == 0 and run["unexpected"] == 0
    assert r["rpc"]["calls"] > 0 and r["rpc"]["errors"] == 0
    levels = r["idle"]["levels"]
    assert [int(k) for k in levels] == [200, 400]
    assert all(v["ready"] == int(k) for k, v in levels.items())
    assert r["idle"]["handshakes_per_s"] > 0 and r["idle"]["server_closed"] == 0
    # Cursors: every step got every notification its updates owed, without an RPC error
    steps = r["cursors"]["steps"]
    assert steps and steps[0]["clients"] == 5
    for step in steps:
        assert step["expected"] > 0 and step["received"] == step["expected"] and step["lost"] == 0
        assert step["errors"] == 0


def test_idle_levels_fit_the_open_file_limit():
    from bench.workloads import Sizes, fit_idle

    asked = Sizes(idle=(10000, 20000))
    assert fit_idle(asked, 1_048_576) is asked
    capped = fit_idle(asked, 20000)
    assert capped.idle == (10000, 19800) and "20,000" in capped.idle_capped
    assert fit_idle(asked, 5000).idle == (4800,)


def test_a_peer_that_cannot_be_installed_is_a_row_saying_why(tmp_path, capsys, monkeypatch):
    from bench import __main__ as suite
    from bench.peer_env import PeerUnavailable
    from bench.targets import Target

    def start(port):
        raise PeerUnavailable("pip install nothing==0 failed: no such version")

    monkeypatch.setattr(suite, "TARGETS", [Target("ghost", "Ghost peer", start)])
    assert suite.main(["--quick", "--only", "ghost", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| Ghost peer | not measured: unavailable: pip install nothing==0 failed: no such version |" in out
