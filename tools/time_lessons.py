"""Run notebooks top to bottom as a learner would (a fresh kernel each) and measure their wall and CPU time.

    python tools/time_lessons.py build/student/*.ipynb            # after `make student`: the student editions
    python tools/time_lessons.py --record docs/lesson_times.json build/student/*.ipynb

Each notebook runs in `notebooks/` (as JupyterLab would run it) with nbclient. A notebook passes when no cell
raises and every helper.check( cell prints feedback (a student edition's checkers all say "Not yet"). CPU time is
the kernel's user + system time, read from the kernel process's rusage when it exits; on a busy machine it
is the fairer number (wall time grows with the load, CPU time hardly). `--record` writes the times as JSON, with the
conditions (cores, threads, load average), for tools/teaching_guide.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

__all__ = ["run_notebook", "main"]

ROOT = Path(__file__).resolve().parent.parent


def run_notebook(path: Path, timeout: int = 1800) -> dict:
    """Execute path in a fresh kernel; return wall/CPU seconds and what its exercise checkers printed."""
    notebook = nbformat.read(path, as_version=4)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()  # raises CellExecutionError on the first failing cell; the kernel is shut down and reaped
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    checks = ["".join(o.get("text", "") for o in c.outputs).strip().split("\n")[0]
              for c in notebook.cells if c.cell_type == "code" and "helper.check(" in c.source]
    return {"wall_s": round(wall, 1),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
            "checks": checks}


def main(argv: list[str] | None = None) -> int:
    """Command line: run each notebook given, print its times and checker verdicts, optionally record them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--record", type=Path, help="write the times as JSON to this file")
    args = parser.parse_args(argv)
    conditions = {"cores": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                  "load_average_at_start": round(os.getloadavg()[0], 1), "python": platform.python_version(),
                  "date": time.strftime("%Y-%m-%d")}
    results, failed = {}, 0
    for path in args.notebooks:
        result = run_notebook(path)
        not_yet = sum(c.startswith("Not yet") for c in result["checks"])
        print(f"{path.name}: wall {result['wall_s']:.0f} s, CPU {result['cpu_s']:.0f} s, "
              f"{len(result['checks'])} checks ({not_yet} 'Not yet')", flush=True)
        failed += not result["checks"]
        results[path.name] = {k: result[k] for k in ("wall_s", "cpu_s")}
        conditions["load_average_at_end"] = round(os.getloadavg()[0], 1)
        if args.record:  # after every lesson, so a run stopped half-way keeps what it measured
            recorded = json.loads(args.record.read_text()) if args.record.exists() else {"lessons": {}}
            recorded["lessons"].update(results)
            recorded["conditions"] = conditions
            args.record.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
