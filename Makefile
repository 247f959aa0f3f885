# The developer commands. `make demo` and `make test` are the README's two commands.
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch lies on this kind of machine; on a GPU machine set TORCH=torch.
TORCH ?= torch==2.13.0

.PHONY: install demo test test-deps lint bench clean prover miniature

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[local,dev]"
	touch $@

install: $(VENV)/.installed

# The main job, offline: the shipped built-in prover with the direct, Reasoning Cache and RSA
# scaffolds on 36 held-out built-in problems, the exact judge, the report and the viewer.
demo: install
	OMP_NUM_THREADS=2 $(VENV)/bin/qednano eval builtin/eval

# The built-in prover, trained from scratch by the project's own commands (README, "The built-in
# prover"): teacher proofs (direct, RC and RSA prompts) -> grades -> SFT and RL sets -> SFT -> GRPO
# -> RC, and the RC stage's control (GRPO_D4); then the four checkpoints are copied into the
# package, where recipes/models/builtin-prover.yaml and builtin/miniature find them.
PROVER := src/qednano/recipes/builtin/prover
RC1 := scaffold.turns=1 run_dir=runs/builtin-teacher-rc1 problems.count=1500
RC34 := run_dir=runs/builtin-teacher-rc34 problems.count=1500 problems.difficulty=[3,4]
# The RC stage's control: GRPO continued from the GRPO checkpoint with the RC stage's budget (its
# difficulty-4 problems, 120 steps of 16 completions, the same learning rate and seed), the direct
# prompt and no summaries: the RL-trained model of the paper's figure 6 (README, "The paper in
# miniature"). 4.4 min on 2 cores; mean reward 0.47 -> 0.52 (first and last 20 steps), groups
# without spread 25% -> 15%.
GRPO_D4 := model=runs/builtin-prover/grpo output_dir=runs/builtin-prover/grpo-d4 \
	data.path=runs/builtin-export-rc/rl/train.jsonl trainer.per_device_train_batch_size=16 trainer.save_steps=120
PROVER_FILES := model.safetensors config.json generation_config.json tokenizer.json tokenizer_config.json chat_template.jinja
prover: install
	$(VENV)/bin/qednano generate builtin/teacher
	$(VENV)/bin/qednano grade builtin/teacher
	$(VENV)/bin/qednano generate builtin/teacher-rc
	$(VENV)/bin/qednano grade builtin/teacher-rc
	$(VENV)/bin/qednano generate builtin/teacher-rc $(RC1)
	$(VENV)/bin/qednano grade builtin/teacher-rc $(RC1)
	$(VENV)/bin/qednano generate builtin/teacher-rc $(RC34)
	$(VENV)/bin/qednano grade builtin/teacher-rc $(RC34)
	$(VENV)/bin/qednano generate builtin/teacher-rsa
	$(VENV)/bin/qednano grade builtin/teacher-rsa
	$(VENV)/bin/qednano export builtin/export
	$(VENV)/bin/qednano export builtin/export-rc
	OMP_NUM_THREADS=2 $(VENV)/bin/qednano sft builtin/sft
	OMP_NUM_THREADS=2 $(VENV)/bin/qednano grpo builtin/grpo
	OMP_NUM_THREADS=2 $(VENV)/bin/qednano rc builtin/rc
	OMP_NUM_THREADS=2 $(VENV)/bin/qednano grpo builtin/grpo $(GRPO_D4)
	for stage in sft grpo rc grpo-d4; do mkdir -p $(PROVER)/$$stage && \
		(cd runs/builtin-prover/$$stage && cp $(PROVER_FILES) $(CURDIR)/$(PROVER)/$$stage/); done

# The paper in miniature: the four shipped checkpoints x direct, RC, RSA, 6 runs (README table).
miniature: install
	$(VENV)/bin/qednano eval builtin/miniature

# System packages the tests use (headless Chromium for the HTML viewer test).
test-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium not installed: the viewer test will be skipped"; }

# Lint and type check, then the offline test suite (a few minutes on 2 cores).
test: install test-deps lint
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src

# Benchmarks print figures; they are run on purpose, never by the test suite.
bench: install
	$(PY) bench/scaffolds.py
	$(PY) bench/chaos.py
	$(PY) bench/crash.py
	$(PY) bench/decontaminate.py
	OMP_NUM_THREADS=1 $(PY) bench/train_cpu.py

clean:
	rm -rf $(VENV) .cache runs
