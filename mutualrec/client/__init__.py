"""Clients of the service, used by the command line and by load scripts."""
