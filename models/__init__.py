"""Chat backends (transformers, Ollama), model registry, answering service, speech. Never imports tkinter."""
