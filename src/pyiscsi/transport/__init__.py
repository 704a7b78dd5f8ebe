"""The only I/O in pyiscsi: asyncio stream protocols driving the sans-IO engines."""
