"""The `normalcy` command line."""
