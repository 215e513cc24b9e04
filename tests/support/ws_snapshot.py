"""Reads healthmon's WebSocket snapshot as a standard client would.

Python's `websockets` with its DEFAULT settings (1 MiB per message, at most
4,096 fragments a message): `tests/api/ws_python.rs` runs it against a
monitor holding 100,000 services. It reads `snapshot` messages until the
one with `"last": true` and prints one JSON line of what it saw; any error
(a message refused with 1009, a timeout, a closed connection) is an
exception and a non-zero exit.

usage: ws_snapshot.py WS_URL [TAG]   (with TAG, every service must carry it)
"""

import asyncio
import json
import sys

import websockets
from websockets.asyncio.client import connect

# Longest wait for one message: the server sends the pages back to back.
MESSAGE_TIMEOUT_S = 60


async def read_snapshot(url, tag):
    messages = 0
    ids = []
    last_flags = []
    largest = 0
    untagged = 0
    async with connect(url) as ws:  # the defaults, on purpose
        while True:
            text = await asyncio.wait_for(ws.recv(), MESSAGE_TIMEOUT_S)
            msg = json.loads(text)
            if msg.get("type") != "snapshot":
                raise SystemExit(f"a {msg.get('type')!r} message before the snapshot ended")
            messages += 1
            largest = max(largest, len(text.encode()))
            for service in msg["services"]:
                ids.append(service["id"])
                if tag is not None and tag not in service.get("tags", []):
                    untagged += 1
            last_flags.append(bool(msg.get("last")))
            if msg.get("last"):
                break
    return {
        "websockets": websockets.__version__,
        "messages": messages,
        "services": len(ids),
        "distinct": len(set(ids)),
        "ascending": ids == sorted(ids),
        "last_only_on_final": last_flags[-1] and not any(last_flags[:-1]),
        "largest_message_bytes": largest,
        "untagged": untagged,
    }


def main():
    url = sys.argv[1]
    tag = sys.argv[2] if len(sys.argv) > 2 else None
    print(json.dumps(asyncio.run(read_snapshot(url, tag))), flush=True)


if __name__ == "__main__":
    main()
