"""Run ledgerflow, its peers and raw SQLite side by side; print medians, min-max and the goals.

Usage (from the repository root)::

    python -m benchmarks.compare            # warm-up + 5 runs of everything (~5 min)
    python -m benchmarks.compare --quick    # 1 run, small sizes (~1 min)
    python -m benchmarks.compare --no-peers # ledgerflow and raw SQLite only

Every measurement runs in a fresh subprocess (``python -m benchmarks.<script>``)
on a fresh database file; the systems are interleaved round by round, so a
slow minute of the machine hits all of them alike. The first round is a
warm-up and is discarded. Writes ``benchmarks/results/latest.json`` (every
run) and ``benchmarks/results/latest.md`` (the table).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASH, TIMES = "\u2013", "\u00d7"  # en dash and multiplication sign
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Bench:
    key: str           # row label
    workload: str      # W1, W2, W3, Replay, Core
    module: str        # benchmarks.<module>
    n: int
    needs: str = ""    # an importable module the peer needs
    keep_dir: bool = False  # reuse one folder across runs (replay's prebuilt log)


STRICT = "ledgerflow, durable_dispatch=True"


def plan(quick: bool, peers: bool) -> list[Bench]:
    chain_n = fan_n = 50 if quick else 200
    scale = (50, 200, 1000) if quick else (200, 1000, 10_000)
    benches = [
        Bench("ledgerflow", "W1", "rl_chain", chain_n),
        Bench(STRICT, "W1", "rl_chain_strict", chain_n),
        Bench("Burr", "W1", "burr_chain", chain_n, "burr"),
        Bench("LangGraph", "W1", "langgraph_chain", chain_n, "langgraph.checkpoint.sqlite"),
        Bench("DBOS", "W1", "dbos_chain", chain_n, "dbos"),
        Bench("eventsourcing", "W1", "es_chain", chain_n, "eventsourcing"),
        Bench("raw aiosqlite, commit/task, WAL+FULL", "W1", "raw_aiosqlite", chain_n),
        Bench("raw sqlite3, commit/task, WAL+FULL", "W1", "raw_sqlite3", chain_n),
        Bench("raw sqlite3, one tx, WAL+NORMAL", "W1", "raw_sqlite3_onetx", chain_n),
        Bench("ledgerflow", "W2", "rl_fanout", fan_n),
        Bench("Burr", "W2", "burr_fanout", fan_n, "burr"),
        Bench("LangGraph", "W2", "langgraph_fanout", fan_n, "langgraph.checkpoint.sqlite"),
        Bench("DBOS", "W2", "dbos_fanout", fan_n, "dbos"),
        Bench("eventsourcing", "W2", "es_fanout", fan_n, "eventsourcing"),
        *[Bench(f"ledgerflow n={n:,}", "W3", "rl_fanout", n) for n in scale],
        Bench("ledgerflow", "Replay", "rl_replay", 50_000 if quick else 1_000_000, keep_dir=True),
        Bench("ledgerflow", "Core", "rl_core", 200 if quick else 2000),
    ]
    out = []
    for b in benches:
        if b.needs and not peers:
            continue
        if b.needs and importlib.util.find_spec(b.needs.split(".")[0]) is None:
            print(f"skipping {b.key} {b.workload}: {b.needs} is not installed "
                  "(pip install -e '.[bench]')", file=sys.stderr)
            continue
        out.append(b)
    return out


def measure(b: Bench, folder: str, timeout: float = 900) -> dict[str, Any]:
    """Run one benchmark script in a fresh interpreter; its last JSON line is the result."""
    if not b.keep_dir:
        shutil.rmtree(folder, ignore_errors=True)
    cmd = [sys.executable, "-m", f"benchmarks.{b.module}", "--n", str(b.n), "--dir", folder]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


HEADLINE = {"W1": "steps_per_s", "W2": "steps_per_s", "W3": "us_per_step",
            "Replay": "fold_events_per_s", "Core": "us_per_decision"}
EXTRA = {"W3": ("steps_per_s", "peak_rss_mb"),
         "Replay": ("fold_s", "read_decode_s", "floor_sqlite3_s", "fold_vs_read_decode",
                    "at_s", "plan_only_s", "peak_rss_mb"),
         "Core": ("evolve_us_per_event",)}


def summarise(runs: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for (workload, key), results in runs.items():
        good = [r for r in results if "error" not in r]
        entry: dict[str, Any] = {"workload": workload, "system": key, "runs": len(good),
                                 "errors": [r["error"] for r in results if "error" in r]}
        if good:
            for metric in (HEADLINE[workload], *EXTRA.get(workload, ())):
                entry[metric] = spread([float(r[metric]) for r in good])
            entry["n"] = good[0]["n"]
            for field in ("events", "commits", "shares_pct", "top", "at"):
                if field in good[-1]:
                    entry[field] = good[-1][field]
        summary[f"{workload}|{key}"] = entry
    return summary


def med(summary: dict[str, Any], workload: str, key: str, metric: str | None = None) -> float:
    entry = summary.get(f"{workload}|{key}", {})
    value = entry.get(metric or HEADLINE[workload])
    return float(value["median"]) if value else float("nan")


def goals(summary: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """(goal, met, the figures) for each goal of the issue.

    A goal whose figures were not measured (a peer not installed, a workload
    left out with ``--only``) is left out rather than judged on NaN.
    """
    out: list[tuple[str, bool, str]] = []
    for key, label in (("ledgerflow", ""), (STRICT, " (durable_dispatch)")):
        w1 = med(summary, "W1", key)
        for peer, want in (("Burr", 3.0), ("eventsourcing", 1.0)):
            r = w1 / med(summary, "W1", peer)
            if not math.isnan(r):
                out.append((f"W1{label} >= {want:g}x {peer}", r >= want, f"{r:.2f}x"))
        r = w1 / med(summary, "W1", "raw aiosqlite, commit/task, WAL+FULL")
        if not math.isnan(r):
            out.append((f"W1{label} >= 60% of raw aiosqlite (commit/task, WAL+FULL)",
                        r >= 0.6, f"{100 * r:.0f}%"))
    w2_tasks = med(summary, "W2", "ledgerflow")
    if not math.isnan(w2_tasks):
        out.append(("W2 >= 10,000 steps/s", w2_tasks >= 10_000, f"{w2_tasks:,.0f} steps/s"))
    for peer, want in (("Burr", 2.0), ("LangGraph", 6.0)):
        r = w2_tasks / med(summary, "W2", peer)
        if not math.isnan(r):
            out.append((f"W2 >= {want:g}x {peer}", r >= want, f"{r:.2f}x"))
    w3 = {k.split("|", 1)[1]: v for k, v in summary.items() if k.startswith("W3|")}
    if w3:
        per = [v["us_per_step"]["median"] for v in w3.values() if "us_per_step" in v]
        if per:
            r = max(per) / min(per)
            out.append(("W3 per-task cost flat (max/min <= 1.5) up to the largest n", r <= 1.5,
                        " / ".join(f"{p:.0f}" for p in per) + f" µs/task, max/min {r:.2f}"))
    rep = summary.get("Replay|ledgerflow")
    if rep and "fold_vs_read_decode" in rep:
        r = rep["fold_vs_read_decode"]["median"]
        out.append(("Replay fold within 5x of read+decode", r <= 5, f"{r:.2f}x"))
        eps = rep["fold_events_per_s"]["median"]
        out.append(("Replay >= 100,000 events/s", eps >= 100_000, f"{eps:,.0f} events/s"))
        out.append((f"replay at={rep.get('at')} stops at its seq", rep.get("at") is not None,
                    f"{rep['at_s']['median'] * 1e3:.0f} ms (of which the plan events "
                    f"{rep['plan_only_s']['median'] * 1e3:.0f} ms) vs "
                    f"{rep['fold_s']['median']:.2f} s for the whole log"))
    core = summary.get("Core|ledgerflow")
    if core and "shares_pct" in core:
        share = core["shares_pct"]["transitions"]
        out.append(("Core: transitions does not dominate", share < 10,
                    f"{core['us_per_decision']['median']:.1f} µs/decision, "
                    f"transitions {share:.1f}%"))
    return out


def fmt(entry: dict[str, Any], metric: str, digits: int = 0) -> str:
    v = entry.get(metric)
    if not v:
        return "—"
    return f"{v['median']:,.{digits}f} ({v['min']:,.{digits}f}{DASH}{v['max']:,.{digits}f})"


def table(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"Run {meta['date']} on {meta['machine']}; {meta['runs']} run(s) after a warm-up, "
             f"median (min{DASH}max). Durable: every system on a SQLite file with its default "
             "durable settings; ledgerflow and the raw baselines WAL + synchronous=FULL "
             "unless marked.", ""]
    for workload, title, unit in (("W1", "W1: chain of n tasks", "steps/s"),
                                  ("W2", "W2: planner + fan-out + join", "steps/s")):
        lines += [f"### {title}", "", f"| system | n | {unit} | events | commits |",
                  "|---|---|---|---|---|"]
        for entry in summary.values():
            if entry["workload"] == workload:
                err = f" ERROR {entry['errors'][0]}" if entry["errors"] else ""
                lines.append(f"| {entry['system']}{err} | {entry.get('n', '')} | "
                             f"{fmt(entry, 'steps_per_s')} | {entry.get('events', '')} | "
                             f"{entry.get('commits', '')} |")
        lines.append("")
    lines += ["### W3: ledgerflow fan-out scaling", "",
              "| n | steps/s | µs per step | peak RSS MiB |", "|---|---|---|---|"]
    for entry in summary.values():
        if entry["workload"] == "W3":
            lines.append(f"| {entry.get('n', '')} | {fmt(entry, 'steps_per_s')} | "
                         f"{fmt(entry, 'us_per_step', 1)} | {fmt(entry, 'peak_rss_mb')} |")
    rep = summary.get("Replay|ledgerflow")
    if rep and "fold_s" in rep:
        lines += ["", f"### Replay: one run of {rep['n']:,} events", "",
                  "| step | seconds |", "|---|---|",
                  f"| sqlite3 SELECT + msgspec decode (floor) | {fmt(rep, 'floor_sqlite3_s', 2)} |",
                  f"| store.read_all + decode_event | {fmt(rep, 'read_decode_s', 2)} |",
                  f"| load_run_state (fold) | {fmt(rep, 'fold_s', 2)} |",
                  f"| load_run_state(at={rep.get('at')}) | {fmt(rep, 'at_s', 3)} |",
                  f"| load_run_state(at=3): the plan events only | "
                  f"{fmt(rep, 'plan_only_s', 3)} |",
                  "", f"Fold: {fmt(rep, 'fold_events_per_s')} events/s, "
                  f"{fmt(rep, 'fold_vs_read_decode', 2)}{TIMES} read+decode; "
                  f"peak RSS {fmt(rep, 'peak_rss_mb')} MiB."]
    core = summary.get("Core|ledgerflow")
    if core and "us_per_decision" in core:
        shares = ", ".join(f"{k} {v:.0f}%" for k, v in core["shares_pct"].items())
        lines += ["", f"### Core: decide + evolve, no I/O ({core['n']:,}-task fan-out outcomes)",
                  "", f"{fmt(core, 'us_per_decision', 1)} µs per decision; evolve alone "
                  f"{fmt(core, 'evolve_us_per_event', 2)} µs per event. Self-time by library "
                  f"(cProfile): {shares}."]
    lines += ["", "### Goals", "", "| goal | met | measured |", "|---|---|---|"]
    lines += [f"| {g} | {'yes' if ok else '**no**'} | {why} |" for g, ok, why in goals(summary)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="1 run, small sizes")
    parser.add_argument("--runs", type=int, default=None, help="measured runs (default 5)")
    parser.add_argument("--no-peers", action="store_true", help="ledgerflow and raw SQLite only")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W2")
    parser.add_argument("--out", default=str(RESULTS), help="folder for latest.json/.md")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    benches = plan(args.quick, peers=not args.no_peers)
    if args.only:
        wanted = set(args.only.split(","))
        benches = [b for b in benches if b.workload in wanted]
    base = tempfile.mkdtemp(prefix="rlcompare-", dir=os.environ.get("BENCH_DIR"))
    collected: dict[tuple[str, str], list[dict[str, Any]]] = {
        (b.workload, b.key): [] for b in benches}
    started = time.time()
    try:
        for round_ in range(runs + 1):
            label = "warm-up" if round_ == 0 else f"run {round_}/{runs}"
            for i, b in enumerate(benches):
                r = measure(b, os.path.join(base, f"b{i}"))
                print(f"[{label}] {b.workload:6} {b.key:40} "
                      + (f"ERROR {r['error']}" if "error" in r else
                         f"{r[HEADLINE[b.workload]]:,.1f} {HEADLINE[b.workload]}"),
                      file=sys.stderr, flush=True)
                if round_ > 0:
                    collected[(b.workload, b.key)].append(r)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    summary = summarise(collected)
    meta = {"date": time.strftime("%Y-%m-%d"), "runs": runs, "quick": args.quick,
            "seconds": time.time() - started,
            "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
                       f"SQLite {sqlite3.sqlite_version}, {platform.system()}"}
    md = table(summary, meta)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "goals": goals(summary),
         "runs": {f"{w}|{k}": v for (w, k), v in collected.items()}}, indent=1))
    (out / "latest.md").write_text(md)


if __name__ == "__main__":
    main()
