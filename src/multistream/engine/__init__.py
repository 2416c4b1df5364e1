"""Real-time multi-stream inference: a synchronous core, an asyncio wrapper, tools."""
