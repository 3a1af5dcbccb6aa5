"""A clip drawn as a PNG: its log-mel spectrogram computed with the kit's own front end (edge/core/frontend.py, the
model's parameters: 64 mel bands 125-7500 Hz, 25 ms windows every 10 ms), the event's span marked, a title with what
the record knows. matplotlib is optional (`pip install 'edge-audio[plot]'`): imported only when drawing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.frontend import FrontEndParams

SPAN_COLOUR = "#00ff00"  # the event's span: a green the colour map (magma) never draws
PARAMS = FrontEndParams()  # the model's


def log_mel(samples: np.ndarray) -> np.ndarray:
    """[frames, 64] log-mel of the whole clip, frame i from samples i*160 on: the kit's front end (the model's
    parameters) over windows one patch apart, so their patches follow each other frame for frame."""
    from ..core.framing import INT16_SCALE
    from ..core.frontend import LogMelFrontEnd
    front = LogMelFrontEnd(PARAMS)
    p = front.params
    frames = 1 + (len(samples) - p.stft_window_samples) // p.stft_hop_samples
    if frames < 1:
        raise InputError(f"the clip is too short to draw ({len(samples)} samples)")
    step, patches = p.patch_frames * p.stft_hop_samples, -(-frames // p.patch_frames)
    audio = np.zeros((patches - 1) * step + p.window_samples, np.float32)
    audio[:len(samples)] = samples.astype(np.float32) * INT16_SCALE
    return np.concatenate([front.compute(audio[k * step:k * step + p.window_samples]).copy()
                           for k in range(patches)])[:frames]


@dataclass(frozen=True)
class Drawn:
    """What png() drew: the event's span in the clip (seconds) and where its edges are in the PNG (pixels)."""
    span_s: tuple[float, float]
    span_px: tuple[int, int]  # columns of the span's start and end lines
    axes_px: tuple[int, int]  # columns of the spectrogram's left edge (0 s) and right edge (the clip's end)
    row_px: int  # a row in the middle of the spectrogram
    size_px: tuple[int, int]  # width, height


def event_span(record: dict, seconds: float) -> tuple[float, float]:
    """The event's start and end within the clip: offset_s on, for the event's duration, clipped to the clip."""
    start = float(record.get("offset_s") or 0.0)
    begin, end = record.get("event_start_ts"), record.get("event_end_ts")
    length = float(end) - float(begin) if begin is not None and end is not None else seconds - start
    return min(max(start, 0.0), seconds), min(max(start + length, 0.0), seconds)


def png(record: dict, samples: np.ndarray, rate: int, target: Path, title: str) -> Drawn:
    """Draw the clip's log-mel spectrogram with the event's span marked into `target` (matplotlib's Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if rate != PARAMS.sample_rate_hz:
        raise InputError(f"the clip is at {rate} Hz: the front end draws {PARAMS.sample_rate_hz} Hz audio")
    mel, seconds = log_mel(samples), len(samples) / rate
    hop_s = PARAMS.stft_hop_samples / rate
    first = (PARAMS.stft_window_samples - PARAMS.stft_hop_samples) / 2 / rate  # frame i: its 10 ms around the
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)                          # middle of its 25 ms window
    ax.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
              extent=(first, first + len(mel) * hop_s, 0, mel.shape[1]))
    start, end = event_span(record, seconds)
    ax.axvspan(start, end, color=SPAN_COLOUR, alpha=0.15, lw=0)
    for x in (start, end):
        ax.axvline(x, color=SPAN_COLOUR, lw=2)
    ax.set_xlim(0, seconds)
    ax.set_xlabel("seconds into the clip (the event's span in green)")
    ax.set_ylabel(f"mel band ({PARAMS.mel_min_hz:g}-{PARAMS.mel_max_hz:g} Hz)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height()
    x0, x1, left, right = (round(ax.transData.transform((x, 0))[0]) for x in (start, end, 0, seconds))
    row = height - round(ax.transData.transform((0, mel.shape[1] / 2))[1])
    try:
        fig.savefig(target, dpi=100)
    except OSError as exc:
        raise InputError(f"{target}: cannot write it ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
    return Drawn((start, end), (x0, x1), (left, right), row, (width, height))
