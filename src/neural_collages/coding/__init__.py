"""Bits: varints, the adaptive multi-stream range coder, the fixed-table coder, causal predictors
and contexts, and the ``.clg`` container.

Imports nothing of the project but the leaf modules ``errors``, ``checks`` and ``limits``.
"""
