"""LEADER(T), the teacher: a frozen LLM backbone + LoRA + a linear head, fine-tuned with the LP-FT
recipe on Ray Train + DeepSpeed. Open `train.py` for the entry points, `worker.py` for the loop
every worker runs, `model.py` for the network and its saved form."""
