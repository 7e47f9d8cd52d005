import sys

from bot.launcher import run_bot

sys.exit(run_bot())
