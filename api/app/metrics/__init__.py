"""Prometheus metrics (prometheus_client): the jobs' state read from the database at each
scrape (state.py), events counted where they happen (events.py), and how a scrape reaches
them (exposition.py: the /metrics route or a port of its own)."""
