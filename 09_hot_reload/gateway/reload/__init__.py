"""Live configuration: a running gateway's gateway.toml read again, checked, built off to
the side and swapped in whole (SIGHUP, POST /reload), without dropping a request."""
