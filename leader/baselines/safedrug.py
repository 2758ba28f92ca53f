"""SafeDrug: NOT AVAILABLE in this project (no model is provided, on purpose).

Yang, Xiao, Ma, Sun. "SafeDrug: Dual Molecular Graph Encoders for Recommending Effective and
Safe Drug Combinations." IJCAI 2021.

SafeDrug encodes every drug from its molecule: a global message-passing network over each
drug's SMILES-derived molecular graph and a local encoder over the BRICS substructures (both
built with RDKit from the SMILES of the drugs in each ATC-3 class). RDKit itself is a PyPI
package, but the ATC-3 -> SMILES table is not: the authors read it from a DrugBank export kept
in their repository and PyHealth downloads it at run time, and neither can be fetched by this
project offline (only package registries are reachable); the synthetic cohort's drugs have no
molecules at all. A SafeDrug without molecule structures is not SafeDrug (it reduces to a
GAMENet-like MLP), so the registry lists it as unavailable rather than shipping a look-alike.
`get_baseline('safedrug')` and `train_baseline('safedrug', ...)` raise with this reason.
"""

REASON = (
    "SafeDrug is not available: it encodes drugs from their molecular graphs (SMILES + BRICS substructures via "
    "RDKit), and no ATC-3 -> SMILES table of molecule structures can be obtained offline here (only package "
    "registries are reachable); no substitute model is provided"
)
CITATION = (
    "Yang, Xiao, Ma, Sun. SafeDrug: Dual Molecular Graph Encoders for Recommending Effective and Safe Drug "
    "Combinations. IJCAI 2021."
)
