"""The weak-to-strong testbed: tasks, models, methods ("ideas") and PGR statistics.

Imports nothing else of aar, so the referee and the researchers can both depend on it.
"""
