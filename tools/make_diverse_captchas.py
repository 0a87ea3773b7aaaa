"""Generate a seeded folder of diverse captchas in named styles; file names are their labels.

    python tools/make_diverse_captchas.py --out base_images --count 20000 --style base --seed 0
    python tools/make_diverse_captchas.py --out heldout_a --count 1000 --style heldout-a --seed 2026

Styles (presets):
  base       the training mixture: 18 fonts (DejaVu, Liberation, FreeFont, Noto), flat, gradient or
             speckled backgrounds, dark text in one or many colours, per-glyph rotation up to 35
             degrees, overlapping glyphs, lines, arcs and dots, a sine warp, blur, JPEG artefacts;
             3 to 8 characters of 0-9, A-Z and a-z; sizes from 40 to 80 pixels high.
  heldout-a  fonts and effects that base never shows: Comic Neue, Quicksand, Courier Prime and
             Lato; graph-paper or hatched backgrounds, hollow (outlined) glyphs, glyphs on a wavy
             baseline, circles and salt-and-pepper noise; no blur, no JPEG.
  heldout-b  fonts and effects that base never shows: URW base35 (Nimbus, C059, Bookman, Gothic),
             Go and Cantarell; banded or blotched backgrounds, light text on dark ones, drop
             shadows, a thick wavy strike-through in the text colour, a shear, pixelation.
  heldout-plain  a plain style that base never shows, like many a site's own captcha: Carlito
             and Linux Libertine/Biolinum, one dark colour on a pale background, rotation up to 12
             degrees, no overlap, thin sine curves across the image.
  hard       the base effects at their strongest on small 60x25 images: confusable A-Z and 0-9
             (O/0, I/1, S/5, B/8, Z/2), 4 or 5 characters, 35-degree rotations, strong warps.
  hard-b     the held-out hard family (kept out of every recipe decision): case-sensitive, A-Z, 0-9
             and the lower-case letters whose shape differs from their capital (abdefghnqrt), in
             other fonts, one colour per glyph, tighter overlap, arcs, gradients, a shear.
  hard2      hard drawn to be readable: A-Z and 0-9 in fonts whose 0 and 1 differ from O and I
             (slashed or dotted zero, serifed I), 4 characters of one size on 80x32 images,
             35-degree rotations, lines in another colour than the text, speckle, a sine warp.
  hard2-b    the held-out readable hard family: hard-b's case-sensitive charset and effects in
             other fonts, 4 characters of one size on 82x33 images, less overlap.

Image i depends only on (seed, i), as with tools/make_captchas.py, so a larger --count
extends a set. Only Pillow and NumPy draw. The fonts come from Debian packages (install
them with `apt-get install -y` and the package names in FONT_PACKAGES); they are read at
generation time and never copied. Licences: DejaVu (Bitstream Vera licence), Liberation 2,
Noto, Comic Neue, Courier Prime, Quicksand, Lato, Cantarell, Carlito (SIL OFL 1.1), Linux
Libertine and Biolinum (GPL with the font exception, and SIL OFL), FreeFont (GPL-3+
with the font exception), URW base35 (AGPL-3 with the font exception), Go (BSD-3-Clause).
"""

import argparse
import io
import math
import random
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from make_captchas import file_names, parse_length
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
DIGITS = "0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"

# The Debian package of each font family: `apt-get install -y` these before generating.
FONT_PACKAGES = {
    "DejaVu": "fonts-dejavu-core", "Liberation": "fonts-liberation2", "Free": "fonts-freefont-ttf",
    "Noto": "fonts-noto-core", "ComicNeue": "fonts-comic-neue", "Quicksand": "fonts-quicksand",
    "Courier Prime": "fonts-courier-prime", "Lato": "fonts-lato", "Nimbus": "fonts-urw-base35",
    "C059": "fonts-urw-base35", "URW": "fonts-urw-base35", "Go-": "fonts-go", "Cantarell": "fonts-cantarell",
    "Carlito": "fonts-crosextra-carlito", "LinBiolinum": "fonts-linuxlibertine", "LinLibertine": "fonts-linuxlibertine",
}
BASE_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf",
    "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSerif-Bold.ttf", "LiberationMono-Bold.ttf",
    "FreeSans.ttf", "FreeSansBold.ttf", "FreeSerifBold.ttf", "FreeMonoBold.ttf",
    "NotoSans-Regular.ttf", "NotoSans-Bold.ttf", "NotoSerif-Regular.ttf", "NotoSerif-Bold.ttf",
    "NotoSansDisplay-Bold.ttf",
)
HELDOUT_A_FONTS = ("ComicNeue-Regular.otf", "ComicNeue-Bold.otf", "Quicksand-Bold.ttf", "Quicksand-Regular.ttf",
                   "Courier Prime Bold.otf", "Lato-Bold.ttf", "Lato-Regular.ttf")
