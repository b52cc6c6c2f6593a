"""Run the README's install-without-make commands in a fresh virtual environment, then import helper and load
SmolLM2 from it: the path a learner on Windows or a laptop without make follows (CI runs it).

    python3.11 tools/no_make_install.py            # a venv in a temporary folder, removed afterwards

The commands are read from the README block between `<!-- no-make-install:start -->` and `:end -->`; each
`python -m ...` line runs with the new venv's python. The torch line keeps its `--extra-index-url` only if that
index answers (tools/torch_index.py), like `make setup`. The model cache goes to a temporary QF_CACHE_DIR, so
the conversion runs from scratch. pip gets `--quiet --no-compile` (Python compiles on first import instead).
Prints the time of each step.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

from torch_index import reachable

__all__ = ["readme_commands", "main"]

ROOT = Path(__file__).resolve().parent.parent
LOAD_CHECK = ("import helper, torch; model, tokenizer = helper.load_smollm2(); "
              "print('helper imported; SmolLM2 loaded:', f'{sum(p.numel() for p in model.parameters()):,}', "
              "'parameters,', next(model.parameters()).dtype)")


def readme_commands(readme: Path = ROOT / "README.md") -> list[list[str]]:
    """The `python -m ...` lines of the README's no-make block after the venv, as argument lists (no comments)."""
    block = re.search(r"<!-- no-make-install:start -->\n```bash\n(.*?)```", readme.read_text(), re.S)
    if block is None:
        raise SystemExit("README.md has no <!-- no-make-install:start --> block")
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    # `python -m venv` is this script's own first step (into a temporary folder, never the course's .venv).
    return [shlex.split(line) for line in lines if line.startswith("python -m ") and " -m venv " not in line]


def _torch_fallback(command: list[str]) -> list[str]:
    """Drop --extra-index-url URL from the torch line when URL does not answer (as the Makefile does)."""
    if "--extra-index-url" not in command or "torch==" not in " ".join(command):
        return command
    at = command.index("--extra-index-url")
    url = command[at + 1]
    if reachable(url.rstrip("/") + "/torch/"):
        return command
    print(f"  ({url} unreachable: torch from the default index, like make setup)", flush=True)
    return command[:at] + command[at + 2:]


def main() -> int:
    """Create the venv, run each command, then the load check; 0 when all of it succeeded."""
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qf-no-make-") as work:
        env_dir, cache = Path(work) / "venv", Path(work) / "cache"
        start = time.perf_counter()
        venv.create(env_dir, with_pip=True)
        python = str(env_dir / ("Scripts" if os.name == "nt" else "bin") / "python")
        print(f"python -m venv: {time.perf_counter() - start:.0f} s", flush=True)
        environment = {**os.environ, "QF_CACHE_DIR": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        for command in readme_commands() + [["python", "-c", LOAD_CHECK]]:
            command = _torch_fallback(command)
            start = time.perf_counter()
            argv = [python] + command[1:]
            if argv[1:3] == ["-m", "pip"]:  # quiet, and no .pyc compiling of torch's files (minutes on 2 cores)
                argv[4:4] = ["--quiet", "--no-compile"]
            result = subprocess.run(argv, cwd=ROOT, env=environment)
            shown = " ".join(command) if command[1] != "-c" else "python -c <import helper; load_smollm2()>"
            print(f"{shown}: {time.perf_counter() - start:.0f} s", flush=True)
            if result.returncode:
                print(f"FAILED (exit {result.returncode}): {shown}", flush=True)
                return 1
    print(f"install without make: {time.perf_counter() - total:.0f} s in all", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
