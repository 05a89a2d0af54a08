"""The desktop app (tkinter + ttk + tkinterdnd2). Talks to services only."""
