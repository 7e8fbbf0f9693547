"""python-telegram-bot against the Telegram simulator: getMe, getUpdates with a message and a
member block/unblock, sendMessage. Usage: python telegram_bot.py BASE TOKEN CHAT_ID.

The test harness has already written a message and blocked/unblocked the bot in CHAT_ID.
"""

import asyncio
import sys

from telegram import Bot, ChatMemberBanned, ChatMemberMember


def fail(message: str) -> None:
    print(f"python-telegram-bot: {message}", file=sys.stderr)
    sys.exit(1)


async def main() -> None:
    base, token, chat_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bot = Bot(token, base_url=f"{base}/bot", base_file_url=f"{base}/file/bot")
    async with bot:
        me = await bot.get_me()
        if not me.is_bot:
            fail(f"getMe: {me}")
        updates = await bot.get_updates(timeout=0)
        messages = [u.message for u in updates if u.message]
        members = [u.my_chat_member for u in updates if u.my_chat_member]
        if not messages or messages[0].chat.id != chat_id:
            fail(f"getUpdates gave no message from {chat_id}: {updates}")
        if len(members) != 2:
            fail(f"expected a block and an unblock, got {members}")
        blocked, unblocked = members
        if not isinstance(blocked.new_chat_member, ChatMemberBanned):
            fail(f"block: {blocked}")
        if not isinstance(unblocked.old_chat_member, ChatMemberBanned) or not isinstance(
            unblocked.new_chat_member, ChatMemberMember
        ):
            fail(f"unblock: {unblocked}")
        sent = await bot.send_message(chat_id, "Hello from python-telegram-bot", reply_to_message_id=messages[0].message_id)
        if sent.text != "Hello from python-telegram-bot":
            fail(f"sendMessage: {sent}")
        # Confirm the updates, as a polling bot does.
        await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    print("python-telegram-bot: ok")


try:
    asyncio.run(main())
except SystemExit:
    raise
except Exception as error:  # noqa: BLE001 - any failure is the test's failure, with its text
    fail(repr(error))
