"""Write the example images of the page to assets/examples/ (seeded; needs scikit-image for the photo).

Six coloured shape scenes (rank by the number of shapes) and a photo crop at four blur levels
(sharpest first). File names say nothing about the answer.

    python assets/make_examples.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.synthetic import degraded_photos, shape_scenes  # noqa: E402

OUT = ROOT / "assets" / "examples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    for k, (image, _) in enumerate(shape_scenes(6, seed=11, size=128, colours=True)):
        image.save(OUT / f"shapes_{k + 1}.png", optimize=True)
    for k, (image, _) in enumerate(degraded_photos(["coffee"], kind="blur", levels=4, crops_per_photo=1, seed=3)):
        image.save(OUT / f"coffee_{'cadb'[k]}.png", optimize=True)
    print(f"wrote {len(list(OUT.glob('*.png')))} images to {OUT}")


if __name__ == "__main__":
    main()
