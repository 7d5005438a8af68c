"""Description -> vector, once: the sentence splitter (`split`, in Python; `sentences`, as
TF ops), the sentence encoders (`encoders`, in Python; `graph` and `usem3_tf`, in-graph
for exported models) and their averaging over a description's sentences."""
