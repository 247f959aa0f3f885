"""The DATA flow: sources, filters, decontamination, difficulty, and the SFT and RL sets training reads."""
