"""Grading: the proof and answer judges, verdict parsing, fences, rubrics, agreement with humans."""
