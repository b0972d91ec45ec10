"""Bounded load for deploy/fault/run.sh: chat requests, half of them streamed, from several
RPM-limited virtual keys through the load balancer, at a fixed offered rate for a fixed time.

Every request is one JSON line on stdout when it ends: key, stream, status, outcome, the replica
that answered (the balancer's `x-served-by`), the gateway's request id, start and end times
(Unix time in seconds, the clock run.sh marks its faults with). Outcomes: `ok` (a complete answer: 200 and, for a stream, the
`[DONE]` line), `limited` (429), `failed` (anything else: another status, a cut stream, a reset
connection, a timeout).
"""
import argparse
import asyncio
import json
import sys
import time

import httpx


async def one(client, args, key_index, key, stream, t0, out):
    start = time.time()
    rec = {"key": key_index, "stream": stream, "start": round(start, 4)}
    body = {
        "model": args.model,
        "messages": [{"role": "user", "content": f"fault run {key_index} {start - t0:.3f}"}],
        "max_tokens": 16,
        "stream": stream,
    }
    headers = {"authorization": f"Bearer {key}"}
    try:
        if stream:
            async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                rec["status"] = r.status_code
                rec["replica"] = r.headers.get("x-served-by", "")
                rec["request_id"] = r.headers.get("x-llmux-request-id", "")
                text = (await r.aread()).decode("utf-8", "replace")
                done = text.rstrip().endswith("data: [DONE]") and '"error"' not in text
        else:
            r = await client.post("/v1/chat/completions", json=body, headers=headers)
            rec["status"] = r.status_code
            rec["replica"] = r.headers.get("x-served-by", "")
            rec["request_id"] = r.headers.get("x-llmux-request-id", "")
            done = r.status_code == 200 and "choices" in r.json()
        if rec["status"] == 200 and done:
            rec["outcome"] = "ok"
        elif rec["status"] == 429:
            rec["outcome"] = "limited"
        else:
            rec["outcome"] = "failed"
    except (httpx.HTTPError, ValueError) as e:
        rec.setdefault("status", 0)
        rec["outcome"] = "failed"
        rec["error"] = type(e).__name__
    rec["end"] = round(time.time(), 4)
    out.write(json.dumps(rec) + "\n")
    out.flush()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--keys", required=True, help="file with one virtual key per line")
    p.add_argument("--model", default="gpt-4o-mini")
    p.add_argument("--rate", type=float, default=10.0, help="requests per second, all keys")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args()
    keys = [k.strip() for k in open(args.keys) if k.strip()]
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    timeout = httpx.Timeout(30.0)
    sem = asyncio.Semaphore(args.concurrency)
    t0 = time.time()
    tasks = []
    async with httpx.AsyncClient(base_url=args.url, limits=limits, timeout=timeout) as client:
        async def bounded(*a):
            async with sem:
                await one(client, args, *a)

        n = 0
        while True:
            due = t0 + n / args.rate
            if due - t0 >= args.seconds:
                break
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            ki = n % len(keys)
            tasks.append(asyncio.create_task(bounded(ki, keys[ki], n % 2 == 1, t0, sys.stdout)))
            n += 1
        await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
