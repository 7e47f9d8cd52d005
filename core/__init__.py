"""Cratedigger's core: everything that knows music, importable without discord.py."""
