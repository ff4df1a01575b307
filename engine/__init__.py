"""The engine: a thin typed adapter over the container engine (Docker, reached over mutual TLS).

Ground floor: imports nothing of the project and no Django. Eru calls this layer the engine."""
