"""Pixels: image files (loading, atomic saving, animations), tensor padding and crops, colour, metrics.

Imports nothing of the project but the leaf modules ``errors``, ``checks`` and ``limits``.
"""
