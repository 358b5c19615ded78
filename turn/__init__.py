"""TURN (RFC 8656): relayed transport addresses. Arrives with its own issue; empty for now."""
