#!/usr/bin/env python3
"""Reads an Autobahn fuzzingclient report (OUTDIR/index.json) and exits 1 if any case FAILED, is
UNIMPLEMENTED or MISSING (wstest itself exits 0 whatever happened). Case ids given after the path are
allowed to fail; name them only with a reason. Prints 'N passed, N failed' last.
usage: check-report.py [--expect-log WSTEST_LOG] reports/servers/index.json [CASE_ID ...]

Copied from /work/shared/tools/autobahn/check-report.py, plus --expect-log: the cases wstest announced
in its log ("Cases = [...]") must all be in the report. A case the report lacks (wstest gave up, the
gateway died mid-run) counts as MISSING, i.e. failed; the original only checked the cases it found."""
import ast
import collections
import json
import sys

args = sys.argv[1:]
expected = None
if args[:1] == ["--expect-log"]:
    for line in open(args[1], errors="replace"):
        if line.startswith("Cases = ["):
            expected = ast.literal_eval(line.split("=", 1)[1].strip())
            break
    else:
        sys.exit(f"check-report: no 'Cases = [...]' line in {args[1]}")
    args = args[2:]

index = json.load(open(args[0]))
allowed = set(args[1:])
bad = []
if expected is not None and not index:
    index = {"(no agent)": {}}
for agent, cases in index.items():
    counts = collections.Counter(v["behavior"] for v in cases.values())
    print(f"{agent}: {len(cases)} cases {dict(counts)}")
    for cid, v in sorted(cases.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))):
        failed = "FAILED" in (v["behavior"], v["behaviorClose"]) or v["behavior"] in ("UNIMPLEMENTED", "MISSING")
        if failed and cid not in allowed:
            bad.append(f"{agent} {cid} {v['behavior']}/{v['behaviorClose']} -> {v['reportfile']}")
    if expected is not None:
        missing = [cid for cid in expected if cid not in cases and cid not in allowed]
        bad += [f"{agent} {cid} MISSING (announced by wstest, absent from the report)" for cid in missing]
print("\n".join(bad) or "no failed cases")
total = sum(len(c) for c in index.values())
if expected is not None:
    total = max(total, len(expected))
print(f"{total - len(bad)} passed, {len(bad)} failed")
sys.exit(1 if bad else 0)
