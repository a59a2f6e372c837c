"""The ``qdarpc`` command (import name ``qdarpc_cli``)."""
