"""API keys: who may call `/v1`, and whose jobs they see."""
