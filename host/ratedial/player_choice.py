"""Which player ``ratedial run`` follows when the command line and the config file both say
(pure; docs/configuration.md, "player, video and osd").

``player``, ``video`` and ``osd`` describe one player, so a flag overrides more than its own
key: ``--video FILE`` plays FILE in mpv whatever other player the file names, and ``--player``
naming another player than mpv leaves the file's ``video`` and ``osd`` (mpv's) unused, said in
a note. A combination that still cannot be (``--video`` with ``--player vlc``, or both in the
file) is refused in one line that says which part came from the file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import RunConfig
from .errors import UsageError, hide_userinfo
from .players.spec import parse_spec


@dataclass(frozen=True, slots=True)
class PlayerChoice:
    cfg: RunConfig  # with the player, video and osd the run uses
    notes: tuple[str, ...]  # one line each: what of the file's is left unused, and why


def choose_player(cfg: RunConfig, *, path: str | None, player: str | None,
                  video: str | None, osd: bool | None) -> PlayerChoice:
    """The run's player from the file's ``cfg`` (read from ``path``; None: no file) and the
    flags ``--player``, ``--video`` and ``--osd``/``--no-osd`` (None: not given)."""
    def file_value(key: str, value: str) -> str:
        return f"{key} = {value} in {path}"

    notes: list[str] = []
    other_player = player is not None and _kind(player) != "mpv"  # the file's mpv keys yield
    # the player, and how a message names where it came from
    if player is not None:
        new_player, player_said = player, f"--player {player}"
    elif video is not None and _kind(cfg.player) not in ("mpv", "none"):
        new_player, player_said = "mpv", "--video"  # --video plays in mpv: the file's yields
    else:
        new_player, player_said = cfg.player, file_value("player", _shown(cfg.player))
    new_video: str | None
    if video is not None:
        new_video, video_said = video, "--video"
    else:
        new_video = None if other_player else cfg.video
        video_said = file_value("video", _shown(cfg.video or ""))
    if osd is not None:
        new_osd, osd_said = osd, "--osd"
    else:
        new_osd, osd_said = cfg.osd and not other_player, file_value("osd", "true")
    unused = []
    if other_player and video is None and cfg.video:
        unused.append(f"video = {_shown(cfg.video)}")
    if other_player and osd is None and cfg.osd:
        unused.append("osd = true")
    if unused:
        notes.append(f"{player_said}: {' and '.join(unused)} in {path} "
                     f"{'is' if len(unused) == 1 else 'are'} for mpv: left unused")
    if new_video and new_player == "none":  # a video and no player: mpv plays it
        new_player = "mpv"
    kind = _kind(new_player)
    if new_video and kind != "mpv":  # both flags, or both from the file
        raise UsageError(f"{video_said} plays the file in mpv; it cannot be used with "
                         f"{player_said}")
    if new_osd and kind != "mpv":
        if kind != "none":
            hint = "" if osd is not None else " (--no-osd leaves it off)"
            raise UsageError(f"{osd_said} draws the rating on mpv's screen; it cannot be used "
                             f"with {player_said}{hint}")
        why = f"{player_said}" if player is not None else "no --player or --video"
        notes.append(f"{osd_said}: no mpv is started or followed ({why}): no rating is drawn")
    return PlayerChoice(replace(cfg, player=new_player, video=new_video, osd=new_osd),
                        tuple(notes))


def _shown(value: str) -> str:
    return hide_userinfo(repr(value))  # a vlc URL with a password: never echoed


def _kind(spec: str) -> str:
    return parse_spec(spec).kind
