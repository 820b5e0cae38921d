"""python -m bench.attacks runs end to end on two cheap classes and prints its table (correctness, not speed)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_attacks_smoke(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.attacks", "--seconds", "1", "--only", "baseline,slowloris",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    header = next(line for line in done.stdout.splitlines() if line.startswith("| attack |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert "p99 ms" in columns and "victim calls" in columns
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"baseline", "slowloris"}
    assert "not measured" not in rows["baseline"] and "not measured" not in rows["slowloris"]
    [result_file] = tmp_path.glob("attacks-*.md")
    results = {r["name"]: r for r in json.loads(result_file.read_text().split("Raw: ", 1)[1])}
    # the victim was answered during the baseline, and the slowloris attackers did open requests
    assert results["baseline"]["victim"]["calls"] > 0 and results["baseline"]["victim"]["dropped"] == 0
    assert results["slowloris"]["attackers"]["requests opened"] >= 10
    assert results["slowloris"]["server"]["fds_peak"] > results["slowloris"]["server"]["fds_start"]
