"""Opens N streamed chats through the gateway, waits for each one's first chunk, prints the gateway's RSS."""
import asyncio, json, sys

port, n, gpid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
BODY = json.dumps({"model": "hold", "stream": True,
                   "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}).encode()
REQ = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
       b"authorization: Bearer sk-bench-7f3c9a1e5b2d4f6a8c0e1b3d5f7a9c2e\r\n"
       b"content-length: %d\r\n\r\n" % len(BODY)) + BODY

def rss():
    fields = {}
    with open(f"/proc/{gpid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                fields[k] = int(v.split()[0]) / 1024
    return f"RSS {fields['VmRSS']:.1f} MB (peak {fields['VmHWM']:.1f} MB)"

async def open_one(conns):
    for _ in range(50):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.1)
    w.write(REQ)
    await w.drain()
    got = b""
    while b"data: " not in got:
        data = await r.read(65536)
        if not data:
            raise SystemExit(f"stream closed early: {got[:300]!r}")
        got += data
    if not got.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"unexpected answer: {got[:300]!r}")
    conns.append(w)

async def main():
    for _ in range(300):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    print(f"idle: {rss()}", flush=True)
    conns = []
    await open_one(conns)
    print(f"after one stream: {rss()}", flush=True)
    sem = asyncio.Semaphore(200)
    async def guarded():
        async with sem:
            await open_one(conns)
    await asyncio.gather(*(guarded() for _ in range(n - 1)))
    print(f"{len(conns)} open streams: {rss()}", flush=True)
    for w in conns:
        w.close()

asyncio.run(main())
