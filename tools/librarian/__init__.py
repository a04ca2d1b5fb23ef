"""The librarian: admission of new functions into the library, one stage per module.

``cascade.admit(candidates, AdmissionContext(...))`` runs the stages and returns a
:class:`Decision` per candidate (plus those made on the way). The pieces:

- candidate.py: the one shape of a function on its way in (state entry <-> Candidate ->
  FunctionRecord); signature.py: the one reader of parameters;
- scratch.py: the scratch kernel that replays probes, replay.py: what a replay found;
  compare.py: two functions run on each other's probes;
- the stages: exact.py, verify.py, generalize.py, same_name.py, near.py, verdict.py, add.py;
- model.py: the narrow protocol of the librarian model (implemented by the agent, in
  nodes/librarian_model.py) and its reply parsers; settings.py: the ``librarian:`` section;
- journal.py: the decision log and pruning.

Import from the modules (``from dynagraph.tools.librarian.cascade import admit``): this file
loads nothing, so graphs/settings.py reads the settings section without loading the library,
kernels or embeddings.
"""
