"""Run the long reliability checks and write docs/reliability.md from what they report.

Runs, each as a real pytest session in a subprocess:

* tests/test_faults.py with GANKIT_FAULTS=N (N random SIGKILLs, named-point kills, a full
  disk through RLIMIT_FSIZE and tmpfs, NaN losses);
* tests/test_cli_sweep.py with GANKIT_SWEEP=full (every command and option, the whole
  table of hostile values);
* tests/test_checkpoint_content.py (hostile checkpoint content, metrics damage);
* tests/test_run_lock.py (two processes on one run folder: trains, resumes, an export,
  a SIGKILLed holder; takeovers that must keep the user's files);
* tests/test_hardening.py with GANKIT_HARDENING=N (N Hypothesis examples per property:
  ONNX metadata and graphs, output path lengths, checkpoints that lie, --config files,
  environment variables, bounded JSON), which records its counts per category;
* any tests/test_fuzz_*.py, with GANKIT_FUZZ=N (N examples per property and mutation-loop
  cases: their long setting).

Tests that know their own counts append a JSON line to GANKIT_RELIABILITY_LOG; for the
rest the table counts pytest's cases (from its JUnit XML). Nothing in the table is typed
by hand: rerun this script to refresh it.

    .venv/bin/python bench/reliability.py            # 20 kills, full sweep (~40-60 min on 2 cores)
    .venv/bin/python bench/reliability.py --kills 5  # quicker

Each run also writes its counts to bench/results/reliability.json, which the page is
rendered from (``--records`` renders from the raw logs of earlier runs instead).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_model  # noqa: E402  (bench/common.py: the machine line every bench shares)


def run_suite(files: list[str], env: dict[str, str], log: Path, timeout: float) -> dict:
    """Run pytest on ``files``; return its case counts, the seconds it took and its tail."""
    xml = log.with_suffix(f".{len(list(log.parent.glob('*.xml')))}.xml")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *files]
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env, "GANKIT_RELIABILITY_LOG": str(log)},
                              capture_output=True, text=True, timeout=timeout)
        tail, code = (proc.stdout + proc.stderr)[-3000:], proc.returncode
    except subprocess.TimeoutExpired:
        tail, code = f"timed out after {timeout:.0f}s", -1
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if xml.exists():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        for key in counts:
            counts[key] = int(suite.get(key, 0))
        failed_cases = [f"{c.get('name')}" for c in suite.iter("testcase")
                        if c.find("failure") is not None or c.find("error") is not None]
    else:
        failed_cases = []
    return {"files": files, "seconds": time.time() - start, "exit": code, "tail": tail,
            "failed_cases": failed_cases, **counts}


def render(records: list[dict], suites: list[dict], args, started: float) -> str:
    lines = [
        "# Reliability: what was tried, what must hold, what happened",
        "",
        "This page is written by `bench/reliability.py`; do not edit it by hand. Rerun it with",
        f"`.venv/bin/python bench/reliability.py --kills {args.kills} --sweep {args.sweep} "
        f"--fuzz {args.fuzz} --hardening {args.hardening}` to refresh it.",
        "",
        f"Last run: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu_model()} "
        f"({os.cpu_count()} CPUs), Python {platform.python_version()}, "
        f"{(time.time() - started) / 60:.1f} minutes in all.",
        "",
        "| check | tried | must hold | result |",
        "|---|---:|---|---|",
    ]
    for r in records:
        result = "held every time" if r["failed"] == 0 else f"**{r['failed']} failed**"
        lines.append(f"| {r['check']} | {r['tried']} | {r['must_hold']} | {result} |")
    for s in suites:
        if s.get("recorded") and s["failures"] + s["errors"] == 0 and s["exit"] in (0, 5):
            continue  # its own records above say what it tried; a failed one gets its row too
        ok = s["tests"] - s["failures"] - s["errors"] - s["skipped"]
        result = "all passed" if s["failures"] + s["errors"] == 0 and s["exit"] in (0, 5) else \
            f"**{s['failures'] + s['errors']} failed** (exit {s['exit']})"
        skipped = f", {s['skipped']} skipped" if s["skipped"] else ""
        lines.append(f"| {s['title']} | {s['tests']} cases ({ok} ran{skipped}) | {s['must_hold']} | {result} |")
    lines += ["", "## Suites", "", "| pytest run | cases | failed | skipped | seconds |", "|---|---:|---:|---:|---:|"]
    for s in suites:
        lines.append(f"| `{' '.join(s['files'])}` {s['env_text']} | {s['tests']} | {s['failures'] + s['errors']} | "
                     f"{s['skipped']} | {s['seconds']:.0f} |")
    failures = [f for r in records for f in r.get("failures", [])]
    failed_cases = [f"{' '.join(s['files'])}: {c}" for s in suites for c in s["failed_cases"]]
    if failures or failed_cases:
        lines += ["", "## Failures", ""] + [f"- `{f}`" for f in failures + failed_cases]
    lines += [
        "",
        "Timing fields (`steps_per_s`, `elapsed_s`) are left out when metrics.jsonl files are",
        "compared: they measure the wall clock, which no two runs share. Everything else in the",
        "log, and every tensor of the final checkpoint, must be identical.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="random SIGKILLs in the fault loop (default 20)")
    parser.add_argument("--sweep", choices=("full", "ci"), default="full",
                        help="CLI sweep table: full (every value) or ci (one wrong-type value per option)")
    parser.add_argument("--fuzz", type=int, default=300,
                        help="examples per property and mutation-loop cases in tests/test_fuzz_*.py (default 300)")
    parser.add_argument("--hardening", type=int, default=300,
                        help="Hypothesis examples per property in tests/test_hardening.py (default 300)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reliability.md")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results" / "reliability.json",
                        help="where the run's records and suite counts are written (JSON)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per pytest run")
    parser.add_argument("--records", type=Path, nargs="+",
                        help="render from GANKIT_RELIABILITY_LOG files of runs already made, instead of running")
    args = parser.parse_args()
    started = time.time()
    if args.records:
        records = []
        for path in args.records:
            lines = [json.loads(line) for line in path.read_text().splitlines() if line]
            calls = [r for r in lines if "command" in r]  # a GANKIT_SWEEP_PROGRESS file: one line per call
            kills = [r for r in lines if "kill" in r]  # a GANKIT_FAULTS_PROGRESS file: one line per kill
            records += [r for r in lines if "check" in r]
            if kills:
                last = kills[-1]
                records.append({"check": f"SIGKILL at random moments, as far as this run got "
                                         f"({last['mid_checkpoint']} mid-checkpoint, {last['mid_prune']} mid-prune; "
                                         f"newest committed step {max(last['committed'] or [0])})",
                                "tried": len(kills), "failed": 0,
                                "must_hold": "after every kill: no metrics row lost, no half-deleted checkpoint "
                                             "(the final bit-exact comparison needs the run to finish)"})
            if calls:
                bad = [f"gankit {c['command']} {c['option']} {c['value'][:40]!r}: {c['problem'][:160]}"
                       for c in calls if c["problem"]]
                records.append({"check": f"CLI sweep, full table, as far as this run got: "
                                         f"{len({(c['command'], c['option']) for c in calls})} options of "
                                         f"{len({c['command'] for c in calls})} commands",
                                "tried": len(calls), "failed": len(bad),
                                "must_hold": "exit 0/1/2, a message on failure, no traceback, no hang",
                                "failures": bad})
        args.out.write_text(render(records, [], args, started).replace(
            f"{(time.time() - started) / 60:.1f} minutes in all.", "rendered from the records of earlier runs."))
        print(f"wrote {args.out} from {len(records)} records")
        return 0
    fuzz = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_fuzz_*.py"))
    plan = [
        (["tests/test_faults.py"], {"GANKIT_FAULTS": str(args.kills)}, "fault injection",
         "bit-exact resume, or a clean error with the last checkpoint intact"),
        (["tests/test_cli_sweep.py"], {"GANKIT_SWEEP": args.sweep}, "CLI sweep", "no traceback"),
        (["tests/test_checkpoint_content.py"], {}, "hostile checkpoint content, metrics damage, pruning, modes",
         "one ModelFileError / exit 1, never a traceback; nothing lost"),
        (["tests/test_run_lock.py"], {}, "two processes on one run folder: two trains, two resumes, a resume "
         "during an export, kill -9 of the holder then a resume; takeovers beside user files",
         "the second writer exits 1 naming the holder's PID and changes nothing; bit-exact weights and the same "
         "metrics.jsonl as an uninterrupted run; no user file deleted"),
        (["tests/test_hardening.py"], {"GANKIT_HARDENING": str(args.hardening)},
         "hostile input by category (property tests)",
         "gankit's one-line error or a working result; no traceback, no hang, no allocation sized by the input"),
    ]
    if fuzz:
        plan.append((fuzz, {"GANKIT_FUZZ": str(args.fuzz)}, "fuzz tests (" + ", ".join(Path(f).stem for f in fuzz) + ")",
                     "only gankit's error types; no traceback, no hang"))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "records.jsonl"
        suites = []
        for files, env, title, must_hold in plan:
            before = log.read_text().count("\n") if log.exists() else 0
            print(f"running {' '.join(files)} {env} ...", flush=True)
            suite = run_suite(files, env, log, args.timeout)
            after = log.read_text().count("\n") if log.exists() else 0
            suite.update(title=title, must_hold=must_hold, recorded=after > before,
                         env_text=" ".join(f"`{k}={v}`" for k, v in env.items()))
            print(f"  {suite['tests']} cases, {suite['failures'] + suite['errors']} failed, "
                  f"{suite['seconds']:.0f}s", flush=True)
            suites.append(suite)
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(records, suites, args, started))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "finished_utc": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}", "machine": cpu_model(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "minutes": round((time.time() - started) / 60, 1),
        "arguments": {"kills": args.kills, "sweep": args.sweep, "fuzz": args.fuzz, "hardening": args.hardening},
        # A failed suite keeps the tail of its output: what failed, and why.
        "records": records, "suites": [{k: v for k, v in s.items() if k != "tail" or s["failures"] + s["errors"]}
                                       for s in suites],
    }, indent=1) + "\n")
    print(f"wrote {args.out} and {args.results}")
    return 0 if all(s["failures"] + s["errors"] == 0 and s["exit"] in (0, 5) for s in suites) else 1


if __name__ == "__main__":
    sys.exit(main())
