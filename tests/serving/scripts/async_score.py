"""async def run: awaited on the server's event loop (no thread hop)."""

import asyncio
import threading


def init():
    pass


async def run(raw_data):
    await asyncio.sleep(0)
    return {"upper": raw_data.upper(), "thread": threading.current_thread().name}
