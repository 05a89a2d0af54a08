"""Knowledge base: loaders, chunking, embeddings, chromadb store, hybrid retrieval. Never imports tkinter."""
