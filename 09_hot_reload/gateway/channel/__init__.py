"""The channel: the path from a routed request to its upstream, under pressure.

config.py      [timeouts], [retries], [retry_budget] and a route's own tables, validated
policy.py      ChannelPolicy: one route's resolved settings, built once at start-up
channel.py     Channel.forward: shed, bulkhead, then tries under a deadline, then relay
tried.py       one try's outcome (answer, failure, timeout, cancelled) and its lease
deadline.py    the deadline every try and backoff fits in, the per-try timer, the header
retry.py       when a failed try may go again, full-jitter backoff, Retry-After, replay
budget.py      the retry budget: over any 10 s, retries <= 20% of requests + 3 a second
bulkhead.py    places per upstream with a bounded queue (503), the gateway-wide shedder
hedge.py       hedged requests: a second try after the route's p95, first answer wins
websocket.py   WebSocket: the upgrade routed, then messages relayed both ways

The circuit breakers live with the pools (gateway/balancing/breaker.py): they decide
which targets a pick may return, for the channel's tries and for everyone else.
Nothing is imported here: gateway/config.py reads channel/config.py while the rest of
the package needs gateway/config.py already loaded.
"""
