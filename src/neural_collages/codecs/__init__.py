"""Image codecs of the project; each writes the shared ``.clg`` container."""
