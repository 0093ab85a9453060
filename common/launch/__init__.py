"""The process launcher behind `make <stage>` and `make stop-all`.

`python -m common.launch 00_services` reads the stage's services.toml, binds every
listening socket itself, starts the backends and then the gateway with those sockets
(`--fd N`), waits for each health check, prints what runs where, relays every child's
output with a coloured name prefix, and stops everything in order on Ctrl-C. PID files
under `.run/` let `python -m common.launch --stop-all` stop exactly those processes.

Modules, in the order a launch uses them: config (services.toml), pidfiles (who is
running), sockets (bind before spawning), children (one process), health (is it up?),
supervisor (the lifecycle), output (what the terminal shows), stop_all (`make stop-all`).

It is a small cousin of foreman / honcho (Procfile runners) and of docker compose up:
production systems hand this job to systemd, supervisord or Kubernetes, which add restart
policies, resource limits and log shipping.
"""
