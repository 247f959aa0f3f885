"""The model interface: `LLM` (`client.py`), its engines, the call cache and the tiny local model."""
