"""Where the store's bytes go: what registered models reach (``reachable``), disk usage per
model (``du``), and garbage collection of what nothing reaches (``gc``).

May import: ``store``, the top of ``registry``, ``registry.check`` (gc refuses to run on a
store it cannot read whole).
"""
