"""The overhead bench: a fast origin, a minimal aiohttp proxy, a load generator, CPU meters.

`python -m common.bench` measures, in one run on 127.0.0.1, the origin alone, the ~50-line
aiohttp proxy baseline and a stage's gateway, and reports the figure that survives a noisy
machine: the proxy's CPU microseconds per request.
"""
