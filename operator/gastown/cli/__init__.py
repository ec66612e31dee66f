"""The ``gt`` command line."""
