"""SafeDrug: NOT AVAILABLE in this project (no model is provided, on purpose).

Yang, Xiao, Ma, Sun. "SafeDrug: Dual Molecular Graph Encoders for Recommending Effective and
Safe Drug Combinations." IJCAI 2021.

SafeDrug encodes every drug from its molecule: a global message-passing network over each
drug's SMILES-derived molecular graph and a local encoder over the BRICS substructures, both
built from the drugs' SMILES strings (the original fetches them from DrugBank and decomposes them
with RDKit). Neither the SMILES table for the ATC-3 classes nor RDKit can be obtained offline
here, and a SafeDrug without molecule structures is not SafeDrug (it would reduce to a GAMENet-
like MLP), so the registry lists it as unavailable rather than shipping a look-alike.
`train_baseline('safedrug', ...)` raises with this reason.
"""

REASON = ("SafeDrug is not available: it encodes drugs from their molecular graphs (SMILES + BRICS substructures via "
          "RDKit), and the molecule structures cannot be obtained offline here; no substitute model is provided")
CITATION = ("Yang, Xiao, Ma, Sun. SafeDrug: Dual Molecular Graph Encoders for Recommending Effective and Safe Drug "
            "Combinations. IJCAI 2021.")
