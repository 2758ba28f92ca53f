"""Torch-free configs of every trainer, and the one translator from the flat names study files use."""
