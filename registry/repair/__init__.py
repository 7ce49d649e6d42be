"""``validate-registry --fix``: the plan made from the findings (``plan``), its steps
(``steps``), restoring objects from a model's origin (``restore``) and recovering
``registry.json`` (``recover``).

May import: ``store``, ``adapters``, the top of ``registry``, ``registry.check``,
``registry.space``, ``registry.hub`` (restoring from the Hub).
"""
