"""Run every benchmark and collect the results into one markdown summary.

    python bench/run.py [--quick]

Runs each bench/bench_*.py in sorted order as its own process (passing --quick when given),
reads the bench/results/<area>.json each one writes, and writes bench/results/summary.md: the
date, the machine, the GEMM rates of the loaded build (measured here first; every script
measures its own too and reports its hot paths against them), and every script's table. Exits
non-zero when any script fails, times out or writes no results.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from common import (GEMM_N, GEMM_RATE_COLUMNS, GEMM_ROUNDS, gemm_rate_rows, gemm_rates, gemm_rates_line, machine_info, markdown_table,
                    parse_args, results_path)

BENCH_DIR = Path(__file__).resolve().parent
TIMEOUT_S = {True: 600, False: 3600}  # per script: quick, full


def run_script(script: Path, quick: bool):
    """(seconds, error message or None) of one benchmark process; its output streams through."""
    start = time.time()
    command = [sys.executable, str(script)] + (["--quick"] if quick else [])
    try:
        code = subprocess.run(command, cwd=BENCH_DIR, timeout=TIMEOUT_S[quick]).returncode
    except subprocess.TimeoutExpired:
        return time.time() - start, f"timed out after {TIMEOUT_S[quick]} s"
    elapsed = time.time() - start
    if code != 0:
        return elapsed, f"exit status {code}"
    results = results_path(script.stem[len('bench_'):], quick)
    if not results.exists() or results.stat().st_mtime < start:
        return elapsed, f"wrote no {results.relative_to(BENCH_DIR.parent)}"
    return elapsed, None


def tables(data: dict) -> list:
    """Markdown for the tables of a results file: "rows" with its "columns" and "tables" with
    titles (bench/common.py's format); any other list of row dicts with its own keys."""
    out = []
    for key, value in data.items():
        if key == "tables":
            out += [f"### {t['title']}\n\n" + markdown_table(t["rows"], [tuple(c) for c in t["columns"]])
                    for t in value]
        elif isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            columns = [tuple(c) for c in data["columns"]] if key == "rows" and "columns" in data else None
            heading = "" if key == "rows" else f"{key}:\n\n"
            out.append(heading + markdown_table(value, columns))
    return out


def section(script: Path, elapsed: float, quick: bool) -> str:
    data = json.loads(results_path(script.stem[len('bench_'):], quick).read_text())
    machine = data.get("machine", {})
    lines = [f"## {data.get('title', data.get('area', script.stem))}", "",
             f"`{script.name}`, {elapsed:.0f} s"
             + (f", load average at the end {machine['load_average']}" if "load_average" in machine else ""),
             ""]
    if "gemm_gflops" in machine:
        lines += [gemm_rates_line(machine), ""]
    lines += [t + "\n" for t in tables(data)]
    lines += [f"- {note}" for note in data.get("notes", [])]
    return "\n".join(lines)


def header(quick: bool) -> str:
    m = machine_info()
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return "\n".join([
        f"# varinf benchmarks{' (quick)' if quick else ''}", "",
        f"- date: {m['date']}",
        f"- machine: {m['cpu']}, {m['nproc']} cores, {m['platform']}",
        f"- load average at the start: {m['load_average']}",
        f"- varinf build variant: {m['varinf_build_variant']}, OMP_WAIT_POLICY={m['omp_wait_policy']}",
        f"- versions: {versions}", "",
        "Eigen GEMM rates of the loaded build ([n, n] x [n, n], n = "
        f"{GEMM_N[quick]}, median of {GEMM_ROUNDS}, measured by bench/run.py before the scripts; "
        "the % GEMM columns use each script's own measurement; a 2-thread rate below the 1-thread one "
        "means another process held a core, and 2-thread % GEMM values can then exceed 100):", "",
        markdown_table(gemm_rate_rows(gemm_rates(quick)), GEMM_RATE_COLUMNS), ""])


def main(argv=None) -> int:
    args = parse_args(__doc__, argv)
    parts, failures = [header(args.quick)], []
    for script in sorted(BENCH_DIR.glob("bench_*.py")):
        print(f"\n=== {script.name}{' --quick' if args.quick else ''}", flush=True)
        elapsed, error = run_script(script, args.quick)
        if error:
            failures.append(f"- {script.name}: {error}")
        else:
            parts.append(section(script, elapsed, args.quick))
    if failures:
        parts.append("## Failures\n\n" + "\n".join(failures))
    summary = results_path("summary", args.quick).with_suffix(".md")
    summary.write_text("\n\n".join(parts) + "\n")
    print(f"\nwrote {summary}" + (f"; {len(failures)} failed" if failures else ""))
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
