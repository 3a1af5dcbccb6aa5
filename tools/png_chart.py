"""A confusion matrix as a PNG, with NumPy and zlib only (no plotting library on the host tools' path).

Text is drawn with a 5 x 7 bitmap font (upper case, digits and a little punctuation; lower case is drawn in
upper case). Cells are shaded by the row's share (how a true class was predicted), with the count written in.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_GLYPHS = """
A .###. #...# #...# ##### #...# #...# #...#
B ####. #...# #...# ####. #...# #...# ####.
C .###. #...# #.... #.... #.... #...# .###.
D ####. #...# #...# #...# #...# #...# ####.
E ##### #.... #.... ####. #.... #.... #####
F ##### #.... #.... ####. #.... #.... #....
G .###. #...# #.... #.### #...# #...# .####
H #...# #...# #...# ##### #...# #...# #...#
I .###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
J ..### ...#. ...#. ...#. ...#. #..#. .##..
K #...# #..#. #.#.. ##... #.#.. #..#. #...#
L #.... #.... #.... #.... #.... #.... #####
M #...# ##.## #.#.# #.#.# #...# #...# #...#
N #...# #...# ##..# #.#.# #..## #...# #...#
O .###. #...# #...# #...# #...# #...# .###.
P ####. #...# #...# ####. #.... #.... #....
Q .###. #...# #...# #...# #.#.# #..#. .##.#
R ####. #...# #...# ####. #.#.. #..#. #...#
S .#### #.... #.... .###. ....# ....# ####.
T ##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
U #...# #...# #...# #...# #...# #...# .###.
V #...# #...# #...# #...# #...# .#.#. ..#..
W #...# #...# #...# #.#.# #.#.# #.#.# .#.#.
X #...# #...# .#.#. ..#.. .#.#. #...# #...#
Y #...# #...# .#.#. ..#.. ..#.. ..#.. ..#..
Z ##### ....# ...#. ..#.. .#... #.... #####
0 .###. #...# #..## #.#.# ##..# #...# .###.
1 ..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.
2 .###. #...# ....# ...#. ..#.. .#... #####
3 ##### ...#. ..#.. ...#. ....# #...# .###.
4 ...#. ..##. .#.#. #..#. ##### ...#. ...#.
5 ##### #.... ####. ....# ....# #...# .###.
6 ..##. .#... #.... ####. #...# #...# .###.
7 ##### ....# ...#. ..#.. .#... .#... .#...
8 .###. #...# #...# .###. #...# #...# .###.
9 .###. #...# #...# .#### ....# ...#. .##..
_ ..... ..... ..... ..... ..... ..... #####
- ..... ..... ..... ##### ..... ..... .....
. ..... ..... ..... ..... ..... .##.. .##..
, ..... ..... ..... ..... .##.. ..#.. .#...
: ..... .##.. .##.. ..... .##.. .##.. .....
/ ..... ....# ...#. ..#.. .#... #.... .....
( ...#. ..#.. .#... .#... .#... ..#.. ...#.
) .#... ..#.. ...#. ...#. ...#. ..#.. .#...
% ##... ##..# ...#. ..#.. .#... #..## ...##
? .###. #...# ....# ...#. ..#.. ..... ..#..
"""
FONT = {line[0]: np.array([[c == "#" for c in row] for row in line[2:].split()], bool)
        for line in _GLYPHS.strip().splitlines()}
FONT[" "] = np.zeros((7, 5), bool)
GLYPH_W, GLYPH_H = 6, 8  # with one column and one row of spacing


def text_mask(text: str, scale: int = 2) -> np.ndarray:
    """[h, w] bool: `text` in the bitmap font at `scale` pixels per font pixel."""
    mask = np.zeros((GLYPH_H, GLYPH_W * max(1, len(text))), bool)
    for i, ch in enumerate(text.upper()):
        mask[:7, i * GLYPH_W:i * GLYPH_W + 5] = FONT.get(ch, FONT["?"])
    return np.kron(mask, np.ones((scale, scale), bool))


def draw(img: np.ndarray, mask: np.ndarray, x: int, y: int, color) -> None:
    h, w = mask.shape
    h, w = min(h, img.shape[0] - y), min(w, img.shape[1] - x)
    if h > 0 and w > 0:
        img[y:y + h, x:x + w][mask[:h, :w]] = color


def write_png(path: Path, rgb: np.ndarray) -> None:
    """8-bit RGB, no interlace, filter 0 on every row."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(np.uint8).tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def confusion_png(path: Path, matrix, classes: list[str], title: str, cell: int = 56, scale: int = 2) -> Path:
    """Rows: true class; columns: predicted class (labels written vertically)."""
    m = np.asarray(matrix, np.int64)
    n = len(classes)
    label_w = max(len(c) for c in classes) * GLYPH_W * scale + 12
    left, top = label_w + 28, label_w + 70
    width = max(left + n * cell + 20, len(title) * GLYPH_W * scale + 20)
    height = top + n * cell + 20
    img = np.full((height, width, 3), 255, np.uint8)
    ink = (30, 30, 30)
    draw(img, text_mask(title, scale), 10, 10, ink)
    draw(img, text_mask("predicted", scale), left, 10 + 12 * scale, (90, 90, 90))
    draw(img, np.rot90(text_mask("true", scale)), 6, top, (90, 90, 90))
    shares = m / np.maximum(1, m.sum(axis=1, keepdims=True))
    for i in range(n):
        row_label = text_mask(classes[i], scale)
        draw(img, row_label, left - row_label.shape[1] - 8, top + i * cell + (cell - row_label.shape[0]) // 2, ink)
        column_label = np.rot90(text_mask(classes[i], scale))  # reads bottom to top
        draw(img, column_label, left + i * cell + (cell - column_label.shape[1]) // 2,
             top - column_label.shape[0] - 8, ink)
        for j in range(n):
            y, x = top + i * cell, left + j * cell
            shade = shares[i, j]
            color = np.array([255, 255, 255]) * (1 - shade) + np.array([31, 87, 160]) * shade
            img[y + 1:y + cell, x + 1:x + cell] = color.astype(np.uint8)
            count = text_mask(str(int(m[i, j])), scale)
            draw(img, count, x + (cell - count.shape[1]) // 2, y + (cell - count.shape[0]) // 2,
                 (255, 255, 255) if shade > 0.5 else ink)
    img[top:top + n * cell + 1:cell, left:left + n * cell + 1] = (160, 160, 160)  # grid
    img[top:top + n * cell + 1, left:left + n * cell + 1:cell] = (160, 160, 160)
    write_png(path, img)
    return Path(path)
