#!/usr/bin/env python3
"""Builds Telegram Update payloads with python-telegram-bot's object model.

The Telegram connector's tests feed what this prints to the connector (through
the fake Bot API's getUpdates, or POSTed to the webhook), so the payloads
follow the shapes of a library Chorus did not write (telegram.Update(...).to_dict())
rather than only our own reading of the Bot API documentation.

Input (stdin): a JSON array of specs, each {"kind": ..., "update_id": N, "chat_id": N, ...}.
Output (stdout): a JSON array of Update objects, in the same order.

Kinds: text, photo, document, audio, voice, video, video_note, sticker, location,
venue, contact, reply, edited, callback, reaction, chat_member, new_members, inline_query
(an update kind Chorus does not model), dice (message content Chorus does not model).

Needs python-telegram-bot (python3 -m pip install python-telegram-bot).
"""

import datetime
import json
import sys

try:
    import telegram
    from telegram import (Animation, Audio, CallbackQuery, Chat, ChatMemberLeft, ChatMemberMember, ChatMemberUpdated,
                          Contact, Dice, Document, InlineQuery, InlineKeyboardButton, InlineKeyboardMarkup, Location, Message,
                          MessageEntity, MessageReactionUpdated, PhotoSize, ReactionTypeEmoji, Sticker,
                          Update, User, Venue, Video, VideoNote, Voice)
except ImportError as e:  # the Swift test turns this into a clear failure
    sys.stderr.write("python-telegram-bot is not installed (python3 -m pip install python-telegram-bot): %s\n" % e)
    sys.exit(3)

UTC = datetime.timezone.utc


def user(spec):
    return User(id=spec.get("user_id", spec.get("chat_id", 1111111)), is_bot=False,
                first_name=spec.get("first_name", "Test"), last_name=spec.get("last_name", "Lastname"),
                username=spec.get("username", "testuser"))


def chat(spec):
    cid = spec.get("chat_id", 1111111)
    if cid < 0:
        return Chat(id=cid, type=Chat.SUPERGROUP, title=spec.get("title", "Test group"))
    return Chat(id=cid, type=Chat.PRIVATE, first_name=spec.get("first_name", "Test"), username=spec.get("username", "testuser"))


def when(spec, key="date"):
    return datetime.datetime.fromtimestamp(spec.get(key, 1441645532), tz=UTC)


def message(spec, **content):
    return Message(message_id=spec.get("message_id", 1365), date=when(spec), chat=chat(spec), from_user=user(spec), **content)


def file_kw(spec, prefix):
    return dict(file_id=spec.get("file_id", prefix + "FILEID1234"), file_unique_id=spec.get("file_unique_id", prefix + "UNIQ"))


