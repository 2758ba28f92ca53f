"""EHR data layer: MIMIC-III/IV and demo readers, synthetic cohorts, the processed-dataset
contract (`EHRDataset`) and its cache. Typical use: `prepare('synthetic')`."""

from leader.data.cache import PrepareOptions, prepare
from leader.data.dataset import EHRDataset, Vocab
from leader.data.stats import dataset_stats
from leader.data.synthetic import SyntheticConfig, generate

__all__ = ["EHRDataset", "PrepareOptions", "SyntheticConfig", "Vocab", "dataset_stats", "generate", "prepare"]
