"""The [clips] section: a clip of the audio around each detection, private by default.

Off unless asked for (a microphone in a home); once on, a clip with speech in it is withheld (privacy), and the
folder is kept within its age, size and free-space limits (edge/sinks/clipstore.py). The speech family is
YAMNet's Speech class and its children: a clip any of whose windows scores one of them at speech_threshold or
more is withheld ("withhold"), or has those windows silenced ("mute").
"""

from __future__ import annotations

from dataclasses import dataclass

from .params import param

CLIP_FORMATS = ("flac", "opus", "wav")
PRIVACY = ("withhold", "mute", "off")
# YAMNet's speech family (class map indices 0-12): a clip where one of them is heard is a clip of people talking
SPEECH_CLASSES = ("Speech", "Child speech, kid speaking", "Conversation", "Narration, monologue", "Babbling",
                  "Speech synthesizer", "Shout", "Bellow", "Whoop", "Yell", "Children shouting", "Screaming",
                  "Whispering")


@dataclass(frozen=True)
class ClipParams:
    enabled: bool = param(False, "keep a clip of the audio around each detection (off by default: a microphone "
                                 "in a home)")
    folder: str = param("", "where clips go (default: clips/ in the state directory)")
    format: str = param("flac", "flac | opus | wav (wav when the soundfile library is not installed)",
                        choices=CLIP_FORMATS)
    pre_seconds: float = param(3.0, "audio kept before an event's start", 0.0, 10.0)
    post_seconds: float = param(2.0, "audio kept after an event's end", 0.0, 10.0)
    max_seconds: float = param(30.0, "longest clip: a longer event keeps its first part and says so", 1.0, 300.0)
    privacy: str = param("withhold", "withhold: no clip when speech is heard in it; mute: its speech windows "
                                     "become silence; off: every clip is kept", choices=PRIVACY)
    speech_threshold: float = param(0.2, "a window is speech when a speech class scores this much", 0.0, 1.0)
    labels: list = param([], "labels that get clips (empty: every watched label but the speech family, which "
                             "gets clips only when named here)")
    max_age_days: float = param(30.0, "clips older than this are deleted; 0: no age limit", 0.0, 3650.0)
    max_total_mb: float = param(1024.0, "the clips folder's largest size; 0: no size limit", 0.0, 1e7)
    min_free_mb: float = param(256.0, "free space always left on the clips' file system (the event spool comes "
                                      "first): the oldest clips go, even a label's last ones", 0.0, 1e7)
    min_per_label: int = param(10, "the newest clips of each label kept whatever their age or the folder's size",
                               0, 100000)
    queue_seconds: float = param(60.0, "audio the clip writer may fall behind by; beyond it clips are skipped "
                                       "and counted", 5.0, 3600.0)

    def wanted(self, label: str) -> bool:
        """Whether events of `label` get clips: the labels asked for, else every label but the speech family."""
        return label in self.labels if self.labels else label not in SPEECH_CLASSES

    def filtered(self, label: str) -> bool:
        """Whether the privacy filter looks at `label`'s clips (a speech label asked for by name: not)."""
        return self.privacy != "off" and not (label in SPEECH_CLASSES and label in self.labels)
