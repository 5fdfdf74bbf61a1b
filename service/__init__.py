"""Shipline's edges and wiring: config, HTTP receiver, queue, actors, CLI, dev stack."""
