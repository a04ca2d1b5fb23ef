"""The composition root: settings, services, the graph, run_task, batch and the CLI.

The only package that knows every part. Scripts import the public API from ``dynagraph``.
"""
