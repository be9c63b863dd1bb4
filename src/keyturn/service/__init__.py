"""Use cases: authenticate callers, queue and run resets, answer read calls, manage inventory.

The service layer imports ``keyturn.core`` only and receives its ports (store, engines, secret
box, clock) from the composition root.
"""
