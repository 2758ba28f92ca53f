"""LEADER Studies: distributed hyperparameter and ablation studies for LLM-distilled
medication recommendation (LEADER teacher -> student distillation)."""

__version__ = "0.1.0"
