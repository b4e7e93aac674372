"""The web app (``collage app``): fractal art and the codecs in the browser, served offline.

``app.create_app()`` builds the ASGI application (Starlette); ``jobs`` holds the work and the
limits, free of any web framework. See docs/web.md.
"""
