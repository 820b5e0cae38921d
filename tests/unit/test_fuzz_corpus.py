"""The atheris fuzz target runs clean over its corpus plus a short fresh run."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fuzz_target_over_corpus_and_a_short_run(tmp_path):
    out = subprocess.run(
        [sys.executable, "fuzz/fuzz_registry.py", str(tmp_path), "fuzz/corpus",
         "-runs=20000", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Done 20000 runs" in out.stderr
