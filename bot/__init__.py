"""Cratedigger's Discord adapter (discord.py 2): slash commands over `core.service`, no music logic here."""
