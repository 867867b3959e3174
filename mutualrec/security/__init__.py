"""Authentication of callers: institution API keys (roles, mTLS and audit build on this)."""
