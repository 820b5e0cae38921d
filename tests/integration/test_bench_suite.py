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