def build(spec):
    kind = spec["kind"]
    uid = spec["update_id"]
    if kind == "text":
        entities = tuple(MessageEntity(type=e["type"], offset=e["offset"], length=e["length"]) for e in spec.get("entities", []))
        return Update(update_id=uid, message=message(spec, text=spec.get("text", "Hello"), entities=entities or None))
    if kind == "photo":
        sizes = (PhotoSize(width=90, height=67, file_size=1200, **file_kw(spec, "PHS")),
                 PhotoSize(width=1280, height=960, file_size=98765, **file_kw(spec, "PHL")))
        return Update(update_id=uid, message=message(spec, photo=sizes, caption=spec.get("caption")))
    if kind == "document":
        return Update(update_id=uid, message=message(spec, document=Document(file_name=spec.get("file_name", "invoice.pdf"),
                                                                              mime_type="application/pdf", file_size=4096,
                                                                              **file_kw(spec, "DOC")),
                                                     caption=spec.get("caption")))
    if kind == "audio":
        return Update(update_id=uid, message=message(spec, audio=Audio(duration=243, performer="Artist", title="Song",
                                                                        mime_type="audio/mpeg", file_size=3897500,
                                                                        **file_kw(spec, "AUD"))))
    if kind == "voice":
        return Update(update_id=uid, message=message(spec, voice=Voice(duration=5, mime_type="audio/ogg", file_size=23000,
                                                                        **file_kw(spec, "VOI"))))
    if kind == "video":
        return Update(update_id=uid, message=message(spec, video=Video(width=640, height=360, duration=12, mime_type="video/mp4",
                                                                        file_size=512000, **file_kw(spec, "VID"))))
    if kind == "video_note":
        return Update(update_id=uid, message=message(spec, video_note=VideoNote(length=240, duration=7, **file_kw(spec, "VNO"))))
    if kind == "sticker":
        return Update(update_id=uid, message=message(spec, sticker=Sticker(width=512, height=512, is_animated=False, is_video=False,
                                                                            type=Sticker.REGULAR, emoji="😀", set_name="TestSet",
                                                                            **file_kw(spec, "STK"))))
    if kind == "location":
        return Update(update_id=uid, message=message(spec, location=Location(latitude=spec.get("latitude", 52.5200),
                                                                              longitude=spec.get("longitude", 13.4050))))
    if kind == "venue":
        loc = Location(latitude=48.8584, longitude=2.2945)
        return Update(update_id=uid, message=message(spec, location=loc,
                                                     venue=Venue(location=loc, title="Eiffel Tower", address="Champ de Mars, Paris")))
    if kind == "contact":
        return Update(update_id=uid, message=message(spec, contact=Contact(phone_number="+4915112345678", first_name="Ana",
                                                                            last_name="Lima", user_id=777000)))
    if kind == "reply":
        original = Message(message_id=spec.get("reply_to", 1300), date=when(spec), chat=chat(spec), from_user=user(spec), text="Original")
        return Update(update_id=uid, message=message(spec, text=spec.get("text", "A reply"), reply_to_message=original))
    if kind == "edited":
        return Update(update_id=uid, edited_message=Message(message_id=spec.get("message_id", 1365), date=when(spec), chat=chat(spec),
                                                            from_user=user(spec), text=spec.get("text", "Edited text"),
                                                            edit_date=when(spec, "edit_date")))
    if kind == "callback":
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes"), InlineKeyboardButton("No", callback_data="no")]])
        kb_message = Message(message_id=spec.get("message_id", 1400), date=when(spec), chat=chat(spec),
                             from_user=User(id=123456, is_bot=True, first_name="Bot"), text="Confirm?", reply_markup=keyboard)
        return Update(update_id=uid, callback_query=CallbackQuery(id=spec.get("callback_id", "4382bfdwdsb323b2d9"), from_user=user(spec),
                                                                  chat_instance="42a", message=kb_message, data=spec.get("data", "yes")))
    if kind == "reaction":
        return Update(update_id=uid, message_reaction=MessageReactionUpdated(
            chat=chat(spec), message_id=spec.get("message_id", 1365), date=when(spec), user=user(spec),
            old_reaction=tuple(ReactionTypeEmoji(e) for e in spec.get("old", [])),
            new_reaction=tuple(ReactionTypeEmoji(e) for e in spec.get("new", ["👍"]))))
    if kind == "chat_member":
        member = User(id=spec.get("member_id", 778), is_bot=False, first_name="Bo")
        joined = spec.get("joined", True)
        old = ChatMemberLeft(user=member) if joined else ChatMemberMember(user=member)
        new = ChatMemberMember(user=member) if joined else ChatMemberLeft(user=member)
        return Update(update_id=uid, chat_member=ChatMemberUpdated(chat=chat(spec), from_user=user(spec), date=when(spec),
                                                                   old_chat_member=old, new_chat_member=new))
    if kind == "new_members":
        member = User(id=spec.get("member_id", 778), is_bot=False, first_name="Bo")
        return Update(update_id=uid, message=message(spec, new_chat_members=(member,)))
    if kind == "inline_query":
        return Update(update_id=uid, inline_query=InlineQuery(id=spec.get("query_id", "134567890097"), from_user=user(spec),
                                                              query=spec.get("query", "inline query"), offset=""))
    if kind == "dice":
        return Update(update_id=uid, message=message(spec, dice=Dice(value=4, emoji="🎲")))
    raise SystemExit("unknown kind %r" % kind)


def main():
    specs = json.load(sys.stdin)
    print(json.dumps([build(s).to_dict() for s in specs], ensure_ascii=False))


if __name__ == "__main__":
    main()
