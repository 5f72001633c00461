"""How fast the command line answers when nothing runs: `xrbench list` reads the method index
and imports no method; a parameter error imports the one method it is about."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

XRBENCH = str(Path(sys.executable).with_name("xrbench"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = {**os.environ, "XRBENCH_CACHE": str(tmp_path_factory.mktemp("cache")), "COLUMNS": "80"}
    subprocess.run([XRBENCH, "list"], env=env, check=True, capture_output=True)  # writes the index
    return env


def test_xrbench_list(benchmark, env):
    done = benchmark.pedantic(
        lambda: subprocess.run([XRBENCH, "list"], env=env, check=True, capture_output=True, text=True), rounds=5
    )
    lines = done.stdout.splitlines()
    assert any(line.startswith("  patchcore ") for line in lines) and all(len(line) <= 80 for line in lines)


def test_a_parameter_error(benchmark, env):
    command = [XRBENCH, "bench", "--method", "patchcore", "--param", "k=1"]
    done = benchmark.pedantic(lambda: subprocess.run(command, env=env, capture_output=True, text=True), rounds=3)
    assert done.returncode == 2 and "method patchcore has no parameter k" in done.stderr
