"""Storage clients, one module per backend: ``sql``, ``documents``, ``cache``, ``objects``."""
