"""Archive stage: TAP and DataLink clients, the project view."""
