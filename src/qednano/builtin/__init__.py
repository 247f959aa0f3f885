"""The built-in proof domain (derive a goal with Horn rules, distractors included), its exact judge, its teacher."""
