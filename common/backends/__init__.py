"""Dummy FastAPI backends for the gateway stages: `python -m common.backends --help`.

See README.md in this folder for the endpoints, their limits and the command line.
"""
