"""A TCP proxy that counts the bytes it carries, for bench/metrics-bandwidth.sh.

    count-proxy.py --stats FILE NAME=LISTEN_PORT:TARGET_PORT ...

Listens on 127.0.0.1:LISTEN_PORT and forwards every connection to
127.0.0.1:TARGET_PORT. Every second it rewrites FILE with the bytes carried
so far per NAME: {"NAME": {"up": client->server, "down": server->client,
"connections": n}}. The bytes are TCP payload (HTTP headers and bodies);
TCP/IP headers are not counted (see nix/OBSERVABILITY.md for the estimate).
"""

import argparse
import asyncio
import json
import os
import signal

stats = {}


async def pipe(reader, writer, name, direction):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            stats[name][direction] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 (already closed)
            pass


def handler(name, target_port):
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            # Target down (e.g. the receiver of an outage test): refuse, as
            # the target itself would.
            client_writer.close()
            return
        stats[name]["connections"] += 1
        await asyncio.gather(
            pipe(client_reader, server_writer, name, "up"),
            pipe(server_reader, client_writer, name, "down"),
        )

    return handle


async def dump(path):
    while True:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(stats, f)
        os.replace(tmp, path)
        await asyncio.sleep(1)


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stats", required=True)
    ap.add_argument("routes", nargs="+", metavar="NAME=LISTEN_PORT:TARGET_PORT")
    args = ap.parse_args()
    servers = []
    for route in args.routes:
        name, ports = route.split("=", 1)
        listen, target = (int(p) for p in ports.split(":"))
        stats[name] = {"up": 0, "down": 0, "connections": 0}
        servers.append(await asyncio.start_server(handler(name, target), "127.0.0.1", listen))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    task = asyncio.create_task(dump(args.stats))
    await stop.wait()
    task.cancel()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
