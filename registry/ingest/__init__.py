"""Bringing a model's bytes into the store from local sources.

Which files of a model are imported (``model_files``), the one way a weight file is split
into tensor blobs and recorded for its manifest (``parts``), and local folders (``folder``).
The Hub import (``registry.hub``) builds on this room.

May import: ``store``, ``adapters``, the top of ``registry``. Not ``hub``, ``check``, ``repair``.
"""