HELDOUT_B_FONTS = ("NimbusSans-Bold.otf", "NimbusRoman-Bold.otf", "C059-Bold.otf", "URWBookman-Demi.otf",
                   "URWGothic-Demi.otf", "NimbusSansNarrow-Bold.otf", "Go-Bold.ttf", "Go-Mono-Bold.ttf",
                   "Cantarell-Bold.otf")
HELDOUT_PLAIN_FONTS = ("Carlito-Bold.ttf", "Carlito-BoldItalic.ttf", "LinBiolinum_RB.otf", "LinLibertine_RB.otf")
HARD_B_FONTS = ("NotoSerif-Bold.ttf", "FreeSerifBold.ttf", "LiberationMono-Bold.ttf", "NotoSansDisplay-Bold.ttf",
                "DejaVuSerif-Bold.ttf")
HARD_FONTS = ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "FreeSansBold.ttf", "NotoSans-Bold.ttf",
              "DejaVuSansMono-Bold.ttf", "LiberationSerif-Bold.ttf")
HARD2_FONTS = ("DejaVuSansMono-Bold.ttf", "LiberationMono-Bold.ttf", "Go-Mono-Bold.ttf")
HARD2_B_FONTS = ("Go-Bold.ttf", "DejaVuSerif-Bold.ttf", "NimbusMonoPS-Bold.otf", "FreeMonoBold.ttf")

Colour = tuple[int, int, int]


# ---------------------------------------------------------------------------
# Fonts and colours
# ---------------------------------------------------------------------------


class MissingFontError(RuntimeError):
    """A style's font file is not installed."""


@lru_cache(maxsize=None)
def font_path(name: str) -> Path:
    """The installed file of a font, by file name."""
    for folder in FONT_DIRS:
        found = sorted(folder.rglob(name)) if folder.is_dir() else []
        if found:
            return found[0]
    package = next((p for prefix, p in FONT_PACKAGES.items() if name.startswith(prefix)), "the package that has it")
    raise MissingFontError(f"font {name} is not installed: apt-get install -y {package}")


@lru_cache(maxsize=512)
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A font at a pixel size, loaded once."""
    return ImageFont.truetype(str(font_path(name)), size)


def dark_colour(rng: random.Random) -> Colour:
    """A saturated or grey colour dark enough to read on a light background."""
    hue = [rng.randint(0, 140), rng.randint(0, 140), rng.randint(0, 140)]
    hue[rng.randrange(3)] = rng.randint(0, 60)
    return tuple(hue)


def light_colour(rng: random.Random) -> Colour:
    """A pale colour for a background."""
    return tuple(rng.randint(185, 255) for _ in range(3))


# ---------------------------------------------------------------------------
# Glyphs: each character drawn alone, rotated, then placed with overlap
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GlyphStyle:
    """How one image's characters are drawn."""

    fonts: tuple[str, ...]
    size: int  # font size in pixels
    max_rotation: float  # degrees either way
    spacing: float  # advance as a fraction of the glyph width (below 1: glyphs overlap)
    outline: bool = False  # hollow glyphs: only the stroke is drawn
    wave: float = 0.0  # baseline amplitude as a fraction of the size
    size_jitter: float = 0.15  # each glyph's size varies by this fraction either way


def glyph(char: str, font: ImageFont.FreeTypeFont, colour: Colour, angle: float, outline: bool) -> Image.Image:
    """One character on a transparent tile, rotated by `angle` degrees."""
    left, top, right, bottom = font.getbbox(char, stroke_width=2 if outline else 0)
    pad = 4
    tile = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(tile)
    if outline:
        draw.text((pad - left, pad - top), char, font=font, fill=(0, 0, 0, 0), stroke_width=2,
                  stroke_fill=colour + (255,))
    else:
        draw.text((pad - left, pad - top), char, font=font, fill=colour + (255,))
    return tile.rotate(angle, resample=Image.BICUBIC, expand=True)


