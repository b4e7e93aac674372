"""Benchmarks of the project (not part of the installed package).

A package so that its modules import one another as ``benchmarks.codecs`` etc.: a bare
``import codecs`` would be Python's standard-library module of that name.
"""
