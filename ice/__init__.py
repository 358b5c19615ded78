"""ICE (RFC 8445): candidates, checks and nomination. The agent arrives with its own issue."""
