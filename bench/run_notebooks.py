"""Execute every course notebook headless with papermill and print a table.

    python bench/run_notebooks.py            # default settings, outputs in build/run/
    python bench/run_notebooks.py --smoke    # SMOKE=True, outputs in build/smoke/
    python bench/run_notebooks.py 02 03      # only notebooks whose names start so

Each notebook runs in its own process, so the peak memory reported is that of its kernel.
Exits non-zero when any notebook fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

_CHILD = r"""
import json, resource, sys, papermill as pm
src, dst, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
error = None
try:
    pm.execute_notebook(src, dst, parameters=params, cwd=sys.argv[4], progress_bar=False, kernel_name="python3")
except Exception as err:
    error = f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB (Linux)
print("@@RESULT@@" + json.dumps({"peak_mib": peak, "error": error}))
"""


def run_one(path: Path, out_dir: Path, params: dict, timeout: float) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), str(out_dir / path.name), json.dumps(params), str(path.parent)],
            capture_output=True, text=True, timeout=timeout,
            # passive OpenMP waiting: spinning threads fight each other on a busy 2-core machine
            env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
        )
        result = next((json.loads(l[10:]) for l in proc.stdout.splitlines() if l.startswith("@@RESULT@@")), None)
        if result is None:
            result = {"peak_mib": None, "error": (proc.stderr.strip().splitlines() or ["no result"])[-1]}
    except subprocess.TimeoutExpired:
        result = {"peak_mib": None, "error": f"timed out after {timeout:.0f} s"}
    result["notebook"] = path.name
    result["seconds"] = time.perf_counter() - start
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose names start with these")
    parser.add_argument("--smoke", action="store_true", help="run with SMOKE=True")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per notebook")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not args.prefixes or p.name.startswith(tuple(args.prefixes)))
    if not paths:
        print("no notebooks to run")
        return 0
    out_dir = ROOT / "build" / ("smoke" if args.smoke else "run")
    params = {"SMOKE": True} if args.smoke else {}
    results = []
    print(f"{'notebook':<32} {'seconds':>8} {'peak MiB':>9}  result")
    for path in paths:
        r = run_one(path, out_dir, params, args.timeout)
        results.append(r)
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] else "-"
        print(f"{r['notebook']:<32} {r['seconds']:>8.1f} {peak:>9}  {'pass' if not r['error'] else 'FAIL: ' + r['error']}", flush=True)
    total = sum(r["seconds"] for r in results)
    failed = sum(bool(r["error"]) for r in results)
    print(f"{'total':<32} {total:>8.1f} {'':>9}  {len(results) - failed} passed, {failed} failed")
    print(f"executed notebooks are in {out_dir.relative_to(ROOT)}/")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
