"""Accuracy and loss curves as an inline SVG (no plotting library on the request path)."""
from xml.sax.saxutils import escape

W, H, PAD = 330, 210, 38
COLORS = {"train": "#1f77b4", "val": "#ff7f0e"}


def _panel(x0, title, series, ymin, ymax, n):
  out = [f'<g transform="translate({x0},0)">',
         f'<text x="{W / 2}" y="14" text-anchor="middle" font-size="13">{escape(title)}</text>',
         f'<rect x="{PAD}" y="20" width="{W - PAD - 8}" height="{H - 50}" fill="none" '
         'stroke="#999"/>']
  span = (ymax - ymin) or 1.0
  sx = lambda i: PAD + (W - PAD - 8) * (i - 1) / max(1, n - 1)
  sy = lambda v: 20 + (H - 50) * (1 - (v - ymin) / span)
  for frac in (0.0, 0.5, 1.0):
    v = ymin + frac * span
    out.append(f'<text x="{PAD - 4}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="10">'
               f'{v:.2f}</text>')
  out.append(f'<text x="{PAD}" y="{H - 16}" font-size="10">1</text>'
             f'<text x="{W - 8}" y="{H - 16}" text-anchor="end" font-size="10">{n}</text>'
             f'<text x="{W / 2}" y="{H - 4}" text-anchor="middle" font-size="11">epoch</text>')
  for name, pts in series.items():
    good = [(i, v) for i, v, _ in pts if v is not None]
    if len(good) > 1:
      path = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in good)
      out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[name]}" '
                 'stroke-width="2"/>')
    for i, v, reverted in pts:
      if v is not None:
        fill = "white" if reverted else COLORS[name]
        out.append(f'<circle cx="{sx(i):.1f}" cy="{sy(v):.1f}" r="3" fill="{fill}" '
                   f'stroke="{COLORS[name]}"/>')
  out.append("</g>")
  return out


def curves_svg(epochs):
  """epochs: store rows (number, metrics, reverted). Reverted epochs are hollow markers."""
  n = max(2, len(epochs))
  def series(key):
    return [(e["number"], e["metrics"].get(key), e["reverted"]) for e in epochs]
  acc = {"train": series("train_acc"), "val": series("val_acc")}
  loss = {"train": series("train_loss"), "val": series("val_loss")}
  losses = [v for s in loss.values() for _, v, _ in s if v is not None] or [0.0, 2.5]
  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 16}" '
           'role="img" aria-label="training curves" font-family="sans-serif">']
  parts += _panel(0, "Accuracy", acc, 0.0, 1.0, n)
  parts += _panel(W, "Loss", loss, 0.0, min(max(losses) * 1.05, 10.0), n)
  parts.append(f'<text x="{PAD}" y="{H + 12}" font-size="11" fill="{COLORS["train"]}">'
               f'&#9632; train</text><text x="{PAD + 60}" y="{H + 12}" font-size="11" '
               f'fill="{COLORS["val"]}">&#9632; val</text><text x="{PAD + 110}" y="{H + 12}" '
               'font-size="11">&#9675; reverted epoch</text></svg>')
  return "\n".join(parts)
