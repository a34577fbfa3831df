"""
Traffic policies: what the gateway does for a route before its worker is
involved (CORS, IP rules, consumer auth, rate limits, per-endpoint limits,
traffic splits), configured on domains, collections and endpoints.

Each part is a module of its own following ``part.py``; ``model.py`` puts
them together: the ``policy`` object's schema and validation, inheritance,
masking and the compiled check of a route.  User docs: docs/policies.md.
"""
