"""bench.quick runs end to end at tiny sizes and loses nothing (correctness, not speed)."""
import json

from bench import quick


def test_quick_bench_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(quick, "ROOT", tmp_path)
    assert quick.main(["--modes", "embedded", "--subscribers", "20", "--publishes", "200",
                       "--rpc-clients", "5", "--seconds", "0.5", "--idle", "50",
                       "--handshakes", "80", "--rate", "50"]) == 0
    out = capsys.readouterr().out
    assert "| snorky_sync embedded |" in out
    [result_file] = (tmp_path / "bench" / "results").glob("quick-*.md")
    raw = json.loads(result_file.read_text().split("Raw: ", 1)[1])
    assert raw[0]["fanout"]["lost"] == 0
    assert raw[0]["rpc"]["calls/s"] > 0
    assert raw[0]["latency"]["lost"] == 0 and raw[0]["latency"]["p99 ms"] is not None