def text_layer(label: str, style: GlyphStyle, colours: list[Colour], rng: random.Random) -> Image.Image:
    """The label's glyphs side by side on a transparent layer, each rotated and shifted on its own."""
    font_name = rng.choice(style.fonts)
    tiles = []
    for i, char in enumerate(label):
        size = max(8, round(style.size * rng.uniform(1 - style.size_jitter, 1 + style.size_jitter)))
        angle = rng.uniform(-style.max_rotation, style.max_rotation)
        tiles.append(glyph(char, load_font(font_name, size), colours[i % len(colours)], angle, style.outline))
    widths = [tile.width for tile in tiles]
    advances = [max(2, round(w * style.spacing)) for w in widths]
    width = sum(advances[:-1]) + widths[-1]
    height = max(tile.height for tile in tiles) + round(style.size * (0.3 + 2 * style.wave))
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    phase, x = rng.uniform(0, 2 * math.pi), 0
    for i, tile in enumerate(tiles):
        wave = style.wave * style.size * math.sin(phase + 1.3 * i)
        y = (height - tile.height) // 2 + round(wave) + rng.randint(-style.size // 10, style.size // 10)
        layer.alpha_composite(tile, (x, max(0, min(height - tile.height, y))))
        x += advances[i]
    return layer


def place_text(image: Image.Image, layer: Image.Image, rng: random.Random, fill: float = 0.9) -> tuple[int, int, int, int]:
    """Scale the text layer to fit, paste it at a random place; returns its box."""
    scale = min(fill * image.width / layer.width, 0.95 * image.height / layer.height, 1.0)
    layer = layer.resize((max(1, round(layer.width * scale)), max(1, round(layer.height * scale))), Image.LANCZOS)
    x = rng.randint(0, max(0, image.width - layer.width))
    y = rng.randint(0, max(0, image.height - layer.height))
    image.alpha_composite(layer, (x, y))
    return x, y, x + layer.width, y + layer.height


# ---------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------


def flat_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """One pale colour."""
    return Image.new("RGBA", size, light_colour(rng) + (255,))


def gradient_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A linear blend between two pale colours, at a random angle."""
    width, height = size
    start, end = np.array(light_colour(rng), float), np.array(light_colour(rng), float)
    angle = rng.uniform(0, math.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    t = xs * math.cos(angle) + ys * math.sin(angle)
    t = (t - t.min()) / max(1e-6, np.ptp(t))
    pixels = start + t[..., None] * (end - start)
    return Image.fromarray(pixels.astype(np.uint8), "RGB").convert("RGBA")


def speckled_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A pale colour with Gaussian colour noise."""
    noise = np.random.default_rng(rng.getrandbits(64)).normal(0, rng.uniform(8, 30), (size[1], size[0], 3))
    pixels = np.clip(np.array(light_colour(rng), float) + noise, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "RGB").convert("RGBA")


