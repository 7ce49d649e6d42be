"""The compatibility harness: real consumers read a modelstore view (``make compat``).

A view (``models/<name>/``) promises that any tool that reads a Hugging Face folder reads it
as it is. This package checks that promise with the tools themselves, not with imitations:
vLLM's CPU build, optimum's ONNX export (run by onnxruntime), accelerate's big-model loading,
torch DCP and llama.cpp's GGUF converter. Each runs in its own virtualenv, pinned by
``compat/requirements-<consumer>.txt`` (every package, so an install is the same each time),
against a tiny Qwen2 model imported into a throwaway store: the view and the source folder
it was imported from are loaded or converted alike and the results compared.

It is not part of ``make test`` or CI: the consumers are large installs (vLLM alone pulls
about 150 packages). The CI test that keeps the layout rule these consumers depend on
(top-level weight files exactly those the index names) is
``tests/registry/test_views.py``, which needs no install.

Modules: ``harness`` (the run and the table), ``venvs`` (building the pinned environments),
``pin`` (regenerating the requirement files), ``probes/`` (one script per consumer, run with
that consumer's interpreter; they import nothing of the project).
"""
