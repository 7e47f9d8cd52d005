"""Training and evaluation scripts: run offline by the team, never imported by the bot or the CLI at start.

Each script rebuilds a shipped artefact in `models/` from the team data deterministically (fixed seeds, one
thread), and prints the figures its model card quotes.
"""