def grid_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Graph paper or diagonal hatching in a muted colour (held-out A)."""
    image = flat_background(size, rng)
    draw = ImageDraw.Draw(image)
    colour = tuple(c - rng.randint(40, 90) for c in light_colour(rng))
    step = rng.randint(5, 12)
    if rng.random() < 0.5:
        for x in range(rng.randint(0, step), size[0], step):
            draw.line([(x, 0), (x, size[1])], fill=colour)
        for y in range(rng.randint(0, step), size[1], step):
            draw.line([(0, y), (size[0], y)], fill=colour)
    else:
        for x in range(-size[1], size[0], step):
            draw.line([(x, 0), (x + size[1], size[1])], fill=colour)
    return image


def banded_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Horizontal bands or soft blotches of colour (held-out B)."""
    image = flat_background(size, rng)
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.5:
        y = 0
        while y < size[1]:
            band = rng.randint(3, max(4, size[1] // 4))
            draw.rectangle([0, y, size[0], y + band], fill=light_colour(rng))
            y += band
        return image
    for _ in range(rng.randint(4, 9)):
        x, y, r = rng.randint(0, size[0]), rng.randint(0, size[1]), rng.randint(size[1] // 4, size[1])
        draw.ellipse([x - r, y - r, x + r, y + r], fill=light_colour(rng))
    return image.filter(ImageFilter.GaussianBlur(size[1] / 8))


def dark_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A dark flat colour, for light text (held-out B)."""
    return Image.new("RGBA", size, tuple(rng.randint(10, 80) for _ in range(3)) + (255,))


# ---------------------------------------------------------------------------
# Clutter drawn over or under the text
# ---------------------------------------------------------------------------


def random_point(size: tuple[int, int], rng: random.Random) -> tuple[int, int]:
    """A point anywhere in the image."""
    return rng.randint(0, size[0]), rng.randint(0, size[1])


def draw_lines(image: Image.Image, count: int, colours: list[Colour], rng: random.Random) -> None:
    """Straight lines from edge to edge, 1 to 3 pixels wide."""
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        start = (0, rng.randint(0, image.height))
        end = (image.width, rng.randint(0, image.height))
        draw.line([start, end], fill=rng.choice(colours), width=rng.randint(1, max(1, image.height // 25)))


def draw_arcs(image: Image.Image, count: int, colours: list[Colour], rng: random.Random) -> None:
    """Arcs of large ellipses across the text."""
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        x0, y0 = rng.randint(-image.width // 2, image.width // 2), rng.randint(-image.height, image.height // 2)
        box = [x0, y0, x0 + rng.randint(image.width // 2, 2 * image.width), y0 + rng.randint(image.height, 3 * image.height)]
        start = rng.uniform(0, 360)
        draw.arc(box, start, start + rng.uniform(60, 200), fill=rng.choice(colours), width=rng.randint(1, 3))


def draw_dots(image: Image.Image, count: int, colours: list[Colour], rng: random.Random, largest: int = 2) -> None:
    """Small dots, up to `largest` pixels in radius."""
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        x, y = random_point(image.size, rng)
        r = min(largest, rng.choice((0, 0, 0, 1, 1, 2)))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=rng.choice(colours))


def draw_circles(image: Image.Image, count: int, colours: list[Colour], rng: random.Random) -> None:
    """Outlines of small circles (held-out A)."""
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        x, y = random_point(image.size, rng)
        r = rng.randint(2, max(3, image.height // 5))
        draw.ellipse([x - r, y - r, x + r, y + r], outline=rng.choice(colours), width=1)


def sine_points(xs: range, origin: int, middle: float, amplitude: float, period: float,
                phase: float) -> list[tuple[int, float]]:
    """Points of a sine wave over `xs`, whose phase is `phase` at x = `origin`."""
    return [(x, middle + amplitude * math.sin(phase + 2 * math.pi * (x - origin) / period)) for x in xs]


def draw_strike(image: Image.Image, box: tuple[int, int, int, int], colour: Colour, rng: random.Random) -> None:
    """A thick wavy curve through the text, in the text's colour (held-out B)."""
    x0, y0, x1, y1 = box
    middle, amplitude = (y0 + y1) / 2, (y1 - y0) / 4
    period, phase = rng.uniform(0.5, 1.5) * (x1 - x0), rng.uniform(0, 2 * math.pi)
    points = sine_points(range(x0 - 4, x1 + 5, 2), x0, middle, amplitude, max(1, period), phase)
    ImageDraw.Draw(image).line(points, fill=colour, width=max(2, image.height // 18), joint="curve")


def draw_sine_curves(image: Image.Image, count: int, colours: list[Colour], rng: random.Random) -> None:
    """Thin sine curves from edge to edge (held-out plain)."""
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        middle, amplitude = rng.uniform(0.2, 0.8) * image.height, rng.uniform(0.05, 0.25) * image.height
        period, phase = rng.uniform(0.4, 1.2) * image.width, rng.uniform(0, 2 * math.pi)
        points = sine_points(range(0, image.width + 2, 2), 0, middle, amplitude, period, phase)
        draw.line(points, fill=rng.choice(colours), width=1)


def salt_and_pepper(image: Image.Image, fraction: float, rng: random.Random) -> Image.Image:
    """Single black and white pixels over a fraction of the image (held-out A)."""
    pixels = np.array(image)
    noise = np.random.default_rng(rng.getrandbits(64)).random(pixels.shape[:2])
    pixels[noise < fraction / 2, :3] = 0
    pixels[noise > 1 - fraction / 2, :3] = 255
    return Image.fromarray(pixels, image.mode)


# ---------------------------------------------------------------------------
# Whole-image distortions
# ---------------------------------------------------------------------------


def sine_warp(image: Image.Image, amplitude: float, rng: random.Random) -> Image.Image:
    """Shift rows and columns by sine waves of `amplitude` pixels, sampled bilinearly."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    wavelength_x, wavelength_y = rng.uniform(0.5, 1.5) * height, rng.uniform(0.3, 1.0) * width
    phase_x, phase_y = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
    src_x = np.clip(xs + amplitude * np.sin(2 * np.pi * ys / wavelength_x + phase_x), 0, width - 1)
    src_y = np.clip(ys + amplitude * np.sin(2 * np.pi * xs / wavelength_y + phase_y), 0, height - 1)
    x0, y0 = np.floor(src_x).astype(int), np.floor(src_y).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (src_x - x0)[..., None], (src_y - y0)[..., None]
    top = pixels[y0, x0] * (1 - fx) + pixels[y0, x1] * fx
    bottom = pixels[y1, x0] * (1 - fx) + pixels[y1, x1] * fx
    return Image.fromarray(np.round(top * (1 - fy) + bottom * fy).astype(np.uint8), "RGB").convert("RGBA")


def shear(image: Image.Image, amount: float, fill: Colour) -> Image.Image:
    """A horizontal shear about the middle row (held-out B)."""
    offset = -amount * image.height / 2
    return image.transform(image.size, Image.AFFINE, (1, amount, offset, 0, 1, 0), resample=Image.BICUBIC,
                           fillcolor=fill + (255,))


def pixelate(image: Image.Image, factor: float) -> Image.Image:
    """Down- then up-sample with the nearest pixel (held-out B)."""
    small = image.resize((max(1, round(image.width / factor)), max(1, round(image.height / factor))), Image.BILINEAR)
    return small.resize(image.size, Image.NEAREST)


def jpeg_artefacts(image: Image.Image, quality: int) -> Image.Image:
    """The image after a round trip through JPEG at `quality`."""
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return Image.open(out).convert("RGB")


# ---------------------------------------------------------------------------
# Styles
# ---------------------------------------------------------------------------


def image_size(label: str, heights: tuple[int, int], rng: random.Random) -> tuple[int, int]:
    """A random (width, height): a height in `heights`, a width that gives each character room."""
    height = rng.randint(*heights)
    return round(height * (0.55 * len(label) + 1.0) * rng.uniform(0.85, 1.2)), height


def render_base(label: str, rng: random.Random) -> Image.Image:
    """The training mixture (see the module docstring)."""
    size = image_size(label, (40, 80), rng)
    image = rng.choice((flat_background, gradient_background, speckled_background))(size, rng)
    colours = [dark_colour(rng) for _ in range(len(label) if rng.random() < 0.4 else 1)]
    clutter = colours + [dark_colour(rng)]
    if rng.random() < 0.3:  # clutter under the text
        draw_lines(image, rng.randint(1, 3), clutter, rng)
    style = GlyphStyle(BASE_FONTS, round(size[1] * rng.uniform(0.55, 0.8)), rng.choice((5, 15, 25, 35)),
                       rng.uniform(0.72, 1.05))
    place_text(image, text_layer(label, style, colours, rng), rng)
    draw_lines(image, rng.choice((0, 1, 1, 2, 3)), clutter, rng)
    draw_arcs(image, rng.choice((0, 0, 1, 2)), clutter, rng)
    draw_dots(image, rng.choice((0, 30, 80, 160)) * size[0] // 160, clutter, rng)
    if rng.random() < 0.6:
        image = sine_warp(image, rng.uniform(0.5, 0.05 * size[1]), rng)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.5:
        image = jpeg_artefacts(image, rng.randint(25, 90))
    return image


def render_heldout_a(label: str, rng: random.Random) -> Image.Image:
    """Held-out style A: other fonts; grid backgrounds, hollow glyphs, wavy baseline, circles, salt and pepper."""
    size = image_size(label, (45, 75), rng)
    image = grid_background(size, rng)
    colours = [dark_colour(rng)]
    style = GlyphStyle(HELDOUT_A_FONTS, round(size[1] * rng.uniform(0.55, 0.75)), 20, rng.uniform(0.85, 1.05),
                       outline=rng.random() < 0.5, wave=rng.uniform(0.05, 0.2))
    place_text(image, text_layer(label, style, colours, rng), rng)
    draw_circles(image, rng.randint(3, 12), colours + [dark_colour(rng)], rng)
    return salt_and_pepper(image, rng.uniform(0.01, 0.06), rng)


def render_heldout_b(label: str, rng: random.Random) -> Image.Image:
    """Held-out style B: other fonts; banded or dark backgrounds, shadows, a strike-through, shear, pixelation."""
    size = image_size(label, (45, 75), rng)
    inverted = rng.random() < 0.3
    image = dark_background(size, rng) if inverted else banded_background(size, rng)
    colour = light_colour(rng) if inverted else dark_colour(rng)
    style = GlyphStyle(HELDOUT_B_FONTS, round(size[1] * rng.uniform(0.55, 0.75)), 15, rng.uniform(0.8, 1.0))
    layer = text_layer(label, style, [colour], rng)
    if not inverted and rng.random() < 0.7:  # a drop shadow: the same glyphs, grey and offset
        shadow = Image.new("RGBA", layer.size, (0, 0, 0, 0))
        grey = Image.new("RGBA", layer.size, (120, 120, 120, 255))
        shadow.paste(grey, (0, 0), layer)
        combined = Image.new("RGBA", (layer.width + 3, layer.height + 3), (0, 0, 0, 0))
        combined.alpha_composite(shadow, (3, 3))
        combined.alpha_composite(layer, (0, 0))
        layer = combined
    box = place_text(image, layer, rng)
    draw_strike(image, box, colour, rng)
    image = shear(image, rng.uniform(-0.35, 0.35), image.getpixel((0, 0))[:3])
    return pixelate(image, rng.uniform(1.0, 2.2)) if rng.random() < 0.6 else image


def render_heldout_plain(label: str, rng: random.Random) -> Image.Image:
    """Held-out plain style: other fonts, one dark colour on a pale background, mild rotation, thin sine curves."""
    size = image_size(label, (40, 70), rng)
    image = flat_background(size, rng)
    colours = [dark_colour(rng)]
    style = GlyphStyle(HELDOUT_PLAIN_FONTS, round(size[1] * rng.uniform(0.55, 0.75)), 12, rng.uniform(0.9, 1.1))
    place_text(image, text_layer(label, style, colours, rng), rng)
    draw_sine_curves(image, rng.randint(2, 4), colours + [dark_colour(rng)], rng)
    return image


def render_hard(label: str, rng: random.Random) -> Image.Image:
    """The hard family: small images, confusable characters, 35-degree rotations, strong warps."""
    size = (rng.randint(56, 64), rng.randint(23, 27))
    image = rng.choice((flat_background, speckled_background))(size, rng)
    colours = [dark_colour(rng)]
    style = GlyphStyle(HARD_FONTS, 20, 35, rng.uniform(0.68, 0.85))
    place_text(image, text_layer(label, style, colours, rng), rng, fill=0.98)
    draw_lines(image, rng.randint(0, 2), colours, rng)
    draw_dots(image, rng.randint(5, 25), colours, rng, largest=0)
    image = sine_warp(image, rng.uniform(0.8, 1.6), rng)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.4)))


def render_hard_b(label: str, rng: random.Random) -> Image.Image:
    """The held-out hard family: small, case-sensitive, a colour per glyph, tight overlap, arcs and a shear."""
    size = (rng.randint(58, 66), rng.randint(24, 28))
    image = rng.choice((flat_background, gradient_background))(size, rng)
    colours = [dark_colour(rng) for _ in label]
    style = GlyphStyle(HARD_B_FONTS, 20, 35, rng.uniform(0.62, 0.8))
    place_text(image, text_layer(label, style, colours, rng), rng, fill=0.98)
    draw_arcs(image, rng.randint(1, 2), colours, rng)
    draw_dots(image, rng.randint(5, 20), colours, rng, largest=0)
    image = shear(image, rng.uniform(-0.25, 0.25), image.getpixel((0, 0))[:3])
    image = sine_warp(image, rng.uniform(0.8, 1.8), rng)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.4)))


def render_hard2(label: str, rng: random.Random) -> Image.Image:
    """Hard and readable: hard's effects, but 0 and 1 unlike O and I, one glyph size, lines in another colour."""
    size = (rng.randint(76, 86), rng.randint(30, 34))
    image = rng.choice((flat_background, speckled_background))(size, rng)
    colours = [dark_colour(rng)]
    style = GlyphStyle(HARD2_FONTS, 20, 35, rng.uniform(0.85, 0.95), size_jitter=0.0)
    place_text(image, text_layer(label, style, colours, rng), rng, fill=0.98)
    draw_lines(image, rng.randint(0, 2), [dark_colour(rng)], rng)
    draw_dots(image, rng.randint(5, 15), colours, rng, largest=0)
    image = sine_warp(image, rng.uniform(0.5, 1.0), rng)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.3)))


def render_hard2_b(label: str, rng: random.Random) -> Image.Image:
    """The held-out readable hard family: hard-b's effects in other fonts, one glyph size, less overlap."""
    size = (rng.randint(78, 88), rng.randint(31, 35))
    image = rng.choice((flat_background, gradient_background))(size, rng)
    colours = [dark_colour(rng) for _ in label]
    style = GlyphStyle(HARD2_B_FONTS, 20, 35, rng.uniform(0.82, 0.92), size_jitter=0.0)
    place_text(image, text_layer(label, style, colours, rng), rng, fill=0.98)
    draw_arcs(image, rng.randint(1, 2), [dark_colour(rng)], rng)
    draw_dots(image, rng.randint(5, 15), colours, rng, largest=0)
    image = shear(image, rng.uniform(-0.25, 0.25), image.getpixel((0, 0))[:3])
    image = sine_warp(image, rng.uniform(0.5, 1.0), rng)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.3)))


