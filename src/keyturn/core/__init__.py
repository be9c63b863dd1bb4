"""The pure domain: models, errors, password policies, task states and ports.

Standard library only; every other layer imports from here, never the reverse.
"""
