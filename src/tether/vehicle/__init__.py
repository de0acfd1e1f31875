"""The car side: durable key store, audit log, policy, bodies and the asyncio vehicle agent."""