@dataclass(frozen=True)
class Style:
    """A named preset: how to draw, from which characters, how many."""

    render: Callable[[str, random.Random], Image.Image]
    charset: str
    lengths: tuple[int, int]
    fonts: tuple[str, ...]


STYLES = {
    "base": Style(render_base, DIGITS + UPPER + LOWER, (3, 8), BASE_FONTS),
    "heldout-a": Style(render_heldout_a, DIGITS + UPPER + LOWER, (4, 7), HELDOUT_A_FONTS),
    "heldout-b": Style(render_heldout_b, DIGITS + UPPER + LOWER, (4, 7), HELDOUT_B_FONTS),
    "heldout-plain": Style(render_heldout_plain, DIGITS + UPPER + LOWER, (4, 7), HELDOUT_PLAIN_FONTS),
    "hard": Style(render_hard, UPPER + DIGITS, (4, 5), HARD_FONTS),
    "hard-b": Style(render_hard_b, UPPER + DIGITS + "abdefghnqrt", (4, 5), HARD_B_FONTS),
    "hard2": Style(render_hard2, UPPER + DIGITS, (4, 4), HARD2_FONTS),
    "hard2-b": Style(render_hard2_b, UPPER + DIGITS + "abdefghnqrt", (4, 4), HARD2_B_FONTS),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the images into")
    parser.add_argument("--count", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--style", choices=sorted(STYLES), default="base", help="style preset (default base)")
    parser.add_argument("--length", type=parse_length, help="label length: 4 or a range such as 4-6 (default: the style's)")
    parser.add_argument("--charset", help="characters to draw from (default: the style's)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.charset is not None and (not args.charset or len(set(args.charset)) != len(args.charset)):
        parser.error("--charset must be non-empty and have no repeated characters")
    if args.charset is not None and any(c in '/\\:_*?"<>|.' or not c.isprintable() or c.isspace() for c in args.charset):
        parser.error("--charset holds a character that cannot stand in a file name")
    return args


def main(argv: list[str] | None = None) -> int:
    """Write the requested captchas and report how many."""
    args = parse_args(argv)
    style = STYLES[args.style]
    try:
        for name in style.fonts:
            font_path(name)
        args.out.mkdir(parents=True, exist_ok=True)
    except MissingFontError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot create {args.out}: {error.strerror}", file=sys.stderr)
        return 1
    names = file_names(args.count, args.seed, args.charset or style.charset, args.length or style.lengths)
    for _, stem, label, rng in names:
        style.render(label, rng).convert("RGB").save(args.out / f"{stem}.png", format="PNG", optimize=True)
    print(f"wrote {args.count} {args.style} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
