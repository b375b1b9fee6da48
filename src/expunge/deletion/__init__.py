"""Serving deletion requests on a deployed model, with a verifiable record of each.

Modules: ``certificate`` (what a served request records: request, salted row digests, method, versions, model
hashes, evidence; JSON and Markdown), ``ledger`` (the append-only, hash-chained SQLite ledger of certificates,
optionally signed with Ed25519, and its verification), ``auto`` (``--method auto``: a method chosen by tuning against
the oracle of a tuning forget set of the request's kind and size, never the request), ``exact`` (a SISA ensemble's
request served exactly), ``stream`` (a list of requests served one after another, scored per step against the
oracle of their union), ``request`` (request expressions: ``ids:FILE``, ``group:17``, ``class:3``, ``where:...``),
``forget`` (one request on a model file end to end: ``expunge forget``), ``report`` (its evidence in plain words).
"""
