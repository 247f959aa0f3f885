"""Test servers and harnesses: the loopback OpenAI-compatible server, GPU-like timing, chaos runs."""
