"""Real sockets on loopback: the asyncio STUN client and server, and the server under abuse."""
