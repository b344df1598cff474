"""Functional API guide: short scripts that call jaxgan's functions from a user's own code."""
