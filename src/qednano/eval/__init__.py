"""Running work: the bounded fan-out (generate, grade, rubrics), run recipes, eval cells and `run_eval`."""
