"""lb-chaos: break backends on a timeline and watch the gateway's balancer cope.

`make lb-chaos` (`python -m common.lb_chaos`) runs unattended for about 45 s: six users
backends behind one pool (power of two choices, active and passive health), steady load,
then a killed backend, a slow one and one failing half its requests, then the heal. A
live table shows each backend's share of the answers, the gateway's verdict on it and
the errors; the summary gives, per fault, the time to eject and the time to recover.

- timeline.py  what happens when
- observe.py   the load, and what the client and the gateway each saw
- view.py      the live table and the summary
- __main__.py  the processes, the timeline run, clean-up on every exit path
"""
