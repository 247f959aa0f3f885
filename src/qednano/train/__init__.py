"""The TRAIN flow on TRL: SFT (`sft.py`), GRPO with the judge as reward (`grpo.py`, `rewards.py`), Reasoning-Cache RL (`rc.py`)."""
