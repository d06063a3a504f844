"""Lesson 11's insight engine against every failure scenario: inject each, diagnose, run the top finding's fix.

Prints the scenario x diagnosis confusion table (the injected cause against the cause the engine ranked first; a
perfect engine fills the diagonal), then per scenario: the first-ranked cause, how many findings and evidence lines,
whether the suggested fix fixed it, and the seconds it took. For the README.

Every scenario by default, the benchmark-only ones too (kubelet 1.36's CreateContainerConfigError, FailedMount,
StartError and init-container failures, a failed Job, an HPA with no target, refused pods: the notebook and the e2e
test leave them out). A scenario the lab has no `fixed` check for (the failed Job: what it should run is a person's
call) is diagnosed only, and counts neither way in "fixed".

    LABKIT_STATE_DIR=... LABKIT_API_PORT=... python benchmarks/diagnose_confusion.py [--no-fix] [SCENARIO ...]

Needs a running lab (`labkit up`); starts node-problem-detector and the GPU exporter for the node-level scenarios.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

import labkit as lk
from labkit.lessons import troubleshooting as l11


def found(result: l11.DrillResult, cause: str) -> bool:
    """Whether the diagnosis before the fix lists ``cause`` among its findings (a pair's second fault)."""
    return bool(result.before) and any(f.cause == cause for f in result.before.findings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", help="default: every scenario, the benchmark-only ones included")
    parser.add_argument("--no-fix", action="store_true", help="diagnose only; do not run the suggested fixes")
    args = parser.parse_args()
    lab = lk.connect()
    started = time.monotonic()
    l11.clean_up(lab)
    names = args.scenarios or list(l11.all_scenarios(benchmark=True))
    results = l11.drill(lab, names, fix=not args.no_fix, timeout=120)
    l11.clean_up(lab)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    table = l11.confusion(results)
    print("injected cause (rows) x cause the engine ranked first (columns)\n")
    print(table.to_string())
    print()
    rows = [{"scenario": r.scenario, "injected": r.expected, "ranked first": r.top,
             "findings": len(r.before.findings) if r.before else 0,
             "evidence lines": sum(len(f.evidence) for f in r.before.findings) if r.before else 0,
             "also found": ", ".join(f"{c} {'yes' if found(r, c) else 'NO'}" for c in l11.scenario(r.scenario).also)
             or "-",
             "fix fixed it": r.fixed if not args.no_fix and l11.scenario(r.scenario).fixed else "-",
             "first after the fix": r.after.top.cause if r.after and r.after.top else "-",
             "seconds": round(r.seconds, 1), "error": r.error[:80]} for r in results]
    print(pd.DataFrame(rows).to_string(index=False))
    right = sum(r.top == r.expected and all(found(r, c) for c in l11.scenario(r.scenario).also) for r in results)
    fixable = [r for r in results if l11.scenario(r.scenario).fixed]
    fixed = sum(r.fixed for r in fixable)
    print(f"\n{right}/{len(results)} named first, {fixed}/{len(fixable)} fixed by the suggested command "
          f"({len(results) - len(fixable)} diagnosed only), {time.monotonic() - started:.0f} s in all")
    return 0 if right == len(results) and (args.no_fix or fixed == len(fixable)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
