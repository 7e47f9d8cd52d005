"""A local Discord API + gateway + CDN for driving the real discord.py client in tests and benchmarks.

    server = FakeDiscord(); await server.start()
    guild = server.add_guild("Test"); alice = guild.add_member(server.add_user("alice"))
    with routed_to(server):
        async with connected(bot, server):
            ix = await server.slash(alice, "genre", file=server.attachment("a.wav", data))
            message = await server.reply(ix)
"""
from tests.discord_server.client import connected, routed_to, routed_to_urls
from tests.discord_server.entities import ADMINISTRATOR, MANAGE_GUILD, Channel, Guild, Member, Role, User
from tests.discord_server.records import Callback, FileRecord, InteractionRecord, MessageRecord
from tests.discord_server.server import FakeDiscord

__all__ = [
    "ADMINISTRATOR", "MANAGE_GUILD", "Callback", "Channel", "FakeDiscord", "FileRecord", "Guild",
    "InteractionRecord", "Member", "MessageRecord", "Role", "User", "connected", "routed_to",
    "routed_to_urls",
]
