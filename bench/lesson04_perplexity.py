"""make bench: the full lesson-04 table on SmolLM2-135M-Instruct, 16 x 512 tokens, written to bench/results/."""

from pathlib import Path

import helper


def main() -> None:
    helper.set_offline()
    helper.quiet_libraries()
    model, tokenizer = helper.load_smollm2()
    windows = helper.token_windows(tokenizer, n_windows=16, window=512)
    rows = helper.evaluate_recipes(model, windows, helper.LESSON_04_RECIPES, progress=True)
    table = helper.recipe_table_text(rows, with_seconds=True)
    out = Path(__file__).parent / "results" / "lesson04_perplexity.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("# Lesson 04: perplexity of SmolLM2-135M-Instruct by recipe\n\n"
                   "16 windows x 512 tokens of CPython's pydoc topics; all linear layers but lm_head; "
                   "group sizes adapt where they do not divide 576 (128 -> 96, as optimum-quanto does).\n"
                   "Produced by `make bench` (bench/lesson04_perplexity.py).\n\n```\n" + table + "\n```\n")
    print(table)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
