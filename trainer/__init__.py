"""GRPO trainer (TRL): data, rewards, recipes, train, evaluate. Run as python -m trainer. Never imports tkinter."""
