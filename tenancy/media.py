"""What an upload really is: size cap, and a decode check so a file is the image/audio/video it claims."""

from __future__ import annotations

import os
from typing import BinaryIO

from .refusal import Refusal

IMAGE = frozenset({"png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"})
AUDIO = frozenset({"wav", "mp3", "flac", "ogg", "m4a", "aac", "opus"})
VIDEO = frozenset({"mp4", "webm", "mov", "mkv", "avi", "m4v"})
KINDS = {"image": IMAGE, "audio": AUDIO | VIDEO, "video": VIDEO}


def extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def matching(files: list[str], kind: str | None) -> list[str]:
    allowed = KINDS.get(kind or "")
    return [f for f in files if allowed is None or extension(f) in allowed]


def check_upload(handle: BinaryIO, name: str, max_mb: float) -> None:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    if size > max_mb * 1024 * 1024:
        raise Refusal(413, "upload_too_large", f"{name} is {size / 1048576:.1f} MB; your limit is {max_mb:g} MB")
    ext = extension(name)
    try:
        if ext in IMAGE:
            _decode_image(handle)
        elif ext in AUDIO | VIDEO:
            _decode_media(handle, video=ext in VIDEO)
        else:
            raise Refusal(415, "unsupported_file_type", f"{name}: upload images, audio or video")
    finally:
        handle.seek(0)


def _decode_image(handle: BinaryIO) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(handle) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise Refusal(415, "not_an_image", f"the file does not decode as an image ({exc})") from None


def _decode_media(handle: BinaryIO, video: bool) -> None:
    import av

    try:
        with av.open(handle, mode="r") as container:
            streams = container.streams.video if video else container.streams.audio
            if not streams:
                raise Refusal(415, "not_media", f"the file has no {'video' if video else 'audio'} stream")
            next(container.decode(streams[0]))
    except (av.error.FFmpegError, StopIteration, OSError, ValueError) as exc:
        raise Refusal(415, "not_media", f"the file does not decode as {'video' if video else 'audio'} ({exc})") \
            from None


def timed(name: str) -> bool:
    """Whether a file of this name has a duration (audio or video)."""
    return extension(name) in AUDIO | VIDEO


def duration_seconds(path) -> float | None:
    """Length of an audio or video file (None for anything else), read from its container."""
    if not timed(str(path)):
        return None
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration is not None:
                return container.duration / av.time_base
            stream = (container.streams.audio or container.streams.video)[0]
            return float(stream.duration * stream.time_base) if stream.duration else None
    except (av.error.FFmpegError, OSError, IndexError):
        return None
