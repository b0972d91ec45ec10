"""An OpenAI-compatible upstream that answers every streamed chat with one chunk, then holds it open."""
import asyncio, sys

CHUNK = (b'data: {"id":"chatcmpl-hold","object":"chat.completion.chunk","created":1,"model":"hold",'
         b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello"},"finish_reason":null}]}\n\n')
HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")

async def conn(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(HEAD + b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n")
            await writer.drain()
            await reader.read()  # hold until the gateway closes the connection
            return
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(conn, "127.0.0.1", int(sys.argv[1]), backlog=8192)
    async with server:
        await server.serve_forever()

asyncio.run(main())
