"""Caption token ids, shared by the vocabularies (data/captions.py), decoders and losses.

A sequence is `w1 .. wk END PAD ..`, int32 [T] (static shapes); decoders build their
START-shifted inputs; words start at 4.
"""
PAD, START, END, UNK = 0, 1, 2, 3
SPECIAL = ('<pad>', '<start>', '<end>', '<unk>')  # The strings of the ids above, in order.
