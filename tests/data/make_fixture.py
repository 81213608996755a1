"""Write the small labelled fixture the trainer tests use (re-running rewrites identical files).

tests/data/count.tsv and count_eval.tsv are RAC-format tables (filepath, title, cname, value,
sample_weights_by_class) over 64x64 shape-count scenes from trainer.synthetic, two categories
("shapes": black shapes, "colours": coloured shapes). count.tsv also holds three bad rows the
loaders must report and skip: a missing file, a non-numeric value, and a truncated PNG.

    PYTHONPATH=. python tests/data/make_fixture.py
"""

from pathlib import Path

from trainer.synthetic import shape_scenes

HERE = Path(__file__).resolve().parent
CATEGORIES = {"shapes": ("Rank by the number of shapes.", False), "colours": ("Rank by the number of colours.", True)}


def write_split(name: str, per_category: int, seed: int) -> list[str]:
    rows = []
    for c, (cname, (title, colours)) in enumerate(CATEGORIES.items()):
        scenes = shape_scenes(per_category, seed=seed + c, size=64, max_count=6, colours=colours)
        for i, (image, count) in enumerate(scenes):
            rel = f"images/{name}_{cname}_{i:02d}.png"
            image.save(HERE / rel, optimize=True)
            rows.append(f"{rel}\t{title}\t{cname}\t{count:g}\t{1.0 + (i % 2):g}")
    return rows


def main() -> None:
    (HERE / "images").mkdir(exist_ok=True)
    header = "filepath\ttitle\tcname\tvalue\tsample_weights_by_class"
    train = write_split("train", 12, seed=0)
    good = (HERE / "images/train_shapes_00.png").read_bytes()
    (HERE / "images/truncated.png").write_bytes(good[: len(good) // 2])
    train += ["images/missing.png\tRank by the number of shapes.\tshapes\t3\t1",
              "images/train_shapes_01.png\tRank by the number of shapes.\tshapes\tmany\t1",
              "images/truncated.png\tRank by the number of shapes.\tshapes\t2\t1"]
    (HERE / "count.tsv").write_text("\n".join([header, *train]) + "\n")
    (HERE / "count_eval.tsv").write_text("\n".join([header, *write_split("eval", 6, seed=100)]) + "\n")


if __name__ == "__main__":
    main()
