"""The figures of deploy/fault/run.sh, and whether they hold (exit 1 if not)."""
import argparse
import collections
import json
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--records", required=True)
    p.add_argument("--faults", required=True)
    p.add_argument("--events")
    p.add_argument("--rpm", type=int, required=True)
    p.add_argument("--replicas", type=int, required=True)
    p.add_argument("--mode", default="redis")
    p.add_argument("--short", default="0")
    a = p.parse_args()

    results = [json.loads(l) for l in open(a.results) if l.strip()]
    faults = {}
    for line in open(a.faults):
        name, t = line.split()
        faults[name] = float(t)
    records = {}
    for line in open(a.records):
        if not line.strip():
            continue
        rid, status, kind = (line.rstrip("\n").split("|") + ["", ""])[:3]
        records[rid] = (int(status), kind)

    # Times are Unix seconds; shown relative to the first request.
    origin = min((r["start"] for r in results), default=0.0)
    problems = []
    by = collections.Counter(r["outcome"] for r in results)
    sent, ok, limited, failed = len(results), by["ok"], by["limited"], by["failed"]

    # Failures: only requests in flight on the killed replica when it died.
    kill = faults.get("kill-r1")
    bad_failures = []
    for r in results:
        if r["outcome"] != "failed":
            continue
        # A request that got no response at all (the connection closed before any header) has
        # no replica; it can only be the killed one's if it was in flight when it died.
        on_killed = r.get("replica", "") in ("r1", "")
        in_flight = kill is not None and r["start"] <= kill + 1.0 and r["end"] >= kill - 1.0
        if not (on_killed and in_flight):
            bad_failures.append(r)
    if bad_failures:
        shown = [dict(r, at=f"{r['start'] - origin:.2f}s-{r['end'] - origin:.2f}s") for r in bad_failures[:3]]
        problems.append(f"{len(bad_failures)} failures not explained by the killed replica, e.g. {shown}")

    # Limit overshoot: admitted requests of one key in any 60 s window (the client's send times,
    # shortened by 0.2 s for the skew between sending and admission).
    redis_down = (faults.get("redis-down", -1e9), faults.get("redis-up", -1e9) + 2.0)
    worst, worst_outage = 0, 0
    by_key = collections.defaultdict(list)
    for r in results:
        if r["outcome"] in ("ok", "failed") and r.get("status") != 429 and r.get("status", 0) != 0:
            by_key[r["key"]].append(r["start"])
    for starts in by_key.values():
        starts.sort()
        j = 0
        for i, t in enumerate(starts):
            while starts[j] < t - 59.8:
                j += 1
            n = i - j + 1
            overlaps = starts[j] <= redis_down[1] and t >= redis_down[0]
            if overlaps:
                worst_outage = max(worst_outage, n)
            else:
                worst = max(worst, n)
    if worst > a.rpm:
        problems.append(f"a key was admitted {worst} times in 60 s with Redis up (rpm {a.rpm})")
    if worst_outage > a.rpm * a.replicas:
        problems.append(f"a key was admitted {worst_outage} times in 60 s around the Redis outage (bound {a.rpm * a.replicas})")

    # Usage: every answered request has exactly one record, with its status.
    answered = [r for r in results if r["outcome"] == "ok"]
    missing = [r["request_id"] for r in answered if records.get(r["request_id"], (0, ""))[0] != 200]
    ok_records = sum(1 for s, _ in records.values() if s == 200)
    if missing:
        problems.append(f"{len(missing)} answered requests have no 200 record, e.g. {missing[:3]}")
    if ok_records != len(answered):
        problems.append(f"{ok_records} records of answered requests for {len(answered)} answered requests")
    interrupted = sum(1 for _, k in records.values() if k == "interrupted")

    # Events: one per record, none doubled.
    events_line = "events: off"
    if a.events:
        ids = []
        for line in open(a.events):
            if line.strip():
                ev = json.loads(line)
                ids.append(ev.get("request_id"))
        dup = len(ids) - len(set(ids))
        missing_ev = set(records) - set(ids)
        extra_ev = set(ids) - set(records)
        events_line = f"events: {len(ids)} published for {len(records)} records, {dup} duplicates, {len(missing_ev)} missing, {len(extra_ev)} unknown"
        if dup or missing_ev or extra_ev:
            problems.append(events_line)

    print(f"fault run ({a.mode}, {'short' if a.short == '1' else 'full'}): faults at " +
          ", ".join(f"{k} {v - origin:.1f}s" for k, v in faults.items()))
    print(f"requests: {sent} sent, {ok + limited} answered ({ok} ok, {limited} limited 429), {failed} failed "
          f"(in flight on the killed replica)")
    print(f"limits: rpm {a.rpm} per key; most admitted in 60 s: {worst} with Redis up, {worst_outage} around the outage "
          f"(bound {a.rpm} and {a.rpm * a.replicas})")
    print(f"usage: {len(records)} records ({ok_records} ok, {interrupted} interrupted, {len(records) - ok_records - interrupted} other) "
          f"for {len(answered)} answered requests")
    print(events_line)
    if problems:
        for pr in problems:
            print("FAIL:", pr)
        sys.exit(1)
    print("fault run: OK")


if __name__ == "__main__":
    main()
