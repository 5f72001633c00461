"""`make wheel-check WHEEL`: what a user who installs the wheel gets, away from any checkout.

The wheel goes into a fresh virtual environment in a temporary folder; from another temporary
folder (so that nothing of the checkout can be found) it runs `xrbench list boards`,
`xrbench show patchcore` and `xrbench bench --method patchcore --no-corruptions`, then reads the
run back from the results database the run wrote in that folder, with DuckDB and through
`import xrbench`. Exits non-zero, naming the step, when anything fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb


def step(what: str, command: list[str], cwd: Path, env: dict[str, str]) -> str:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    print(f"--- {what} ({seconds:.0f} s): {' '.join(command[-6:])}", flush=True)
    if done.returncode != 0:
        sys.exit(
            f"wheel check failed at '{what}' (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    wheel = parser.parse_args().wheel.resolve()
    with tempfile.TemporaryDirectory(prefix="xrbench-wheel-") as tmp:
        root = Path(tmp)
        venv, work = root / "venv", root / "work"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XRBENCH_", "VIRTUAL_ENV", "PYTHONPATH"))}
        env |= {"XRBENCH_CACHE": str(root / "cache"), "COLUMNS": "100"}
        step("fresh virtual environment", [sys._base_executable, "-m", "venv", str(venv)], work, env)
        step("pip install the wheel", [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], work, env)
        xrbench = str(venv / "bin" / "xrbench")
        boards = step("xrbench list boards", [xrbench, "list", "boards"], work, env)
        assert "synth-cxr-ad" in boards and "nih-ad" in boards, boards
        print(boards)
        shown = step("xrbench show patchcore", [xrbench, "show", "patchcore"], work, env)
        assert "coreset_ratio" in shown, shown
        bench = [xrbench, "bench", "--method", "patchcore", "--no-corruptions", "--device", "cpu"]
        print(step("xrbench bench", bench, work, env))
        db = work / "results" / "xrbench.duckdb"
        with duckdb.connect(str(db), read_only=True) as con:
            run_id, status, code, split = con.execute(
                "SELECT run_id, status, method_code, split_sha256 FROM runs WHERE method = 'patchcore'"
            ).fetchone()
        files = json.loads(code)["files"]
        assert status == "ok" and "methods/patchcore.py" in files and "harness/components/coreset.py" in files
        print(f"run {run_id} stored in {db.relative_to(root)}: status {status}, split {split[:12]}, {len(files)} files")
        read = f"import xrbench as xb; run = xb.Run({run_id!r}); print(run, run.metrics['value'].iloc[0])"
        shown = step("import xrbench", [str(venv / "bin" / "python"), "-c", read], work, env)
        assert run_id in shown and "ok" in shown, shown
        print(shown)


if __name__ == "__main__":
    main()
