"""Problem sources: IMO-ProofBench, IMO-AnswerBench, ProofBench, MathArena, tables, human-graded sets."""
