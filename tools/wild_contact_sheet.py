"""Contact sheet of a model's overlays on a folder of photos, for looking at where it fails.

Runs ``DFLPredictor`` (the MediaPipe detector, the crop planning, the network, lifting: the
whole pipeline) on every photo of a folder, draws each prediction with ``vis.draw_prediction``
and tiles them, each resized to a fixed height, into one PNG (256-colour, to stay small).

    python tools/wild_contact_sheet.py --images ../shared/data/wild --out docs/wild_overlays.png \
        [--weights weights/] [--tile-height 320] [--columns 4] [--flip-test]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from dfl_infer import DFLPredictor
from dfl_infer.image import IMAGE_SUFFIXES, load_image
from dfl_infer.vis import draw_prediction


def sheet(images: list[Path], predictor: DFLPredictor, height: int, columns: int) -> Image.Image:
    tiles = []
    for path in images:
        rgb = load_image(path)
        pred = predictor.predict(rgb)
        drawn = Image.fromarray(draw_prediction(rgb, pred))
        tile = drawn.resize((max(1, round(drawn.width * height / drawn.height)), height))
        ImageDraw.Draw(tile).text((4, 4), f"{path.name}: {len(pred.hands)} hands", fill=(255,) * 3)
        tiles.append(tile)
    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    width = max(sum(t.width for t in row) for row in rows)
    out = Image.new("RGB", (width, height * len(rows)), (0, 0, 0))
    for r, row in enumerate(rows):
        x = 0
        for tile in row:
            out.paste(tile, (x, r * height))
            x += tile.width
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", default=None, help="default: the shipped model")
    parser.add_argument("--tile-height", type=int, default=320)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--flip-test", action="store_true", help="DFLPredictor(flip_test=True)")
    args = parser.parse_args()
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        parser.error(f"{args.images} holds no images")
    predictor = DFLPredictor(weights=args.weights, device="cpu", flip_test=args.flip_test)
    img = sheet(images, predictor, args.tile_height, args.columns)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # A palette keeps the PNG small; JPEG has no palette mode.
    (img.quantize(256) if args.out.suffix.lower() == ".png" else img).save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(images)} photos)")


if __name__ == "__main__":
    main()
