"""Run one notebook and print the kernel's memory after every code cell.

    python bench/cell_memory.py notebooks/00_setup.ipynb [--smoke]

Reads the kernel process's VmRSS (now) and VmHWM (peak so far) from /proc (Linux), so the cell
that drives a lesson's peak memory is easy to find.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def _status(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--smoke", action="store_true", help="set SMOKE = True in the parameters cell")
    args = parser.parse_args(argv)
    nb = nbformat.read(args.notebook, as_version=4)
    if args.smoke:
        for cell in nb.cells:
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                cell.source = cell.source.replace("SMOKE = False", "SMOKE = True", 1)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(args.notebook.parent)}})
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        print(f"{'cell':>4} {'rss':>6} {'peak':>6} {'anon':>6} {'file':>6}  first line")
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, index)
            m = _status(pid)
            first = next((l for l in cell.source.splitlines() if l.strip() and not l.startswith("# NBVAL")), "")
            print(f"{index:>4} {m['VmRSS']:>6.0f} {m['VmHWM']:>6.0f} {m['RssAnon']:>6.0f} {m['RssFile']:>6.0f}  {first[:70]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
