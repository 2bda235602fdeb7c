"""Security and data protection: tokens and roles, TLS, the audit chain, pseudonymised and
encrypted user data, forgetting a user, compliance checks.

A bottom layer (above ``durable`` only): every stage — training, export, replication, serving,
drills — uses it, and it imports none of them.
"""
