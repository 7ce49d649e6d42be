"""Bringing a model's bytes into the store from local sources.

Which files of a model are imported (``model_files``), which files of a folder are plain
files that may be read (``source_files``), and local folders (``folder``).
The Hub import (``registry.hub``) builds on this room.

May import: ``store``, ``adapters``, the top of ``registry``, and ``check.loadcheck`` (the
worker that builds a model on the meta device, and the load check an import may run before
it registers). Not ``hub``, ``repair``.
"""
