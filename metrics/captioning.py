"""Caption metrics: corpus BLEU-4, METEOR and exact-match rate (nltk).

BLEU-4 is nltk's `corpus_bleu` (uniform 1- to 4-gram weights, brevity penalty) with Chen & Cherry's
smoothing method 1, so a corpus with no matching 4-gram scores a little above 0 instead of 0.
METEOR is `metrics.densecap.meteor`: nltk's `meteor_score` with exact and Porter-stem matching
only (WordNet synonyms need a corpus download, which we do not do), averaged over captions.
"""
from collections.abc import Sequence

import numpy as np
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

from metrics.densecap import meteor


def caption_metrics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
  """hypotheses: one caption per image; references: each image's reference captions.

  Returns {'bleu4', 'meteor', 'exact_match', 'num_images'}; exact match compares the word
  sequences with each of the image's references.
  """
  if not hypotheses:
    return {'bleu4': 0.0, 'meteor': 0.0, 'exact_match': 0.0, 'num_images': 0}
  hyp_words = [h.split() for h in hypotheses]
  ref_words = [[r.split() for r in refs] for refs in references]
  bleu4 = corpus_bleu(ref_words, hyp_words, smoothing_function=SmoothingFunction().method1)
  return {
      'bleu4': float(bleu4),
      'meteor': float(np.mean([meteor(r, h) for h, r in zip(hypotheses, references,
                                                             strict=True)])),
      'exact_match': float(np.mean([h in refs for h, refs in zip(hyp_words, ref_words,
                                                                  strict=True)])),
      'num_images': len(hypotheses),
  }
