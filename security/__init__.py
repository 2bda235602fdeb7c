"""Security and data protection: tokens and roles, TLS, the audit chain, pseudonymised and
encrypted user data, the register of forgotten users (the forget and compliance commands
that use them live in ``recdrill``).

A bottom layer (above ``durable`` only): every stage — training, export, replication, serving,
drills — uses it, and it imports none of them.

Modules: ``paths`` (where keys and state live), ``keyfiles`` (key files with their age),
``tokens`` / ``access`` / ``token_cli`` (bearer tokens, roles, decisions), ``tls``,
``ray_auth``, ``audit`` (+ ``audit_entry``, ``audit_anchor``, ``audit_check``, ``audit_cli``),
``pseudonym``, ``sealed`` / ``datadir`` (AES-256-GCM files), ``forget_register``, ``fuzzing``.
Import the module you need: this package re-exports nothing, so importing one part never loads
the others (cryptography, Ray).
"""

__all__: list[str] = []
