"""Webhooks: each job's end POSTed, signed (Standard Webhooks), to the URL its upload named."""
