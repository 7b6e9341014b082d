"""The lifecycle stages over the artifact store, free of Airflow: one module per ``operators/`` module.

Each stage reads its inputs from the store, does the work through ml/ and beam/, writes its
content-addressed outputs (keys from ``store/layout.py``), and returns a small JSON-able dict.
Operators call these in-process; every stage finds its own earlier output by content, so a retried
task neither duplicates nor rewrites anything. Heavy libraries are imported inside the functions.
"""
