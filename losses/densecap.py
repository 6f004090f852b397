"""DenseCap's loss (Johnson et al. 2016, sec. 3.4): Faster R-CNN's four detection terms plus the
captions' cross-entropy.

The paper weights the region terms 0.1 and the caption term 1.0 against the RPN's; here the
detection terms keep Faster R-CNN's weights (`losses.rcnn`) and `caption_weight` scales the
per-token cross-entropy, averaged over the tokens of the foreground regions' phrases.
"""
from losses.captioning import caption_loss
from losses.rcnn import rcnn_loss


def densecap_loss(outputs, batch, *, caption_weight: float = 1.0, **rcnn_kwargs):
  """`loss(outputs, batch) -> (scalar, aux)` for `models.densecap.DenseCap` train outputs."""
  total, aux = rcnn_loss(outputs, batch, **rcnn_kwargs)
  targets = outputs['caption_targets']
  loss, caption_aux = caption_loss(outputs['caption_logits'], targets['tokens'], targets['valid'])
  aux.update(caption_aux)
  return total + caption_weight * loss, aux
