"""Front ends: the ``collage`` command line (and, as they arrive, the web app)."""
